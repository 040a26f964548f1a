"""ROS parameters of an options tree (:mod:`mp_slam_ros.config`): declared by walking it.

:class:`OptionsParameters` declares one parameter per leaf under its dotted key (``ba.precision``,
``frontend.max_features``), with a descriptor carrying the help text, the bounds and the choices,
reads the overrides the node was started with (``--ros-args -p``, a parameter file) through the
config's own validation, and validates every later change the same way: a refused value is
answered with the :class:`~mp_slam_ros.errors.ConfigError` reason and the node keeps its old value.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Collection
from typing import Any, Generic, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.node import Node
from rclpy.parameter import Parameter

from mp_slam_ros.config import OptionInfo, describe, flatten, with_updates
from mp_slam_ros.errors import ConfigError

ConfigT = TypeVar("ConfigT")

_PARAMETER_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}


def parameter_descriptor(info: OptionInfo, *, read_only: bool = False) -> ParameterDescriptor:
    """The descriptor of option ``info``: type, help text, bounds as a range, enum choices."""
    is_enum = issubclass(info.type, enum.Enum)
    descriptor = ParameterDescriptor(
        name=info.key,
        type=ParameterType.PARAMETER_STRING if is_enum else _PARAMETER_TYPES[info.type],
        description=info.help,
        read_only=read_only,
    )
    if is_enum:
        descriptor.additional_constraints = f"one of: {', '.join(info.choices)}"
    elif info.min is not None and info.max is not None and info.type is int:
        descriptor.integer_range = [IntegerRange(from_value=int(info.min), to_value=int(info.max), step=0)]
    elif info.min is not None and info.max is not None and info.type is float:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(info.min), to_value=float(info.max), step=0.0)]
    elif info.min is not None or info.max is not None:
        low = "-inf" if info.min is None else info.min
        high = "inf" if info.max is None else info.max
        descriptor.additional_constraints = f"in [{low}, {high}]"
    return descriptor


def _overrides(node: Node) -> dict[str, Parameter]:
    """The start-up overrides of ``node`` (``-p``, parameter files) by name: rclpy keeps them in a
    private dict (Humble to Kilted); empty where it does not."""
    overrides = getattr(node, "_parameter_overrides", None)
    return overrides if isinstance(overrides, dict) else {}


def _integer_overrides_to_float(node: Node, keys: Collection[str]) -> None:
    """Start-up overrides of floating-point ``keys`` given as integers (``-p ba.max_solve_time_ms:=40``,
    ``40`` in a parameter file) become floats: rclpy refuses an integer for a double parameter,
    the most common way a ROS 2 node fails to start."""
    overrides = _overrides(node)
    for key in keys:
        given = overrides.get(key)
        if given is not None and given.type_ is Parameter.Type.INTEGER:
            overrides[key] = Parameter(key, Parameter.Type.DOUBLE, float(given.value))


class OptionsParameters(Generic[ConfigT]):
    """The parameters of one options tree on ``node``, kept in step with a validated config.

    ``config`` holds the current options (starting values + overrides; the constructor raises
    ConfigError when an override is invalid). ``on_change(new_config, changed_keys)`` runs after
    an accepted change, from the thread that set the parameters.
    """

    def __init__(
        self,
        node: Node,
        defaults: ConfigT,
        *,
        read_only: Collection[str] = (),
        on_change: Callable[[ConfigT, set[str]], None] | None = None,
    ) -> None:
        self._node = node
        self._infos = describe(type(defaults))
        self._on_change = on_change
        self._lock = threading.Lock()
        values = flatten(defaults)
        _integer_overrides_to_float(node, [key for key, info in self._infos.items() if info.type is float])
        for key, info in self._infos.items():
            try:
                node.declare_parameter(key, values[key], parameter_descriptor(info, read_only=key in read_only))
            except InvalidParameterTypeException as error:
                given = _overrides(node).get(key)
                expected = info.type.__name__ if not issubclass(info.type, enum.Enum) else "str"
                raise ConfigError(key, None if given is None else given.value, f"expected a {expected}") from error
        overrides = {key: node.get_parameter(key).value for key in self._infos}
        self.config: ConfigT = with_updates(defaults, overrides)
        node.add_on_set_parameters_callback(self._on_set)

    @property
    def keys(self) -> tuple[str, ...]:
        """The dotted parameter names of this tree."""
        return tuple(self._infos)

    def _on_set(self, parameters: list[Parameter]) -> SetParametersResult:
        updates: dict[str, Any] = {p.name: p.value for p in parameters if p.name in self._infos}
        if not updates:
            return SetParametersResult(successful=True)
        with self._lock:
            try:
                updated = with_updates(self.config, updates)
            except ConfigError as error:
                return SetParametersResult(successful=False, reason=str(error))
            self.config = updated
        if self._on_change is not None:
            self._on_change(updated, set(updates))
        return SetParametersResult(successful=True)
