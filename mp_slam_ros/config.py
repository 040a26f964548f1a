"""Helpers shared by every options dataclass (one config namespace: YAML, CLI, ROS parameters)."""

from __future__ import annotations

import enum
from typing import TypeVar

from mp_slam_ros.errors import ConfigError

ChoiceT = TypeVar("ChoiceT", bound=enum.Enum)


def parse_choice(cls: type[ChoiceT], value: object, key: str) -> ChoiceT:
    """The member of string enum ``cls`` named by ``value`` (case-insensitive).

    Raises :class:`ConfigError` naming the dotted ``key``, the value and the valid choices.
    """
    try:
        return cls(value.value if isinstance(value, cls) else str(value).lower())
    except ValueError:
        choices = ", ".join(member.value for member in cls)
        raise ConfigError(key, value, f"must be one of {choices}") from None
