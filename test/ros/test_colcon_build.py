"""The same sources build as a ROS 2 workspace with colcon (here against the venv's ROS prefix).

This is the robot path of the README (``colcon build --base-paths src src/mp_slam_ros/interfaces``):
both packages build, executables land where ``ros2 run`` looks, and the sourced install space
provides the generated interfaces and the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
COLCON = Path(sys.prefix, "bin", "colcon")


def run(command: list[str], cwd: Path, env: dict[str, str], timeout_s: float = 300.0) -> str:
    """Run ``command``; fail with its output when it exits non-zero."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A colcon workspace with this repository in src/, built once for the module."""
    if not COLCON.is_file():
        pytest.fail(f"{COLCON} missing: run ./scripts/setup.sh (requirements/dev.txt installs colcon)")
    ws = tmp_path_factory.mktemp("ws")
    (ws / "src").mkdir()
    (ws / "src" / "mp_slam_ros").symlink_to(ROOT, target_is_directory=True)
    env = {
        **os.environ,
        "AMENT_PREFIX_PATH": sys.prefix,
        "CMAKE_PREFIX_PATH": sys.prefix,
        "COLCON_HOME": str(ws / ".colcon"),
    }
    run(
        [str(COLCON), "--log-base", "log", "build", "--base-paths", "src", "src/mp_slam_ros/interfaces",
         "--event-handlers", "console_direct-", "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}",
         "-DBUILD_TESTING=OFF"],
        cwd=ws,
        env=env,
    )
    return ws, env


def test_colcon_finds_both_packages_but_not_the_tf2_msgs_stand_in(workspace):
    ws, env = workspace
    listed = run([str(COLCON), "--log-base", "log", "list", "--names-only", "--base-paths", "src",
                  "src/mp_slam_ros/interfaces"], cwd=ws, env=env)
    assert listed.split() == ["mp_slam_interfaces", "mp_slam_ros"]


def test_install_space_has_the_ros2_run_executable_and_share_files(workspace):
    ws, _ = workspace
    install = ws / "install"
    assert os.access(install / "mp_slam_ros" / "lib" / "mp_slam_ros" / "mp-slam", os.X_OK)
    assert (install / "mp_slam_ros" / "share" / "mp_slam_ros" / "package.xml").is_file()
    assert (install / "mp_slam_ros" / "share" / "ament_index" / "resource_index" / "packages" / "mp_slam_ros").is_file()
    assert (install / "mp_slam_interfaces" / "share" / "mp_slam_interfaces" / "msg" / "Keyframe.msg").is_file()


def test_sourced_install_space_provides_interfaces_and_executable(workspace):
    ws, env = workspace
    script = (
        "source install/setup.bash && "
        "install/mp_slam_ros/lib/mp_slam_ros/mp-slam --help >/dev/null && "
        'python -c "import mp_slam_interfaces.msg as m; print(m.__file__)"'
    )
    env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"}
    out = run([shutil.which("bash") or "/bin/bash", "-c", script], cwd=ws, env=env)
    assert out.strip().startswith(str(ws / "install" / "mp_slam_interfaces"))
