"""One config namespace: nested option dataclasses, the same dotted keys in YAML, CLI and ROS.

An options tree is a dataclass whose fields are leaves (``bool``, ``int``, ``float``, ``str`` or a
string :class:`enum.Enum`) or nested option dataclasses. Leaves declared with :func:`option`
carry a help text and bounds that :func:`validate` checks; a dataclass may add cross-field checks
in a ``validate(prefix)`` method. The walker functions work on any such tree:

* :func:`flatten` -> ``{"ba.precision": "mixed", ...}`` (plain values, enums as their strings);
* :func:`with_updates` -> a new, validated tree with some dotted keys changed (values coerced
  from strings too, so CLI flags and ROS parameters go through the same door);
* :func:`load_yaml` -> a tree from a YAML file (nested mappings, dotted keys, or a ROS 2
  parameter file's ``<node>: ros__parameters:`` block);
* :func:`describe` -> help text, type and bounds per dotted key (ROS parameter descriptors).

Every bad key or value raises :class:`ConfigError` naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mp_slam_ros.errors import ConfigError

ChoiceT = TypeVar("ChoiceT", bound=enum.Enum)
ConfigT = TypeVar("ConfigT")


def parse_choice(cls: type[ChoiceT], value: object, key: str) -> ChoiceT:
    """The member of string enum ``cls`` named by ``value`` (case-insensitive).

    Raises :class:`ConfigError` naming the dotted ``key``, the value and the valid choices.
    """
    try:
        return cls(value.value if isinstance(value, cls) else str(value).lower())
    except ValueError:
        choices = ", ".join(member.value for member in cls)
        raise ConfigError(key, value, f"must be one of {choices}") from None


def option(default: Any, help: str, min: float | None = None, max: float | None = None) -> Any:
    """A leaf option with a default, a one-line ``help`` and optional inclusive bounds."""
    return field(default=default, metadata={"help": help, "min": min, "max": max})


@dataclass(frozen=True)
class OptionInfo:
    """What a leaf option accepts: its type, default, help text and bounds."""

    key: str
    type: type
    default: Any
    help: str
    min: float | None
    max: float | None

    @property
    def choices(self) -> tuple[str, ...]:
        """Valid strings of an enum option (empty otherwise)."""
        return tuple(member.value for member in self.type) if issubclass(self.type, enum.Enum) else ()


def _fields(cls: type) -> list[tuple[dataclasses.Field, type]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _is_tree(tp: object) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def describe(cls: type, prefix: str = "") -> dict[str, OptionInfo]:
    """Every leaf of options class ``cls`` by dotted key (in declaration order)."""
    instance = cls()
    out: dict[str, OptionInfo] = {}
    for f, tp in _fields(cls):
        key = f"{prefix}{f.name}"
        if _is_tree(tp):
            out.update(describe(tp, f"{key}."))
        else:
            meta = f.metadata
            out[key] = OptionInfo(key, tp, getattr(instance, f.name), meta.get("help", ""), meta.get("min"), meta.get("max"))
    return out


def flatten(config: object) -> dict[str, Any]:
    """Dotted key -> plain value (enums as their strings) of every leaf of ``config``."""
    out: dict[str, Any] = {}
    for f, tp in _fields(type(config)):
        value = getattr(config, f.name)
        if _is_tree(tp):
            out.update({f"{f.name}.{key}": v for key, v in flatten(value).items()})
        else:
            out[f.name] = value.value if isinstance(value, enum.Enum) else value
    return out


def coerce(info: OptionInfo, value: object) -> Any:
    """``value`` as the type of option ``info`` (strings parsed); ConfigError naming the key."""
    tp, key = info.type, info.key
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return parse_choice(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(key, value, "must be a boolean (true or false)")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, value, "must be a string")
    if isinstance(value, bool):
        raise ConfigError(key, value, f"must be a number ({tp.__name__}), not a boolean")
    try:
        number = float(value) if isinstance(value, str) else value
        if tp is int:
            if not float(number).is_integer():
                raise ValueError
            return int(number)
        return float(number)
    except (TypeError, ValueError):
        raise ConfigError(key, value, f"must be {'an integer' if tp is int else 'a number'}") from None


def validate(config: object, prefix: str = "") -> None:
    """Raise :class:`ConfigError` naming the first leaf out of bounds or failing a cross-check."""
    for f, tp in _fields(type(config)):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if _is_tree(tp):
            validate(value, f"{key}.")
            continue
        low, high = f.metadata.get("min"), f.metadata.get("max")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value:  # NaN
                raise ConfigError(key, value, "must be a number, not NaN")
            if low is not None and value < low:
                raise ConfigError(key, value, f"must be >= {low}")
            if high is not None and value > high:
                raise ConfigError(key, value, f"must be <= {high}")
    check = getattr(config, "validate", None)
    if callable(check):
        check(prefix)


def with_updates(config: ConfigT, updates: Mapping[str, object]) -> ConfigT:
    """A validated copy of ``config`` with the dotted keys of ``updates`` set (``config`` untouched)."""
    infos = describe(type(config))
    nested: dict[str, Any] = {}
    for key, value in updates.items():
        if key not in infos:
            raise ConfigError(key, value, f"unknown option (valid: {', '.join(infos)})")
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = coerce(infos[key], value)
    updated = _replace(config, nested)
    validate(updated)
    return updated


def _replace(config: ConfigT, nested: Mapping[str, Any]) -> ConfigT:
    changes = {
        name: _replace(getattr(config, name), value) if isinstance(value, Mapping) else value
        for name, value in nested.items()
    }
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


def _flatten_mapping(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten_mapping(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def read_yaml_mapping(path: str | Path) -> Mapping[str, Any]:
    """The top-level mapping of a YAML file (empty for an empty file; files written by OpenCV,
    which start with ``%YAML:1.0``, are read too).

    Raises :class:`~mp_slam_ros.errors.FileFormatError` naming the file (and line) when it cannot
    be read, is not valid YAML or is not a mapping.
    """
    import yaml

    from mp_slam_ros.errors import FileFormatError

    try:
        text = Path(path).read_text()
        if text.startswith("%YAML:"):  # OpenCV's FileStorage directive, which PyYAML refuses: a comment
            text = "#" + text
        data = yaml.safe_load(text) or {}
    except OSError as error:
        raise FileFormatError(path, None, f"cannot read: {error.strerror}") from None
    except yaml.YAMLError as error:
        line = getattr(getattr(error, "problem_mark", None), "line", None)
        raise FileFormatError(path, None if line is None else line + 1, f"invalid YAML: {error}") from None
    if not isinstance(data, Mapping):
        raise FileFormatError(path, None, "expected a mapping of options at the top level")
    return data


def node_key_matches(key: str, node: str) -> bool:
    """Whether a ROS 2 parameter file's top-level ``key`` addresses ``node`` (``/**``,
    ``ns/node``, ``node``)."""
    return key in ("/**", node, f"/{node}") or key.endswith(f"/{node}")


def read_options(path: str | Path, node: str | None = None) -> tuple[dict[str, Any], bool]:
    """The dotted options of a YAML file and whether it is a ROS 2 parameter file.

    Nested mappings and dotted keys are read as they are. Of a parameter file (``<node>:
    ros__parameters: {...}``) the blocks addressing ``node`` are merged (later blocks win, as in
    ROS), or the first block when ``node`` is None.
    """
    data = read_yaml_mapping(path)
    blocks = [(str(key), value["ros__parameters"] or {}) for key, value in data.items()
              if isinstance(value, Mapping) and "ros__parameters" in value]
    if not blocks:
        return _flatten_mapping(data), False
    selected = blocks[:1] if node is None else [block for block in blocks if node_key_matches(block[0], node)]
    merged: dict[str, Any] = {}
    for _, values in selected:
        merged.update(_flatten_mapping(values))
    return merged, True


def options_from(cls: type[ConfigT], values: Mapping[str, Any], source: str | Path) -> ConfigT:
    """``cls`` with the dotted ``values`` set, validated; a :class:`ConfigError` also names
    ``source`` (the file, or the file and node, the values came from)."""
    try:
        return with_updates(cls(), values)
    except ConfigError as error:
        raise ConfigError(error.key, error.value, f"{error.reason} (in {source})") from None


def load_yaml(path: str | Path, cls: type[ConfigT]) -> ConfigT:
    """Options of class ``cls`` from a YAML file (defaults for absent keys), validated.

    Accepts nested mappings, dotted keys, or a ROS 2 parameter file (``<node>:
    ros__parameters: {...}``; the first node's block). Raises :class:`ConfigError` naming the
    dotted key and the file, or :class:`~mp_slam_ros.errors.FileFormatError` for unreadable YAML.
    """
    return options_from(cls, read_options(path)[0], path)
