"""package.xml files validate (catkin_pkg) and agree with setup.py, msg/ and the CMake package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

import mp_slam_ros

ROOT = Path(__file__).resolve().parents[2]
INTERFACES = ROOT / "interfaces" / "mp_slam_interfaces"


def build_type(package) -> str:
    """The <build_type> exported by a parsed package.xml."""
    return next(export.content for export in package.exports if export.tagname == "build_type")


def names(dependencies) -> set[str]:
    """Names of a list of catkin_pkg dependencies."""
    return {dependency.name for dependency in dependencies}


def msg_dependencies() -> set[str]:
    """Packages of the nested message types used in msg/*.msg (e.g. geometry_msgs)."""
    used = set()
    for path in (ROOT / "msg").glob("*.msg"):
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*([a-z][a-z0-9_]*)/[A-Z]\w*(\[\d*\])?\s+\w+", line)
            if match:
                used.add(match.group(1))
    return used


def test_mp_slam_ros_package_xml_is_valid_format_3():
    package = parse_package(ROOT / "package.xml")  # validates; raises InvalidPackage otherwise

    assert package.package_format == 3
    assert package.name == "mp_slam_ros"
    assert build_type(package) == "ament_python"
    assert package.version == mp_slam_ros.__version__
    assert {"rclpy", "mp_slam_interfaces", "tf2_msgs", "geometry_msgs"} <= names(package.exec_depends)


def test_interface_package_xml_is_valid_and_generates_interfaces():
    package = parse_package(INTERFACES / "package.xml")

    assert package.package_format == 3
    assert package.name == "mp_slam_interfaces"
    assert build_type(package) == "ament_cmake"
    assert package.version == mp_slam_ros.__version__
    assert [group.name for group in package.member_of_groups] == ["rosidl_interface_packages"]
    assert "rosidl_default_generators" in names(package.buildtool_depends)
    assert "rosidl_default_runtime" in names(package.exec_depends)


def test_interface_dependencies_match_the_messages():
    package = parse_package(INTERFACES / "package.xml")
    cmake = (INTERFACES / "CMakeLists.txt").read_text()
    declared = set(re.search(r"DEPENDENCIES ([\w ]+)", cmake).group(1).split())

    assert msg_dependencies() == {"std_msgs", "geometry_msgs", "sensor_msgs"}
    assert msg_dependencies() == declared
    assert msg_dependencies() <= names(package.build_depends) & names(package.exec_depends)


def test_tf2_msgs_stand_in_is_ignored_by_colcon():
    package = parse_package(ROOT / "interfaces" / "tf2_msgs" / "package.xml")

    assert package.name == "tf2_msgs"
    assert (ROOT / "interfaces" / "tf2_msgs" / "COLCON_IGNORE").is_file()
    assert (ROOT / "interfaces" / "tf2_msgs" / "msg" / "TFMessage.msg").read_text() == (
        "geometry_msgs/TransformStamped[] transforms\n"
    )


def test_invalid_package_xml_is_rejected(tmp_path):
    from catkin_pkg.package import InvalidPackage

    text = (ROOT / "package.xml").read_text().replace("<version>", "<version>v")
    (tmp_path / "package.xml").write_text(text)
    with pytest.raises(InvalidPackage, match="version"):
        parse_package(tmp_path / "package.xml")
