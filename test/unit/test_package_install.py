"""setup.py installed the package: console scripts, metadata and the ament resource files."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import mp_slam_ros

ROOT = Path(__file__).resolve().parents[2]


def test_distribution_metadata_matches_the_sources():
    distribution = importlib.metadata.distribution("mp_slam_ros")
    assert distribution.version == mp_slam_ros.__version__


def test_console_script_mp_slam_is_installed():
    scripts = {
        entry.name: entry.value
        for entry in importlib.metadata.distribution("mp_slam_ros").entry_points
        if entry.group == "console_scripts"
    }
    assert scripts["mp-slam"] == "mp_slam_ros.cli.main:main"


def test_mp_slam_command_runs_from_the_environment():
    executable = Path(sys.prefix, "bin", "mp-slam")
    assert executable.is_file(), f"{executable} missing: run ./scripts/setup.sh"

    result = subprocess.run([str(executable), "--help"], capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: mp-slam")


def test_ament_resource_files_are_installed():
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory("mp_slam_ros"))
    assert (share / "package.xml").read_text() == (ROOT / "package.xml").read_text()
    assert (share.parent / "ament_index" / "resource_index" / "packages" / "mp_slam_ros").is_file()
