#!/usr/bin/env bash
# Run the test suite in the project's virtualenv, setting it up first when anything is missing or
# changed (scripts/setup.sh is a no-op taking about a second otherwise).
#
#   ./scripts/test.sh                    # everything under test/
#   ./scripts/test.sh test/ros -k tf     # any pytest arguments
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MP_SLAM_VENV:-$ROOT/.venv}"

"$ROOT/scripts/setup.sh"

# launch + launch_ros (not on PyPI) for the launch tests, from ../shared/ros2-launch when it is
# beside the checkout (CI, this workplace); about a second when up to date. Without it those tests skip.
LAUNCH_KIT="$ROOT/../shared/ros2-launch"
if [[ -x "$LAUNCH_KIT/install.sh" ]]; then
  "$LAUNCH_KIT/install.sh" "$VENV" \
    || printf '[test] warning: %s/install.sh failed: the launch tests will be skipped\n' "$LAUNCH_KIT" >&2
fi

# A sourced ROS 2 installation (another Python, other interface packages) must not leak into the
# venv's pip-wheel ROS 2 Kilted.
if [[ -n "${ROS_DISTRO:-}" ]]; then
  printf '[test] note: ignoring the sourced ROS 2 %s environment; the tests use %s\n' "$ROS_DISTRO" "$VENV"
  unset AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH PYTHONPATH ROS_DISTRO ROS_VERSION ROS_PYTHON_VERSION
fi

cd "$ROOT"
status=0
"$VENV/bin/python" -m pytest "$@" || status=$?
if [[ "$status" -eq 5 ]]; then
  printf '[test] ERROR: pytest collected no tests (exit code 5); check the arguments: %s\n' "$*" >&2
  exit 1
fi
exit "$status"
