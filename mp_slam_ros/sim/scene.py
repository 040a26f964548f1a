"""Renderable scene: textured rectangles (quads) in the world frame, plus the helpers to build them.

A quad is ``origin + a * axis_u + b * axis_v`` for ``a, b`` in ``[0, 1]``; ``axis_u`` and
``axis_v`` are orthogonal edge vectors in metres and ``normal = unit(axis_u x axis_v)`` points to
the side it is seen from (the renderer culls back faces). Texture coordinates are metres along
the two edges plus a per-quad offset, so textures are fixed to surfaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.sim.textures import TextureAtlas

Vec3 = NDArray[np.float64]


@dataclass(frozen=True)
class Scene:
    """Quads ``(Q, ...)`` in the world frame (z up) with materials, lights and labels."""

    origin_w: NDArray[np.float64]  # (Q, 3)
    axis_u_w: NDArray[np.float64]  # (Q, 3)
    axis_v_w: NDArray[np.float64]  # (Q, 3)
    normal_w: NDArray[np.float64]  # (Q, 3) unit
    material: NDArray[np.int64]  # (Q,)
    tex_offset_m: NDArray[np.float64]  # (Q, 2)
    light: NDArray[np.int64]  # (Q,) index into lights_w
    lights_w: NDArray[np.float64]  # (L, 3) point lights
    labels: tuple[str, ...]
    atlas: TextureAtlas

    @property
    def n_quads(self) -> int:
        """Number of quads."""
        return int(self.origin_w.shape[0])


@dataclass
class QuadBuilder:
    """Accumulates quads; :meth:`build` freezes them into a :class:`Scene`."""

    atlas: TextureAtlas
    lights_w: list[tuple[float, float, float]] = field(default_factory=list)
    _rows: list[tuple[Vec3, Vec3, Vec3, int, tuple[float, float], int, str]] = field(default_factory=list)

    def quad(
        self,
        origin: Vec3,
        axis_u: Vec3,
        axis_v: Vec3,
        material: int,
        *,
        light: int,
        label: str,
        tex_offset_m: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        """Add one quad; degenerate (zero-area) quads are skipped."""
        axis_u = np.asarray(axis_u, np.float64)
        axis_v = np.asarray(axis_v, np.float64)
        if np.linalg.norm(axis_u) < 1e-9 or np.linalg.norm(axis_v) < 1e-9:
            return
        self._rows.append((np.asarray(origin, np.float64), axis_u, axis_v, material, tex_offset_m, light, label))

    def box(
        self,
        lo: Vec3,
        hi: Vec3,
        material: int,
        *,
        light: int,
        label: str,
        tex_offset_m: tuple[float, float] = (0.0, 0.0),
        bottom: bool = False,
    ) -> None:
        """Add the outward faces of the axis-aligned box ``[lo, hi]`` (bottom face only if asked)."""
        x0, y0, z0 = (float(v) for v in lo)
        x1, y1, z1 = (float(v) for v in hi)
        dx, dy, dz = x1 - x0, y1 - y0, z1 - z0
        faces = [
            ((x1, y0, z0), (0, dy, 0), (0, 0, dz)),  # +x
            ((x0, y1, z0), (0, -dy, 0), (0, 0, dz)),  # -x
            ((x1, y1, z0), (-dx, 0, 0), (0, 0, dz)),  # +y
            ((x0, y0, z0), (dx, 0, 0), (0, 0, dz)),  # -y
            ((x0, y0, z1), (dx, 0, 0), (0, dy, 0)),  # +z
        ]
        if bottom:
            faces.append(((x0, y1, z0), (dx, 0, 0), (0, -dy, 0)))
        for origin, u, v in faces:
            self.quad(np.array(origin), np.array(u), np.array(v), material, light=light, label=label, tex_offset_m=tex_offset_m)

    def vertical_wall(
        self,
        start_xy: tuple[float, float],
        end_xy: tuple[float, float],
        z_range: tuple[float, float],
        material: int,
        *,
        light: int,
        label: str,
        tex_offset_m: tuple[float, float] = (0.0, 0.0),
        openings: list[tuple[float, float, float]] | None = None,
    ) -> None:
        """Add a vertical wall from ``start_xy`` to ``end_xy`` seen from its right side (z up).

        ``openings`` are ``(s_from, s_to, top_z)`` intervals along the wall (metres from the start)
        cut out from the floor up to ``top_z`` (doors); the wall is split around them and the
        texture stays continuous across the pieces.
        """
        start = np.array([*start_xy, 0.0])
        direction = np.array([*end_xy, 0.0]) - start
        length = float(np.linalg.norm(direction))
        unit = direction / length
        z_lo, z_hi = z_range
        cuts = sorted(openings or [])
        s = 0.0
        pieces: list[tuple[float, float, float, float]] = []  # s0, s1, z0, z1
        for s_from, s_to, top_z in cuts:
            pieces.append((s, s_from, z_lo, z_hi))
            pieces.append((s_from, s_to, min(top_z, z_hi), z_hi))
            s = s_to
        pieces.append((s, length, z_lo, z_hi))
        for s0, s1, z0, z1 in pieces:
            if s1 - s0 < 1e-9 or z1 - z0 < 1e-9:
                continue
            origin = start + unit * s0 + np.array([0.0, 0.0, z0])
            self.quad(
                origin,
                unit * (s1 - s0),
                np.array([0.0, 0.0, z1 - z0]),
                material,
                light=light,
                label=label,
                tex_offset_m=(tex_offset_m[0] + s0, tex_offset_m[1] + z0),
            )

    def build(self) -> Scene:
        """Freeze into a :class:`Scene` (normals computed from the edges)."""
        origin = np.array([r[0] for r in self._rows])
        axis_u = np.array([r[1] for r in self._rows])
        axis_v = np.array([r[2] for r in self._rows])
        normal = np.cross(axis_u, axis_v)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        return Scene(
            origin_w=origin,
            axis_u_w=axis_u,
            axis_v_w=axis_v,
            normal_w=normal,
            material=np.array([r[3] for r in self._rows], np.int64),
            tex_offset_m=np.array([r[4] for r in self._rows], np.float64),
            light=np.array([r[5] for r in self._rows], np.int64),
            lights_w=np.asarray(self.lights_w, np.float64).reshape(-1, 3),
            labels=tuple(r[6] for r in self._rows),
            atlas=self.atlas,
        )
