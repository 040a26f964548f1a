"""A small static-transform buffer (tf2_ros is not on PyPI): the frame tree of ``/tf_static``.

Static transforms form a tree (one parent per frame, REP-105); :meth:`StaticTfBuffer.lookup`
composes the chain between any two connected frames, e.g. ``base_link -> camera_link ->
camera_optical_frame`` gives ``T_base_cam``. Dynamic transforms are not kept: the visual-odometry
node only needs the camera extrinsics, which are static.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tf2_msgs.msg import TFMessage

from mp_slam_ros.errors import MessageError
from mp_slam_ros.geometry.lie import se3_inverse
from mp_slam_ros.ros.conversions import transform_from_msg


class StaticTfBuffer:
    """Static transforms by child frame: ``child -> (parent, T_parent_child (4, 4))``."""

    def __init__(self) -> None:
        self._parent: dict[str, tuple[str, NDArray[np.float64]]] = {}

    def set_transform(self, T_parent_child: NDArray[np.float64], parent: str, child: str) -> None:
        """Add or replace the transform of ``child``; MessageError if it would close a cycle."""
        if not parent or not child or parent == child:
            raise MessageError(f"static transform {parent!r} -> {child!r}: invalid frame ids")
        if child in self._root_path(parent):
            raise MessageError(f"static transform {parent!r} -> {child!r}: would make a cycle")
        self._parent[child] = (parent, np.asarray(T_parent_child, dtype=np.float64).copy())

    def add_message(self, msg: TFMessage) -> int:
        """Add every transform of a ``tf2_msgs/TFMessage``; returns how many were added.

        An invalid transform raises MessageError after the valid ones before it were added.
        """
        for transform in msg.transforms:
            self.set_transform(transform_from_msg(transform), transform.header.frame_id, transform.child_frame_id)
        return len(msg.transforms)

    def can_transform(self, target: str, source: str) -> bool:
        """Whether ``lookup(target, source)`` would succeed."""
        return self._root_path(target)[-1] == self._root_path(source)[-1]

    def lookup(self, target: str, source: str) -> NDArray[np.float64]:
        """``T_target_source`` (4, 4): pose of ``source`` in ``target``; MessageError if unconnected."""
        target_path, source_path = self._root_path(target), self._root_path(source)
        if target_path[-1] != source_path[-1]:
            known = ", ".join(sorted(set(self._parent) | {p for p, _ in self._parent.values()})) or "none"
            raise MessageError(f"no static transform chain from {target!r} to {source!r} (known frames: {known})")
        common = set(target_path) & set(source_path)
        target_path = target_path[: min(i for i, f in enumerate(target_path) if f in common) + 1]
        source_path = source_path[: min(i for i, f in enumerate(source_path) if f in common) + 1]
        return se3_inverse(self._T_root(target_path)) @ self._T_root(source_path)

    def _root_path(self, frame: str) -> list[str]:
        """``[frame, parent, grandparent, ..., root]``."""
        path = [frame]
        while path[-1] in self._parent:
            path.append(self._parent[path[-1]][0])
        return path

    def _T_root(self, path: list[str]) -> NDArray[np.float64]:
        """``T_last_first``: pose of ``path[0]`` in ``path[-1]``, composed along ``path``."""
        T_root_frame = np.eye(4)
        for frame in path[:-1]:
            T_root_frame = self._parent[frame][1] @ T_root_frame
        return T_root_frame
