"""Seeded furniture for one room: shelves with books, cabinets, tables, box stacks and posters.

Items stand against a wall. They are generated in room-local coordinates (metres from the room's
lower-left interior corner) so that a twin room can receive an identical copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SIDES = ("W", "N", "E", "S")
#: depth kept free in front of a door (metres) and margin beside it
DOOR_KEEP_OUT_M = 1.0
DOOR_SIDE_MARGIN_M = 0.3


@dataclass(frozen=True)
class Part:
    """One solid box of an item in room-local coordinates."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    material: str
    label: str
    tex_offset_m: tuple[float, float]
    blocks_floor: bool


@dataclass(frozen=True)
class WallSpan:
    """An interval ``[s0, s1]`` along a wall side (metres along x for N/S, along y for W/E)."""

    side: str
    s0: float
    s1: float


class _Local:
    """Converts (s along the wall, t away from it, z) boxes into room-local (x, y, z) boxes."""

    def __init__(self, size_xy: tuple[float, float], side: str) -> None:
        self.size_x, self.size_y = size_xy
        self.side = side

    def box(self, s: tuple[float, float], t: tuple[float, float], z: tuple[float, float]) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        (s0, s1), (t0, t1), (z0, z1) = s, t, z
        if self.side == "S":
            x, y = (s0, s1), (t0, t1)
        elif self.side == "N":
            x, y = (s0, s1), (self.size_y - t1, self.size_y - t0)
        elif self.side == "W":
            x, y = (t0, t1), (s0, s1)
        else:
            x, y = (self.size_x - t1, self.size_x - t0), (s0, s1)
        return (x[0], y[0], z0), (x[1], y[1], z1)


def wall_length(size_xy: tuple[float, float], side: str) -> float:
    """Length of a wall side of a room of interior size ``size_xy``."""
    return size_xy[0] if side in ("N", "S") else size_xy[1]


def _tex(rng: np.random.Generator) -> tuple[float, float]:
    return (float(rng.uniform(0, 4)), float(rng.uniform(0, 4)))


def _shelf(rng: np.random.Generator, loc: _Local, s0: float, width: float, materials: dict[str, str], label: str) -> list[Part]:
    depth, height, panel = float(rng.uniform(0.3, 0.4)), float(rng.uniform(1.2, 2.0)), 0.02
    wood = materials["wood"]
    parts: list[Part] = []

    def add(s: tuple[float, float], t: tuple[float, float], z: tuple[float, float], material: str) -> None:
        lo, hi = loc.box(s, t, z)
        parts.append(Part(lo, hi, material, label, _tex(rng), True))

    add((s0, s0 + panel), (0.0, depth), (0.0, height), wood)
    add((s0 + width - panel, s0 + width), (0.0, depth), (0.0, height), wood)
    add((s0 + panel, s0 + width - panel), (0.0, panel), (0.0, height), wood)
    levels = np.arange(0.0, height - 0.3, float(rng.uniform(0.32, 0.42)))
    for z in [*levels.tolist(), height - panel]:
        add((s0 + panel, s0 + width - panel), (panel, depth), (z, z + panel + (0.06 if z == 0.0 else 0.0)), wood)
    for z in levels.tolist():
        base = z + panel + (0.06 if z == 0.0 else 0.0)
        s = s0 + panel + float(rng.uniform(0.0, 0.05))
        while s < s0 + width - panel - 0.1:
            block = float(rng.uniform(0.08, 0.35))
            block = min(block, s0 + width - panel - s)
            top = base + float(rng.uniform(0.15, 0.28))
            material = materials["books"] if rng.random() < 0.8 else materials["cardboard"]
            add((s, s + block), (panel, depth * float(rng.uniform(0.6, 0.9))), (base, top), material)
            s += block + float(rng.uniform(0.0, 0.12))
    return parts


def _cabinet(rng: np.random.Generator, loc: _Local, s0: float, width: float, materials: dict[str, str], label: str) -> list[Part]:
    depth, height = float(rng.uniform(0.4, 0.5)), float(rng.uniform(0.7, 1.0))
    lo, hi = loc.box((s0, s0 + width), (0.0, depth), (0.0, height))
    parts = [Part(lo, hi, materials["wood"], label, _tex(rng), True)]
    if rng.random() < 0.7:
        size = float(rng.uniform(0.2, 0.35))
        s = s0 + float(rng.uniform(0.05, max(0.06, width - size - 0.05)))
        lo, hi = loc.box((s, s + size), (0.05, 0.05 + size), (height, height + size * 0.8))
        parts.append(Part(lo, hi, materials["cardboard"], label, _tex(rng), True))
    return parts


