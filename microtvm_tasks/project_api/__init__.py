"""The microTVM Project API: `server` (what a template imports) and `client` (what drives it).

Deliberately empty of imports: every Project API server imports this package, so
anything loaded here would slow down every server start.
"""
