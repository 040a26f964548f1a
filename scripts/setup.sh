#!/usr/bin/env bash
# One-command setup of mp_slam_ros on a machine without a ROS 2 install (Python 3.11, x86_64 Linux).
#
#   ./scripts/setup.sh
#
# 1. checks the prerequisites (CPython 3.11 with venv and headers, cmake, a C/C++ compiler, make);
# 2. creates the virtualenv .venv at the repository root;
# 3. installs ROS 2 Kilted from the ros-kilted-* wheels on PyPI and every other dependency at the
#    versions pinned in requirements/ (CHOLMOD comes as the cvxopt wheel), and, only
#    where the SuiteSparse headers exist, the optional scikit-sparse built against them;
# 4. generates the interfaces (interfaces/mp_slam_interfaces from msg/, and tf2_msgs where the
#    environment lacks it) with rosidl/CMake against the venv prefix and installs them into it;
# 5. installs this package into the venv (editable: source edits need no reinstall).
#
# Each step is skipped when its inputs (hashed into stamp files under .venv/) did not change,
# so a rerun takes seconds. Environment overrides: PYTHON (interpreter used to create the venv),
# MP_SLAM_VENV (venv path), CMAKE, CC, CXX, MP_SLAM_JOBS (parallel compile jobs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MP_SLAM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
CMAKE="${CMAKE:-cmake}"
CC="${CC:-gcc}"
CXX="${CXX:-g++}"
JOBS="${MP_SLAM_JOBS:-$(nproc 2>/dev/null || echo 2)}"
STAMPS="$VENV/.mp_slam_setup"
BUILD="$VENV/.mp_slam_build"
START_SECONDS=$SECONDS

say() { printf '[setup] %s\n' "$*"; }
warn() { printf '[setup] WARNING: %s\n' "$*" >&2; }
die() {
  printf '[setup] ERROR: %s\n' "$*" >&2
  exit 1
}

# --- 1. prerequisites -------------------------------------------------------------------------
# Every missing prerequisite is reported at once, with what to install.
PROBLEMS=()
problem() { PROBLEMS+=("$*"); }
PYTHON_HINT="    Install it: Debian 12: apt-get install python3 python3-venv python3-dev
                Ubuntu:    apt-get install python3.11 python3.11-venv python3.11-dev
    or point PYTHON at a Python 3.11: PYTHON=/path/to/python3.11 ./scripts/setup.sh"

check_python() {
  local version
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    problem "Python 3.11 not found (looked for '$PYTHON'); ROS 2 Kilted is on PyPI for CPython 3.11 only.
$PYTHON_HINT"
    return
  fi
  version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
  if [[ "$version" != "3.11" ]]; then
    problem "'$PYTHON' is Python ${version:-(unknown: it did not run)}, but 3.11 is required: the
    ros-kilted-* wheels on PyPI exist only for CPython 3.11.
$PYTHON_HINT"
    return
  fi
  "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 \
    || problem "'$PYTHON' cannot create virtualenvs (no venv/ensurepip module).
    Install it: apt-get install python3.11-venv (Debian 12: python3-venv)"
  "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || problem "the Python 3.11 development headers (Python.h) are missing; the interfaces are compiled
    against them. Install them: apt-get install python3.11-dev (Debian 12: python3-dev)"
}

