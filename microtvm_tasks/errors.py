"""One exception hierarchy for every user-facing failure.

A `MicrotvmError` is a mistake the user can fix (a bad file, a missing tool, a wrong
option); the CLI and the doit tasks print its message without a traceback. Its text
says what was wrong, where (file, line, option, task), and what to do.
"""

from __future__ import annotations


class MicrotvmError(Exception):
    """Base of every error this tool reports to a user without a traceback."""


class ConfigError(MicrotvmError):
    """projects.yaml (or another user-written configuration) is invalid."""


class OptionError(MicrotvmError):
    """A project option is unknown, of the wrong type, not among its choices, or missing."""


class MLFError(MicrotvmError):
    """A Model Library Format archive is unreadable, invalid or unsafe."""


class CompileError(MicrotvmError):
    """The model cannot be compiled (unsupported operator, dtype, attribute, bad file)."""


class StateError(MicrotvmError):
    """A project's .tvmc.json is missing, corrupt, or disagrees with the project."""


class TemplateError(MicrotvmError):
    """A platform or template directory cannot be found or is not a Project API template."""


class ToolNotFoundError(MicrotvmError):
    """An external program (a compiler, west, arduino-cli, qemu) is not installed."""


class SessionError(MicrotvmError):
    """The run protocol with the firmware failed (bad frame, version, device error)."""


class HandEditError(MicrotvmError):
    """Regenerating a project would overwrite files the user edited by hand."""


class BuildFailedError(MicrotvmError):
    """A template's build or flash tool failed; the message carries the tail of its log."""


class BoardNotFoundError(MicrotvmError):
    """No (or more than one) serial port matches the board; the message says how to pick one."""
