"""Reading the text files of the formats we parse (g2o, TUM, BAL) with one typed error."""

from __future__ import annotations

from pathlib import Path

from mp_slam_ros.errors import FileFormatError


def read_text_lines(path: str | Path, encoding: str = "utf-8") -> list[str]:
    """The lines of ``path``; an unreadable or undecodable file raises :class:`FileFormatError`."""
    path = Path(path)
    try:
        return path.read_text(encoding=encoding).splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise FileFormatError(path, None, f"cannot read: {error}") from None
