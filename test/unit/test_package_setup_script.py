"""scripts/setup.sh refuses bad environments with a clear message, before changing anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"


def run_setup(tmp_path: Path, **overrides: str) -> subprocess.CompletedProcess:
    """Run setup.sh against a throw-away venv path with environment ``overrides``."""
    env = {**os.environ, "MP_SLAM_VENV": str(tmp_path / "venv"), **overrides}
    return subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True, timeout=60, check=False)


def fake_python(tmp_path: Path, version: str) -> str:
    """An executable that answers the version query like a Python ``version`` would."""
    path = tmp_path / f"python{version}"
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return str(path)


def assert_clean_failure(result: subprocess.CompletedProcess, tmp_path: Path, *expected: str) -> None:
    """Exit code 1, every expected phrase in stderr, no traceback, and no venv created."""
    assert result.returncode == 1, result.stdout + result.stderr
    for phrase in expected:
        assert phrase in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "venv").exists()


def test_wrong_python_version_is_refused(tmp_path):
    result = run_setup(tmp_path, PYTHON=fake_python(tmp_path, "3.12"))
    assert_clean_failure(result, tmp_path, "is Python 3.12, but 3.11 is required", "apt-get install")


def test_missing_python_is_refused(tmp_path):
    result = run_setup(tmp_path, PYTHON=str(tmp_path / "no-such-python"))
    assert_clean_failure(result, tmp_path, "Python 3.11 not found", "PYTHON=/path/to/python3.11")


@pytest.mark.parametrize("variable", ["CMAKE", "CC", "CXX"])
def test_missing_build_tool_is_refused(tmp_path, variable):
    missing = str(tmp_path / f"no-{variable.lower()}")
    result = run_setup(tmp_path, PYTHON=sys.executable, **{variable: missing})
    assert_clean_failure(result, tmp_path, f"'{missing}' not found", "apt-get install cmake build-essential")


def test_all_problems_are_reported_at_once(tmp_path):
    result = run_setup(tmp_path, PYTHON=fake_python(tmp_path, "3.10"), CMAKE=str(tmp_path / "no-cmake"))
    assert_clean_failure(result, tmp_path, "is Python 3.10", "no-cmake' not found")
