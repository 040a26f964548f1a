"""Another node's parameters through the standard rcl_interfaces services (what ``ros2 param`` does).

:class:`RemoteParameters` wraps :class:`rclpy.parameter_client.AsyncParameterClient` with blocking
calls for a CLI or a test: list, get, describe, set (a string value converted to the parameter's
declared type; a refused value comes back with the node's reason) and dump as a ROS 2 parameter
file block. The caller spins the node (an executor thread) while these wait.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, ParameterType, ParameterValue
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient
from rclpy.task import Future

from mp_slam_ros.errors import ConfigError, MpSlamError

#: how ``set`` reads a value of each declared type (YAML-like, as ``ros2 param set`` does)
_SCALAR_TYPES = {
    ParameterType.PARAMETER_BOOL: Parameter.Type.BOOL,
    ParameterType.PARAMETER_INTEGER: Parameter.Type.INTEGER,
    ParameterType.PARAMETER_DOUBLE: Parameter.Type.DOUBLE,
    ParameterType.PARAMETER_STRING: Parameter.Type.STRING,
}


class ParameterServiceError(MpSlamError):
    """The node's parameter services are not reachable or did not answer in time."""


@dataclass(frozen=True)
class SetResult:
    """Whether the node accepted a value, and its reason when it did not."""

    successful: bool
    reason: str


def typed_value(name: str, text: str, descriptor: ParameterDescriptor) -> Parameter:
    """``text`` converted to the declared type of parameter ``name``; ConfigError when it does not parse."""
    kind = _SCALAR_TYPES.get(descriptor.type)
    if kind is None:
        raise ConfigError(name, text, f"setting parameters of type {descriptor.type} from the command line is not supported")
    try:
        if kind is Parameter.Type.BOOL:
            if text.lower() not in ("true", "false"):
                raise ValueError
            return Parameter(name, kind, text.lower() == "true")
        if kind is Parameter.Type.INTEGER:
            return Parameter(name, kind, int(text))
        if kind is Parameter.Type.DOUBLE:
            return Parameter(name, kind, float(text))
    except ValueError:
        raise ConfigError(name, text, f"must be {kind.name.lower()} (the parameter's declared type)") from None
    return Parameter(name, kind, text)


class RemoteParameters:
    """Blocking access to the parameters of node ``target`` (``vo_node``, ``/robot/vo_node``)."""

    def __init__(self, node: Node, target: str, timeout_s: float = 10.0) -> None:
        self.target, self.timeout_s = target, timeout_s
        self._client = AsyncParameterClient(node, target)

    def wait_for_services(self) -> None:
        """Wait until the node's parameter services exist; ParameterServiceError naming the node otherwise."""
        if not self._client.wait_for_services(timeout_sec=self.timeout_s):
            raise ParameterServiceError(f"no parameter services of node {self.target!r} after {self.timeout_s:g} s (is it running? namespace?)")

    def _result(self, future: Future, what: str) -> Any:
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(self.timeout_s) or future.result() is None:
            raise ParameterServiceError(f"{self.target}: no answer to {what} within {self.timeout_s:g} s")
        return future.result()

    def names(self) -> list[str]:
        """Every parameter name of the node, sorted."""
        return sorted(self._result(self._client.list_parameters(), "list_parameters").result.names)

    def get(self, names: Sequence[str]) -> dict[str, Any]:
        """Python values of ``names`` (arrays as lists; None: declared without a value).

        ConfigError for a name the node does not have. rclpy answers a request that includes a
        parameter declared without a value with no values at all: then each name is asked alone.
        """
        values = list(self._result(self._client.get_parameters(list(names)), "get_parameters").values)
        if len(values) != len(names):
            values = [self._get_one(name) for name in names]
        out: dict[str, Any] = {}
        for name, value in zip(names, values):
            if value is not None and value.type == ParameterType.PARAMETER_NOT_SET:
                raise ConfigError(name, None, f"node {self.target} has no such parameter")
            python_value = None if value is None else parameter_value_to_python(value)
            out[name] = python_value if python_value is None or isinstance(python_value, (bool, int, float, str)) else list(python_value)
        return out

    def _get_one(self, name: str) -> ParameterValue | None:
        """The value of one parameter; None when it is declared without a value."""
        values = self._result(self._client.get_parameters([name]), "get_parameters").values
        if values:
            return values[0]
        if name not in self.names():
            return ParameterValue(type=ParameterType.PARAMETER_NOT_SET)
        return None

    def describe(self, names: Sequence[str]) -> dict[str, ParameterDescriptor]:
        """Descriptors (type, description, ranges, read-only) of ``names``."""
        descriptors = self._result(self._client.describe_parameters(list(names)), "describe_parameters").descriptors
        return dict(zip(names, descriptors))

    def set(self, name: str, text: str) -> SetResult:
        """Set ``name`` from its string form; the node's verdict (reason when refused)."""
        descriptor = self.describe([name])[name]
        if descriptor.type == ParameterType.PARAMETER_NOT_SET:
            raise ConfigError(name, text, f"node {self.target} has no such parameter")
        parameter = typed_value(name, text, descriptor)
        result = self._result(self._client.set_parameters([parameter]), "set_parameters").results[0]
        return SetResult(bool(result.successful), result.reason)

    def dump(self) -> dict[str, Any]:
        """``{node name: {"ros__parameters": nested values}}``: a parameter file of the node's current values."""
        nested: dict[str, Any] = {}
        for name, value in self.get(self.names()).items():
            if value is None:
                continue
            *parents, leaf = name.split(".")
            level = nested
            for part in parents:
                level = level.setdefault(part, {})
            level[leaf] = value
        return {self.target.rpartition("/")[2]: {"ros__parameters": nested}}
