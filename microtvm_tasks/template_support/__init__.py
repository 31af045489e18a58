"""Mechanisms the built-in templates share (process control, emulators, serial transports,
project generation helpers).

The four built-in templates were written side by side and each grew its own copy of the
same machinery; one copy here means one place to fix a bug in, say, how an emulator is
reaped. Only a template's `*_impl.py` (loaded on the first non-query call) imports these
modules: a server script answering `server_info_query` must import nothing beyond the
Project API helper (tests/test_template_startup.py), so nothing here is imported by this
package's `__init__`.
"""
