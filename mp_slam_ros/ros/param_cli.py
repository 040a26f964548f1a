"""``mp-slam param {list,get,set,dump} NODE [NAME [VALUE]]``: a running node's parameters through
the standard rcl_interfaces services (``ros2 param`` is not on PyPI).

    mp-slam param list vo_node                       # names, types and help texts
    mp-slam param get vo_node ba.precision
    mp-slam param set loop_closure_node pgo.precision fp16
    mp-slam param dump /robot/vo_node > vo.yaml      # a parameter file of the current values

A value the node refuses is printed with the node's reason and the command exits 1.
"""

from __future__ import annotations

import argparse
import sys
import threading
import uuid

import rclpy
import yaml
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from mp_slam_ros.ros.param_client import RemoteParameters

_TYPE_NAMES = {1: "bool", 2: "integer", 3: "double", 4: "string", 5: "byte[]", 6: "bool[]", 7: "integer[]", 8: "double[]", 9: "string[]"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mp-slam param``."""
    parser.add_argument("action", choices=("list", "get", "set", "dump"), help="what to do")
    parser.add_argument("node", help="node name (vo_node, loop_closure_node, /namespace/vo_node)")
    parser.add_argument("name", nargs="?", help="parameter name (get, set), e.g. ba.precision")
    parser.add_argument("value", nargs="?", help="new value (set), read as the parameter's type")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the node (default 10)")


def describe_line(name: str, descriptor: ParameterDescriptor) -> str:
    """``name (type, read-only): help [range]`` for ``list``."""
    flags = [_TYPE_NAMES.get(descriptor.type, "?")] + (["read-only"] if descriptor.read_only else [])
    extra = descriptor.additional_constraints
    for ranges in (descriptor.integer_range, descriptor.floating_point_range):
        if ranges:
            extra = f"[{ranges[0].from_value:g}, {ranges[0].to_value:g}]"
    return f"{name} ({', '.join(flags)}): {descriptor.description}" + (f" {extra}" if extra else "")


def run(args: argparse.Namespace) -> int:
    """Talk to the node; 0 on success, 1 when a value is refused."""
    needs = {"list": 0, "dump": 0, "get": 1, "set": 2}[args.action]
    given = [v for v in (args.name, args.value) if v is not None]
    if len(given) != needs:
        print(f"mp-slam param {args.action}: expected {['NODE', 'NODE NAME', 'NODE NAME VALUE'][needs]}", file=sys.stderr)
        return 2
    context = Context()
    rclpy.init(context=context)
    node = Node(f"mp_slam_param_{uuid.uuid4().hex[:6]}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        remote = RemoteParameters(node, args.node, args.timeout)
        remote.wait_for_services()
        return _act(remote, args)
    finally:
        executor.shutdown()
        spinner.join(timeout=5.0)
        node.destroy_node()
        context.try_shutdown()


def _act(remote: RemoteParameters, args: argparse.Namespace) -> int:
    if args.action == "list":
        names = remote.names()
        for name, descriptor in remote.describe(names).items():
            print(describe_line(name, descriptor))
    elif args.action == "get":
        print(_yaml_scalar(remote.get([args.name])[args.name]))
    elif args.action == "set":
        result = remote.set(args.name, args.value)
        if not result.successful:
            print(f"mp-slam param set: {remote.target} refused {args.name}={args.value}: {result.reason}", file=sys.stderr)
            return 1
        print(f"{args.name} = {_yaml_scalar(remote.get([args.name])[args.name])}")
    else:
        print(yaml.safe_dump(remote.dump(), sort_keys=False, default_flow_style=False), end="")
    return 0


def _yaml_scalar(value: object) -> str:
    """A value as it would appear in a parameter file."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