def _table(rng: np.random.Generator, loc: _Local, s0: float, width: float, materials: dict[str, str], label: str) -> list[Part]:
    gap, depth, height, leg = float(rng.uniform(0.1, 0.3)), float(rng.uniform(0.6, 0.8)), 0.74, 0.05
    wood = materials["wood"]
    parts: list[Part] = []
    t0, t1 = gap, gap + depth
    lo, hi = loc.box((s0, s0 + width), (t0, t1), (height - 0.04, height))
    parts.append(Part(lo, hi, wood, label, _tex(rng), True))
    for s in (s0 + 0.04, s0 + width - 0.04 - leg):
        for t in (t0 + 0.04, t1 - 0.04 - leg):
            lo, hi = loc.box((s, s + leg), (t, t + leg), (0.0, height - 0.04))
            parts.append(Part(lo, hi, wood, label, _tex(rng), True))
    if rng.random() < 0.8:
        size = float(rng.uniform(0.2, 0.4))
        s = s0 + float(rng.uniform(0.1, width - size - 0.1))
        lo, hi = loc.box((s, s + size), (t0 + 0.1, t0 + 0.1 + size * 0.8), (height, height + size * 0.7))
        parts.append(Part(lo, hi, materials["cardboard"], label, _tex(rng), True))
    return parts


def _boxes(rng: np.random.Generator, loc: _Local, s0: float, width: float, materials: dict[str, str], label: str) -> list[Part]:
    parts: list[Part] = []
    z, size = 0.0, width
    for _ in range(int(rng.integers(1, 4))):
        shift = float(rng.uniform(0.0, width - size))
        lo, hi = loc.box((s0 + shift, s0 + shift + size), (0.02, 0.02 + size * 0.9), (z, z + size * 0.75))
        parts.append(Part(lo, hi, materials["cardboard"], label, _tex(rng), True))
        z += size * 0.75
        size *= float(rng.uniform(0.65, 0.95))
    return parts


def _poster(rng: np.random.Generator, loc: _Local, s0: float, width: float, materials: dict[str, str], label: str) -> list[Part]:
    z0 = float(rng.uniform(0.7, 1.3))
    lo, hi = loc.box((s0, s0 + width), (0.0, 0.015), (z0, z0 + width * float(rng.uniform(0.9, 1.4))))
    return [Part(lo, hi, materials["poster"], label, (0.0, 0.0), False)]


#: kind -> (builder, width range m, depth reserved from the wall m)
ITEMS: dict[str, tuple[Callable[..., list[Part]], tuple[float, float], float]] = {
    "shelf": (_shelf, (0.8, 1.6), 0.4),
    "cabinet": (_cabinet, (0.6, 1.2), 0.5),
    "table": (_table, (1.0, 1.6), 1.1),
    "boxes": (_boxes, (0.3, 0.6), 0.6),
    "poster": (_poster, (0.4, 0.9), 0.02),
}


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float], gap: float) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def furnish_room(
    rng: np.random.Generator,
    size_xy: tuple[float, float],
    doors: list[WallSpan],
    plain_sides: set[str],
    n_items: int,
    materials: dict[str, str],
) -> list[Part]:
    """Place up to ``n_items`` items against the walls, away from door spans and each other.

    The first item is a bookshelf (a corner-rich landmark in every room).
    Posters only go on textured walls (``plain_sides`` stay low-texture). ``materials`` maps
    the roles ``wood``, ``books``, ``cardboard`` and ``poster`` to atlas material names.
    """
    taken: list[tuple[float, float, float, float]] = []
    for door in doors:
        loc = _Local(size_xy, door.side)
        lo, hi = loc.box((door.s0 - DOOR_SIDE_MARGIN_M, door.s1 + DOOR_SIDE_MARGIN_M), (0.0, DOOR_KEEP_OUT_M), (0.0, 1.0))
        taken.append((lo[0], lo[1], hi[0], hi[1]))
    parts: list[Part] = []
    kinds = list(ITEMS)
    for item in range(n_items):
        for _attempt in range(20):
            kind = "shelf" if item == 0 else kinds[int(rng.integers(len(kinds)))]
            side = SIDES[int(rng.integers(4))]
            if kind == "poster" and side in plain_sides:
                continue
            build, (w_lo, w_hi), depth = ITEMS[kind]
            width = float(rng.uniform(w_lo, w_hi))
            length = wall_length(size_xy, side)
            if width > length - 0.2:
                continue
            s0 = float(rng.uniform(0.05, length - width - 0.05))
            lo, hi = _Local(size_xy, side).box((s0, s0 + width), (0.0, depth), (0.0, 1.0))
            footprint = (lo[0], lo[1], hi[0], hi[1])
            if any(_overlaps(footprint, other, 0.05) for other in taken):
                continue
            taken.append(footprint)
            parts.extend(build(rng, _Local(size_xy, side), s0, width, materials, f"{kind}{item}"))
            break
    return parts
