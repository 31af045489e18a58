"""microtvm-tasks: the microTVM Project API flow as repeatable doit tasks."""

__version__ = "0.1.0"
