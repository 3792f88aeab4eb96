"""Errors raised by labtrack.

Every error labtrack raises on purpose derives from :class:`LabtrackError`::

    LabtrackError
    ├── LabtrackTypeError      a value of a type labtrack cannot record (also a TypeError)
    ├── LabtrackValueError     a value of the right type but not allowed (also a ValueError)
    │   └── LabtrackNameError  a metric, media or artifact name that is not allowed
    ├── RunStateError          a call that does not fit the run's state (log after finish)
    ├── RunNotFoundError       no run, or more than one run, matches an id or a prefix
    ├── GitStateError          require_clean_git=True and the repository has changes
    ├── FormatError            a run directory that this version cannot read
    ├── SettingError           a setting whose value cannot be parsed
    ├── QueryError             a `where` expression that cannot be parsed
    ├── RemoteError            the logging server refused or could not be reached
    ├── MissingDependencyError an optional package a command needs is not installed
    └── UnsupportedError       a call of a bridged API that labtrack does not support (also a
                               NotImplementedError), e.g. SummaryWriter.add_graph

Messages say what failed, the value, what is allowed, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "FormatError",
    "GitStateError",
    "LabtrackError",
    "LabtrackNameError",
    "LabtrackTypeError",
    "LabtrackValueError",
    "MissingDependencyError",
    "QueryError",
    "RemoteError",
    "RunNotFoundError",
    "RunStateError",
    "SettingError",
    "UnsupportedError",
]


class LabtrackError(Exception):
    """The root of every error labtrack raises on purpose."""


class LabtrackTypeError(LabtrackError, TypeError):
    """A value whose type labtrack cannot record."""


class LabtrackValueError(LabtrackError, ValueError):
    """A value of an accepted type that is not allowed."""


class LabtrackNameError(LabtrackValueError):
    """A metric, media or artifact name that is not allowed."""


class RunStateError(LabtrackError):
    """A call that does not fit the run's state, such as logging after finish()."""


class RunNotFoundError(LabtrackError, KeyError):
    """No run, or more than one, matches the given id, prefix or experiment/name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class GitStateError(LabtrackError):
    """require_clean_git=True and the repository has uncommitted changes."""


class FormatError(LabtrackError):
    """A run directory written in a format this version cannot read."""


class SettingError(LabtrackValueError):
    """A setting (argument, environment variable or config file) that cannot be parsed."""


class QueryError(LabtrackValueError):
    """A `where` expression that cannot be parsed or refers to nothing known."""


class RemoteError(LabtrackError):
    """The logging server refused a request or could not be reached."""


class MissingDependencyError(LabtrackError, ImportError):
    """An optional package that a command needs (tensorboard, ...) is not installed."""


class UnsupportedError(LabtrackError, NotImplementedError):
    """A call of a bridged API (TensorBoard's SummaryWriter, ...) that labtrack does not support;
    the message names it and what to use instead."""
