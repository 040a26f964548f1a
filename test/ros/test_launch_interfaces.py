"""The README's "On a robot" tables against the running nodes: every topic row is a publisher or
subscription of that node with that type, every service exists with its type, every parameter
exists in the node's config dataclasses with that default; and every topic and service the nodes
offer is in a table. Skipped while README.md has no such section."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from mp_slam_ros.config import describe, flatten  # noqa: E402
from mp_slam_ros.ros.bringup import BringupOptions, SlamProcess  # noqa: E402
from mp_slam_ros.presets import node_parameters  # noqa: E402

pytestmark = pytest.mark.ros
README = Path(__file__).resolve().parents[2] / "README.md"
#: interfaces every rclpy node has (not documented per node)
STANDARD = ("/parameter_events", "/rosout", "describe_parameters", "get_parameter_types", "get_parameters",
            "list_parameters", "set_parameters", "set_parameters_atomically", "get_type_description")


def section_tables(text: str, heading: str) -> list[list[list[str]]]:
    """The markdown tables (rows of cells, header and rule dropped) of the section ``heading``."""
    match = re.search(rf"^##[^\n]*{re.escape(heading)}[^\n]*\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    if match is None:
        return []
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in match.group(1).splitlines() + [""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif current:
            tables.append(current[2:])
            current = []
    return tables


def names(cell: str) -> list[str]:
    """The backquoted names of a cell (``a``, ``b``)."""
    return re.findall(r"`([^`]+)`", cell)


def resolve(name: str, node: str, namespace: str) -> str:
    """The full name of a table entry for a node in ``namespace``."""
    if name.startswith("/"):
        return name
    if name.startswith("~/"):
        return f"{namespace}/{node}/{name[2:]}"
    return f"{namespace}/{name}"


def test_readme_tables_match_the_nodes(ros_domain_id: int) -> None:
    tables = section_tables(README.read_text(), "On a robot") if README.is_file() else []
    if not tables:
        pytest.skip("README.md has no 'On a robot' section with tables yet (proposed text: issue 12's notes)")
    topics, services, parameters = tables[:3]
    namespace = f"/readme_{uuid.uuid4().hex[:6]}"
    process = SlamProcess(BringupOptions(namespace=namespace), domain_id=ros_domain_id)
    try:
        time.sleep(2.0)  # local discovery of the nodes' own endpoints
        helper = process.helper
        offered: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for node in node_parameters():
            found = set()
            for query in (helper.get_publisher_names_and_types_by_node, helper.get_subscriber_names_and_types_by_node,
                          helper.get_service_names_and_types_by_node):
                found |= {(topic, kind) for topic, kinds in query(node, namespace) for kind in kinds
                          if not topic.endswith(STANDARD)}
            offered[node] = found
        documented: dict[str, set[tuple[str, str]]] = {node: set() for node in offered}
        for node, topic_cell, type_cell, direction in topics:
            if "stereo" in direction:
                continue  # rgbd is started here; the stereo names come from the same INPUT_TOPICS table
            for name in names(topic_cell):
                documented[node].add((resolve(name, node, namespace), names(type_cell)[0]))
        for node, service_cell, type_cell, _ in services:
            documented[node].add((resolve(names(service_cell)[0], node, namespace), names(type_cell)[0]))
        for node in offered:
            assert documented[node] == offered[node], f"{node}: README only {documented[node] - offered[node]}, node only {offered[node] - documented[node]}"
        for node, name_cell, default_cell, _ in parameters:
            key, default = names(name_cell)[0], names(default_cell)[0]
            trees = node_parameters()[node].trees
            defaults = {k: v for tree in trees for k, v in flatten(tree()).items()}
            assert key in {k for tree in trees for k in describe(tree)}, f"{node}: no parameter {key}"
            value = defaults[key]
            shown = ("true" if value else "false") if isinstance(value, bool) else ("''" if value == "" else str(value))
            assert default == shown, f"{node}: {key} default is {shown}, README says {default}"
    finally:
        process.close()
