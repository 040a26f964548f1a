"""Point the rosidl CMake exports of the ROS 2 wheels at this interpreter's headers.

The ``ros-*`` wheels install CMake files (``share/*/cmake/*rosidl_generator_pyExport.cmake``)
that still name two include directories of the machine the wheels were built on:
``/opt/python/cp311-cp311/include/python3.11`` and that interpreter's NumPy headers. CMake refuses
to configure an interface package that links those targets until they point at existing
directories. This rewrites them, in place and idempotently, to ``sysconfig``'s include directory
and ``numpy.get_include()`` of the interpreter running it (the venv's).

Usage: ``.venv/bin/python scripts/fix_rosidl_paths.py`` (scripts/setup.sh runs it).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import numpy

BUILD_PYTHON = "/opt/python/cp311-cp311"
BUILD_NUMPY_INCLUDE = f"{BUILD_PYTHON}/lib/python3.11/site-packages/numpy/_core/include"
BUILD_PYTHON_INCLUDE = f"{BUILD_PYTHON}/include/python3.11"


def rewrite(path: Path, replacements: dict[str, str]) -> bool:
    """Apply ``replacements`` to the file at ``path``; return whether it changed."""
    text = path.read_text()
    new_text = text
    for old, new in replacements.items():
        new_text = new_text.replace(old, new)
    if new_text == text:
        return False
    path.write_text(new_text)
    return True


def main() -> int:
    """Rewrite every affected export file under ``sys.prefix``; return the exit code."""
    python_include = sysconfig.get_paths()["include"]
    if not (Path(python_include) / "Python.h").is_file():
        print(
            f"Python.h not found in {python_include}: install the Python 3.11 development "
            "headers (Debian/Ubuntu: apt-get install python3.11-dev, or python3-dev on Debian 12)",
            file=sys.stderr,
        )
        return 1
    # Longest first: the NumPy path contains the interpreter prefix.
    replacements = {
        BUILD_NUMPY_INCLUDE: numpy.get_include(),
        BUILD_PYTHON_INCLUDE: python_include,
    }
    exports = sorted(Path(sys.prefix, "share").glob("*/cmake/*rosidl_generator_pyExport*.cmake"))
    changed = [path for path in exports if rewrite(path, replacements)]
    leftovers = [path for path in exports if BUILD_PYTHON in path.read_text()]
    if leftovers:
        print(f"unexpected {BUILD_PYTHON} paths remain in: {leftovers}", file=sys.stderr)
        return 1
    print(f"rosidl exports: {len(exports)} checked, {len(changed)} rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
