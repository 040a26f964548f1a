"""Reading the text files of the formats we parse (g2o, TUM, BAL) with one typed error."""

from __future__ import annotations

import math
from pathlib import Path

from mp_slam_ros.errors import FileFormatError


def read_text_lines(path: str | Path, encoding: str = "utf-8") -> list[str]:
    """The lines of ``path``; an unreadable or undecodable file raises :class:`FileFormatError`."""
    path = Path(path)
    try:
        return path.read_text(encoding=encoding).splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise FileFormatError(path, None, f"cannot read: {error}") from None


def parse_finite_float(token: str, field: str, path: str | Path, line: int) -> float:
    """``token`` as a finite float; else :class:`FileFormatError` naming file, line, field, value."""
    try:
        value = float(token)
    except ValueError:
        raise FileFormatError(path, line, f"field {field}={token!r} is not a number") from None
    if not math.isfinite(value):
        raise FileFormatError(path, line, f"field {field}={token!r} is not finite")
    return value
