"""Built-in Project API templates: one directory per platform, each with microtvm_api_server.py."""
