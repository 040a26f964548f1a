"""One exception hierarchy for the whole package.

Every error raised at a boundary (file parsing, configuration, bad messages) derives from
:class:`MpSlamError`, so the CLI can turn it into a one-line message and exit 1, and a node can
log it, drop the message and keep running.
"""

from __future__ import annotations

from pathlib import Path


class MpSlamError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(MpSlamError, ValueError):
    """An option or parameter has an invalid value (names the key and the value)."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        super().__init__(f"{key}={value!r}: {reason}")
        self.key = key
        self.value = value
        self.reason = reason


class FileFormatError(MpSlamError, ValueError):
    """A file could not be parsed; names the file, the 1-based line number and the problem."""

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


class ProblemError(MpSlamError, ValueError):
    """An optimization problem is ill-posed (unknown ids, disconnected graph, bad information)."""


class MessageError(MpSlamError, ValueError):
    """A ROS message carries invalid content (names the field and the value)."""


class FrameError(MpSlamError, ValueError):
    """A camera frame cannot be processed (names the field, the value and the problem)."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"{field}={value!r}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason
