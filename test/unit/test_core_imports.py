"""The core imports no rclpy and no ROS message types (only mp_slam_ros/ros and nodes may).

Checked statically, by parsing every module's imports (including relative ones and
``importlib.import_module("...")`` / ``__import__("...")`` with a constant name).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "mp_slam_ros"
#: Subpackages allowed to talk to ROS.
ROS_SIDE = ("mp_slam_ros.ros", "mp_slam_ros.nodes")
#: Top-level ROS 2 modules (client library, launch, tools) that are not message packages.
ROS_MODULES = {
    "rclpy", "rcl", "rmw", "launch", "launch_ros", "launch_testing", "ament_index_python",
    "tf2_ros", "tf2_py", "tf_transformations", "message_filters", "cv_bridge", "rosbag2_py",
    "builtin_interfaces", "unique_identifier_msgs", "mp_slam_interfaces",
}
#: Name endings of generated interface packages (std_msgs, my_interfaces, std_srvs, ...).
INTERFACE_SUFFIXES = ("_msgs", "_interfaces", "_srvs", "_actions")


def is_ros_module(name: str) -> bool:
    """Whether importing module ``name`` pulls in ROS 2 (client library, rosidl or messages)."""
    top = name.split(".")[0]
    return (
        top in ROS_MODULES
        or top.startswith(("rosidl", "rcl", "rmw"))
        or top.endswith(INTERFACE_SUFFIXES)
        or any(name == side or name.startswith(f"{side}.") for side in ROS_SIDE)
    )


def module_name(path: Path, package_dir: Path) -> str:
    """Dotted name of the module at ``path`` inside the package rooted at ``package_dir``."""
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, package_dir: Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in the file at ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    this = module_name(path, package_dir)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            argument = node.args[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                found.append((node.lineno, argument.value))
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    """``importlib.import_module(...)``, ``import_module(...)`` or ``__import__(...)``."""
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in {"import_module", "__import__"}


def ros_imports_in_core(package_dir: Path) -> list[str]:
    """``file:line: module`` for every ROS import outside the ROS side of the package."""
    violations = []
    for path in sorted(package_dir.rglob("*.py")):
        if any(module_name(path, package_dir).startswith(side) for side in ROS_SIDE):
            continue
        for line, name in imported_modules(path, package_dir):
            if is_ros_module(name):
                violations.append(f"{path.relative_to(package_dir.parent)}:{line}: imports {name}")
    return violations


def test_core_imports_no_ros():
    violations = ros_imports_in_core(PACKAGE_DIR)
    assert not violations, "the core must stay ROS-free:\n" + "\n".join(violations)


def test_the_check_sees_the_package():
    assert len(list(PACKAGE_DIR.rglob("*.py"))) > 5


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import rclpy\n", "rclpy"),
        ("from rclpy.node import Node\n", "rclpy.node"),
        ("from geometry_msgs.msg import Pose\n", "geometry_msgs.msg"),
        ("import mp_slam_interfaces.msg\n", "mp_slam_interfaces.msg"),
        ("from rosidl_runtime_py import message_to_ordereddict\n", "rosidl_runtime_py"),
        ("from ..ros import conversions\n", "mp_slam_ros.ros"),
        ("from mp_slam_ros import nodes\n", "mp_slam_ros.nodes"),
        ("import importlib\nimportlib.import_module('tf2_msgs.msg')\n", "tf2_msgs.msg"),
        ("def f():\n    import std_msgs.msg\n", "std_msgs.msg"),
    ],
)
def test_the_check_catches_ros_imports(tmp_path, source, expected):
    package = tmp_path / "mp_slam_ros"
    (package / "solvers").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "solvers" / "__init__.py").write_text("")
    (package / "solvers" / "bad.py").write_text(source)

    violations = ros_imports_in_core(package)

    assert any(violation.endswith(f"imports {expected}") for violation in violations), violations
    assert all(violation.startswith("mp_slam_ros/solvers/bad.py:") for violation in violations)


@pytest.mark.parametrize(
    "source",
    ["import numpy as np\n", "from rosbags.typesys import Stores\n", "from . import lie\n", "import scipy.sparse\n"],
)
def test_the_check_allows_ros_free_imports(tmp_path, source):
    package = tmp_path / "mp_slam_ros"
    (package / "geometry").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "geometry" / "__init__.py").write_text("")
    (package / "geometry" / "ok.py").write_text(source)

    assert ros_imports_in_core(package) == []
