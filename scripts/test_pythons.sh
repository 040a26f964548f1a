#!/usr/bin/env bash
# Run the ROS-free test suite under the other Pythons of ROS 2 distributions (3.10: Humble,
# 3.12: Jazzy/Kilted on Ubuntu 24.04), with requirements/robot.txt resolved for each.
#
#   ./scripts/test_pythons.sh              # every interpreter of MP_SLAM_PYTHONS that exists
#   MP_SLAM_PYTHONS="python3.12" ./scripts/test_pythons.sh
#
# Each interpreter gets a venv .venv-<version> (rebuilt only when the requirements change; with
# CI=true removed after its tests, so that the next install has the disk). An
# interpreter that is not installed is reported and skipped; any test failure fails the script.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHONS="${MP_SLAM_PYTHONS:-python3.10 python3.12}"
# Tests that need the generated ROS interfaces or the installed ROS package (3.11 venv only).
ROS_ONLY=(--ignore test/ros --ignore test/unit/test_ros_conversions.py
  --ignore test/unit/test_package_install.py --ignore test/unit/test_package_setup_script.py)
status=0

resolve() {  # print the path of an interpreter named like python3.10, also inside pyenv
  local name="$1" version
  if command -v pyenv >/dev/null 2>&1; then
    version="$(pyenv versions --bare 2>/dev/null | grep -E "^${name#python}(\.[0-9]+)?$" | sort -V | tail -n 1 || true)"
    if [[ -n "$version" && -x "$(pyenv root)/versions/$version/bin/python" ]]; then
      echo "$(pyenv root)/versions/$version/bin/python"
      return 0
    fi
  fi
  command -v "$name" 2>/dev/null
}

for name in $PYTHONS; do
  python="$(resolve "$name" || true)"
  if [[ -z "$python" ]]; then
    printf '[pythons] %s not installed: skipped\n' "$name"
    continue
  fi
  version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  venv="$ROOT/.venv-$version"
  key="$(cat "$ROOT/requirements/robot.txt" | sha256sum | cut -d' ' -f1)"
  if [[ ! -f "$venv/.requirements" || "$(cat "$venv/.requirements")" != "$key" ]]; then
    printf '[pythons] %s: creating %s\n' "$version" "$venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    # --no-cache-dir: the wheels are not kept twice (CI once ran out of disk on the third venv).
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off --no-cache-dir \
      -r "$ROOT/requirements/robot.txt" \
      pytest hypothesis catkin_pkg >"$venv/pip-install.log" 2>&1; then
      tail -n 30 "$venv/pip-install.log" >&2
      df -h "$ROOT" >&2
      printf '[pythons] %s: pip install failed (log: %s)\n' "$version" "$venv/pip-install.log" >&2
      status=1
      continue
    fi
    echo "$key" >"$venv/.requirements"
  fi
  printf '[pythons] %s: %s\n' "$version" "$("$venv/bin/python" -c 'import numpy, scipy, numba; print("numpy", numpy.__version__, "scipy", scipy.__version__, "numba", numba.__version__)')"
  (cd "$ROOT" && "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not ros and not gpu" "${ROS_ONLY[@]}" test) || status=1
  if [[ "${CI:-}" == "true" ]]; then
    rm -rf "$venv"  # a clean clone is not run twice: the next interpreter's install gets the disk
  fi
done
exit "$status"