check_tools() {
  local tool
  [[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] \
    || problem "this setup needs x86_64 Linux (the ROS 2 wheels on PyPI are manylinux x86_64 only); found $(uname -s)-$(uname -m)"
  for tool in "$CMAKE" "$CC" "$CXX" make; do
    command -v "$tool" >/dev/null 2>&1 \
      || problem "'$tool' not found; building the ROS interfaces needs cmake, a C and a C++ compiler and make.
    Install them: apt-get install cmake build-essential   (or set CMAKE=, CC=, CXX= to their paths)"
  done
  command -v flock >/dev/null 2>&1 || problem "'flock' not found; install util-linux"
}

check_prerequisites() {
  check_python
  check_tools
  if ((${#PROBLEMS[@]})); then
    printf '[setup] ERROR: missing prerequisites (nothing was changed):\n' >&2
    printf '  - %s\n' "${PROBLEMS[@]}" >&2
    exit 1
  fi
}

# --- helpers ------------------------------------------------------------------------------------
# Print the sha256 of the given files' paths and contents (missing files hash as absent).
hash_files() {
  local file
  for file in "$@"; do
    printf '%s\n' "${file#"$ROOT"/}"
    if [[ -f "$file" ]]; then sha256sum <"$file"; else echo absent; fi
  done | sha256sum | cut -d' ' -f1
}

is_current() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
mark_current() { mkdir -p "$STAMPS" && printf '%s\n' "$2" >"$STAMPS/$1"; }

# Run a command with its output in a log file; on failure show the log's tail and stop.
run_logged() {
  local log="$1" what="$2"
  shift 2
  if ! "$@" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "$what failed (full log: $log)"
  fi
}

suitesparse_include_dir() {
  local dir
  for dir in ${SUITESPARSE_INCLUDE_DIR:-} /usr/include/suitesparse /usr/local/include/suitesparse /usr/include; do
    if [[ -f "$dir/cholmod.h" ]]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

# --- 2. virtualenv ------------------------------------------------------------------------------
ensure_venv() {
  if [[ -x "$VENV/bin/python" ]]; then
    local version
    version="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
    [[ "$version" == "3.11" ]] \
      || die "$VENV exists but its Python is ${version:-broken}, not 3.11. Remove it (rm -rf '$VENV') and rerun."
    return 0
  fi
  say "creating the virtualenv $VENV ($("$PYTHON" -V 2>&1))"
  "$PYTHON" -m venv "$VENV"
}

# --- 3. Python dependencies ---------------------------------------------------------------------
install_dependencies() {
  local req="$ROOT/requirements"
  local key
  key="$(hash_files "$req/ros.txt" "$req/core.txt" "$req/dev.txt" "$req/constraints.txt")"
  if is_current dependencies "$key"; then
    say "1/4 Python dependencies: up to date"
    return 0
  fi
  say "1/4 Python dependencies: installing ROS 2 Kilted wheels + pinned requirements (first run downloads ~1 GB)"
  run_logged "$VENV/pip-install.log" "pip install" \
    "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
    -r "$req/ros.txt" -r "$req/core.txt" -r "$req/dev.txt" -c "$req/constraints.txt"
  say "    $(grep -c '^Collecting' "$VENV/pip-install.log" || true) packages collected, log: $VENV/pip-install.log"
  mark_current dependencies "$key"
}

# Optional: scikit-sparse (CHOLMOD with a reusable symbolic analysis) where the SuiteSparse
# headers exist; without them the cvxopt wheel of core.txt provides CHOLMOD.
install_suitesparse() {
  local key include_dir
  if ! include_dir="$(suitesparse_include_dir)"; then
    say "2/4 scikit-sparse (optional): skipped, no SuiteSparse headers; CHOLMOD comes from the cvxopt wheel"
    return 0
  fi
  key="$(hash_files "$ROOT/requirements/suitesparse.txt" "$ROOT/requirements/constraints.txt")-$include_dir"
  if is_current suitesparse "$key"; then
    say "2/4 scikit-sparse (CHOLMOD): up to date"
    return 0
  fi
  say "2/4 scikit-sparse (CHOLMOD): building against $include_dir"
  SUITESPARSE_INCLUDE_DIR="$include_dir" run_logged "$VENV/pip-suitesparse.log" "building scikit-sparse" \
    "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
    -r "$ROOT/requirements/suitesparse.txt" -c "$ROOT/requirements/constraints.txt"
  mark_current suitesparse "$key"
}

# --- 4. interfaces ------------------------------------------------------------------------------
# Prints "ours" when tf2_msgs must be generated from interfaces/tf2_msgs (absent, or our stand-in
# from an earlier run), "system" when the environment has the real package.
tf2_msgs_source() {
  local manifest="$VENV/share/tf2_msgs/package.xml"
  if [[ -f "$manifest" ]] && ! grep -q 'Stand-in for the standard tf2_msgs' "$manifest"; then
    echo system
  else
    echo ours
  fi
}

# Configure, build and install one CMake interface package into the venv prefix.
build_interface_package() {
  local name="$1" source_dir="$2"
  local build_dir="$BUILD/$name"
  mkdir -p "$build_dir"
  # Files installed by a previous build go first, so a removed .msg leaves nothing behind.
  if [[ -f "$build_dir/install_manifest.txt" ]]; then
    xargs -r -d '\n' rm -f <"$build_dir/install_manifest.txt"
  fi
  run_logged "$build_dir/configure.log" "configuring $name" \
    env AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" CC="$CC" CXX="$CXX" \
    "$CMAKE" -S "$source_dir" -B "$build_dir" -G "Unix Makefiles" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$VENV/bin/python" -DPython3_FIND_VIRTUALENV=ONLY
  run_logged "$build_dir/build.log" "building $name" \
    env AMENT_PREFIX_PATH="$VENV" "$CMAKE" --build "$build_dir" --parallel "$JOBS"
  run_logged "$build_dir/install.log" "installing $name" "$CMAKE" --install "$build_dir"
}

install_interfaces() {
  local tf2_source key
  local -a inputs
  tf2_source="$(tf2_msgs_source)"
  mapfile -t inputs < <(find "$ROOT/msg" "$ROOT/srv" "$ROOT/interfaces" -type f 2>/dev/null | LC_ALL=C sort)
  key="$(hash_files "${inputs[@]}" "$STAMPS/dependencies")-tf2_msgs:$tf2_source-$("$CMAKE" --version | head -n1)"
  if is_current interfaces "$key"; then
    say "3/4 interfaces: up to date"
    return 0
  fi
  say "3/4 interfaces: generating msg/ srv/ -> mp_slam_interfaces$([[ $tf2_source == ours ]] && echo ' and tf2_msgs/TFMessage') with rosidl ($JOBS jobs)"
  run_logged "$BUILD/fix-rosidl-paths.log" "rewriting the rosidl include paths" \
    "$VENV/bin/python" "$ROOT/scripts/fix_rosidl_paths.py"
  if [[ "$tf2_source" == ours ]]; then
    build_interface_package tf2_msgs "$ROOT/interfaces/tf2_msgs"
  else
    say "    tf2_msgs: using the one installed in $VENV"
  fi
  build_interface_package mp_slam_interfaces "$ROOT/interfaces/mp_slam_interfaces"
  run_logged "$BUILD/import-check.log" "importing the generated interfaces" \
    "$VENV/bin/python" -c 'from mp_slam_interfaces.msg import Keyframe, PoseGraph, SolverStats; from mp_slam_interfaces.srv import ResetToPose; from tf2_msgs.msg import TFMessage'
  mark_current interfaces "$key"
}

# --- 5. this package ----------------------------------------------------------------------------
install_package() {
  local key
  local -a inputs
  # Editable: Python sources are live; package metadata and data files (launch/, config/) are
  # copied at install time, so they are part of the key.
  mapfile -t inputs < <(find "$ROOT/setup.py" "$ROOT/setup.cfg" "$ROOT/package.xml" "$ROOT/resource" \
    "$ROOT/launch" "$ROOT/config" -type f 2>/dev/null | LC_ALL=C sort)
  key="$(hash_files "${inputs[@]}" "$STAMPS/dependencies" "$ROOT/scripts/setup.sh")"
  if is_current package "$key" && [[ -x "$VENV/bin/mp-slam" ]]; then
    say "4/4 mp_slam_ros: up to date (editable install)"
    return 0
  fi
  say "4/4 mp_slam_ros: installing the package (editable) into the venv"
  run_logged "$BUILD/pip-package.log" "pip install -e ." \
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps --no-build-isolation \
    --editable "$ROOT"
  # Editable wheels leave out setup.py's data_files (ament index marker, package.xml, launch/,
  # config/); install them into the venv prefix as colcon would into install/mp_slam_ros.
  run_logged "$BUILD/install-data.log" "installing the data files of setup.py" \
    env -C "$ROOT" "$VENV/bin/python" setup.py --quiet install_data --install-dir "$VENV"
  rm -rf "$ROOT/build/lib" "$ROOT/build/bdist.linux-x86_64"
  rmdir "$ROOT/build" 2>/dev/null || true
  # What sourcing a ROS install does for ament_index (package share directories): the venv is
  # the ament prefix of every Python started from it.
  "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' >"$BUILD/purelib"
  printf '%s\n' "import os, sys; os.environ.setdefault('AMENT_PREFIX_PATH', sys.prefix)" \
    >"$(cat "$BUILD/purelib")/mp_slam_ament_prefix.pth"
  run_logged "$BUILD/cli-check.log" "running mp-slam --help" "$VENV/bin/mp-slam" --help
  mark_current package "$key"
}

main() {
  check_prerequisites
  ensure_venv
  mkdir -p "$STAMPS" "$BUILD"
  # One setup at a time per venv (a test run may start one while another is running).
  exec 9>"$VENV/.mp_slam_setup.lock"
  flock 9
  install_dependencies
  install_suitesparse
  install_interfaces
  install_package
  say "ready in $((SECONDS - START_SECONDS)) s: venv $VENV (run the tests with ./scripts/test.sh)"
}

main "$@"
