"""Procedural home: rooms on a grid joined by doors, with walls, floor, ceiling and furniture.

:func:`generate_house` is deterministic in ``seed``. Rooms are axis-aligned interiors separated by
walls of ``wall_thickness_m``; a door is a passage through such a wall. With ``twin_rooms`` the
first and last room have the same size, furniture and textures (a trap for loop closure).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mp_slam_ros.sim.config import HouseConfig
from mp_slam_ros.sim.furniture import SIDES, Part, WallSpan, furnish_room
from mp_slam_ros.sim.scene import QuadBuilder, Scene
from mp_slam_ros.sim.textures import build_atlas

#: (name, kind, texel size in metres) of every material a house uses
MATERIALS: list[tuple[str, str, float]] = [
    *[(f"wallpaper{i}", "wallpaper", 0.004) for i in range(3)],
    ("bricks0", "bricks", 0.004),
    *[(f"paint{i}", "paint", 0.02) for i in range(3)],
    ("ceiling", "paint", 0.02),
    ("floor_tiles", "floor_tiles", 0.004),
    ("floor_wood", "wood", 0.006),
    ("carpet", "carpet", 0.004),
    *[(f"wood{i}", "wood", 0.002) for i in range(2)],
    *[(f"books{i}", "books", 0.002) for i in range(2)],
    ("cardboard", "cardboard", 0.0015),
    *[(f"poster{i}", "poster", 0.0015) for i in range(4)],
]
_TEXTURED_WALLS = ["wallpaper0", "wallpaper1", "wallpaper2", "bricks0"]
_PLAIN_WALLS = ["paint0", "paint1", "paint2"]
_FLOORS = ["floor_tiles", "floor_wood", "carpet"]


@dataclass(frozen=True)
class Room:
    """Interior ``[lo_xy, hi_xy] x [0, height]`` of one room."""

    index: int
    lo_xy: tuple[float, float]
    hi_xy: tuple[float, float]

    @property
    def label(self) -> str:
        """Name used in scene labels and messages."""
        return f"room{self.index}"

    @property
    def center_xy(self) -> tuple[float, float]:
        """Centre of the floor."""
        return ((self.lo_xy[0] + self.hi_xy[0]) / 2, (self.lo_xy[1] + self.hi_xy[1]) / 2)


@dataclass(frozen=True)
class Door:
    """Passage ``[lo_xy, hi_xy] x [0, height]`` through the wall between two rooms."""

    rooms: tuple[int, int]
    lo_xy: tuple[float, float]
    hi_xy: tuple[float, float]
    height: float
    #: 0 if the passage crosses a wall of constant x (rooms side by side in x), else 1
    axis: int


@dataclass(frozen=True)
class Solid:
    """A furniture box in the world frame."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    label: str
    blocks_floor: bool


@dataclass(frozen=True)
class House:
    """The generated home: geometry for planning and checks, and the renderable scene."""

    rooms: tuple[Room, ...]
    doors: tuple[Door, ...]
    solids: tuple[Solid, ...]
    wall_height_m: float
    twins: tuple[int, int] | None
    scene: Scene

    def obstruction(self, point_w: np.ndarray, margin_m: float) -> str | None:
        """Name of what ``point_w`` (3,) is inside of or within ``margin_m`` of; None if free."""
        x, y, z = (float(v) for v in point_w)
        for solid in self.solids:
            if all(solid.lo[i] - margin_m < p < solid.hi[i] + margin_m for i, p in enumerate((x, y, z))):
                return solid.label
        if not margin_m < z < self.wall_height_m - margin_m:
            return "the floor" if z <= margin_m else "the ceiling"
        for room in self.rooms:
            if room.lo_xy[0] + margin_m < x < room.hi_xy[0] - margin_m and room.lo_xy[1] + margin_m < y < room.hi_xy[1] - margin_m:
                return None
        for door in self.doors:
            along, across = (y, x) if door.axis == 0 else (x, y)
            lo_along, hi_along = door.lo_xy[1 - door.axis], door.hi_xy[1 - door.axis]
            lo_across, hi_across = door.lo_xy[door.axis], door.hi_xy[door.axis]
            if lo_along + margin_m < along < hi_along - margin_m and lo_across - margin_m < across < hi_across + margin_m and z < door.height - margin_m:
                return None
        nearest = min(self.rooms, key=lambda r: np.hypot(x - r.center_xy[0], y - r.center_xy[1]))
        return f"a wall of {nearest.label} (or outside the house)"


def _grid_shape(n_rooms: int) -> tuple[int, int]:
    rows = 1 if n_rooms <= 3 else (2 if n_rooms <= 8 else 3)
    return rows, -(-n_rooms // rows)


def _door_edges(rng: np.random.Generator, cells: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spanning tree of the grid adjacency plus extra doors (loops), as room-index pairs."""
    index = {cell: i for i, cell in enumerate(cells)}
    edges = [(index[(r, c)], index[(r + dr, c + dc)]) for (r, c) in cells for dr, dc in ((0, 1), (1, 0)) if (r + dr, c + dc) in index]
    order = rng.permutation(len(edges))
    parent = list(range(len(cells)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    chosen = []
    for k in order:
        a, b = edges[k]
        if find(a) != find(b):
            parent[find(a)] = find(b)
            chosen.append(edges[k])
        elif rng.random() < 0.7:
            chosen.append(edges[k])
    return sorted(chosen)


def _layout(rng: np.random.Generator, cfg: HouseConfig) -> tuple[list[Room], list[tuple[int, int]]]:
    """Rooms on a grid (column widths and row depths drawn from ``room_size_m``) and their cells."""
    rows, cols = _grid_shape(cfg.n_rooms)
    lo, hi = cfg.room_size_m
    widths = rng.uniform(lo, hi, cols)
    depths = rng.uniform(lo, hi, rows)
    if cfg.twin_rooms:
        widths[:] = widths[0]
        depths[:] = depths[0]
    xs = np.concatenate([[0.0], np.cumsum(widths + cfg.wall_thickness_m)])
    ys = np.concatenate([[0.0], np.cumsum(depths + cfg.wall_thickness_m)])
    cells = [(r, c) for r in range(rows) for c in range(cols)][: cfg.n_rooms]
    return [
        Room(i, (float(xs[c]), float(ys[r])), (float(xs[c] + widths[c]), float(ys[r] + depths[r])))
        for i, (r, c) in enumerate(cells)
    ], cells


def _make_door(rng: np.random.Generator, a: Room, b: Room, cfg: HouseConfig) -> Door:
    axis = 0 if abs(a.lo_xy[1] - b.lo_xy[1]) < 1e-9 else 1  # same row -> wall of constant x
    along_lo, along_hi = a.lo_xy[1 - axis], a.hi_xy[1 - axis]
    start = float(rng.uniform(along_lo + 0.4, along_hi - 0.4 - cfg.door_width_m))
    lo, hi = [0.0, 0.0], [0.0, 0.0]
    lo[axis], hi[axis] = a.hi_xy[axis], b.lo_xy[axis]
    lo[1 - axis], hi[1 - axis] = start, start + cfg.door_width_m
    return Door((a.index, b.index), (lo[0], lo[1]), (hi[0], hi[1]), cfg.door_height_m, axis)


def _wall_segment(room: Room, side: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """Start and end of a wall side, traversed clockwise so that its right side faces inwards."""
    (x0, y0), (x1, y1) = room.lo_xy, room.hi_xy
    return {"W": ((x0, y0), (x0, y1)), "N": ((x0, y1), (x1, y1)), "E": ((x1, y1), (x1, y0)), "S": ((x1, y0), (x0, y0))}[side]


def _door_spans(room: Room, doors: list[Door]) -> list[WallSpan]:
    """Door intervals on the walls of ``room`` in furniture coordinates (s from the lower corner)."""
    spans = []
    for door in doors:
        if room.index not in door.rooms:
            continue
        first = door.rooms[0] == room.index
        side = ("E" if first else "W") if door.axis == 0 else ("N" if first else "S")
        k = 1 - door.axis
        spans.append(WallSpan(side, door.lo_xy[k] - room.lo_xy[k], door.hi_xy[k] - room.lo_xy[k]))
    return spans


def _openings(room: Room, side: str, spans: list[WallSpan], door_height: float) -> list[tuple[float, float, float]]:
    """Door spans converted to distances along the clockwise wall segment."""
    size = (room.hi_xy[0] - room.lo_xy[0], room.hi_xy[1] - room.lo_xy[1])
    length = size[0] if side in ("N", "S") else size[1]
    flip = side in ("E", "S")
    return [((length - s.s1, length - s.s0, door_height) if flip else (s.s0, s.s1, door_height)) for s in spans if s.side == side]


@dataclass(frozen=True)
class _RoomStyle:
    floor: str
    walls: dict[str, tuple[str, tuple[float, float]]]
    furniture_materials: dict[str, str]


def _style(rng: np.random.Generator, cfg: HouseConfig) -> _RoomStyle:
    walls = {}
    for side in SIDES:
        plain = rng.random() < cfg.plain_wall_fraction
        pool = _PLAIN_WALLS if plain else _TEXTURED_WALLS
        walls[side] = (pool[int(rng.integers(len(pool)))], (float(rng.uniform(0, 4)), float(rng.uniform(0, 4))))
    materials = {
        "wood": f"wood{int(rng.integers(2))}",
        "books": f"books{int(rng.integers(2))}",
        "cardboard": "cardboard",
        "poster": f"poster{int(rng.integers(4))}",
    }
    return _RoomStyle(_FLOORS[int(rng.integers(len(_FLOORS)))], walls, materials)


def generate_house(cfg: HouseConfig, seed: int) -> House:
    """Build the home for ``seed``."""
    rng = np.random.default_rng([seed, 1])
    rooms, cells = _layout(rng, cfg)
    doors = [_make_door(rng, rooms[a], rooms[b], cfg) for a, b in _door_edges(rng, cells)]
    twins = (0, len(rooms) - 1) if cfg.twin_rooms else None
    styles = [_style(rng, cfg) for _ in rooms]
    furniture = []
    for room in rooms:
        size = (room.hi_xy[0] - room.lo_xy[0], room.hi_xy[1] - room.lo_xy[1])
        spans = _door_spans(room, doors)
        if twins and room.index == twins[1]:
            styles[room.index] = styles[twins[0]]
            furniture.append(furniture[twins[0]])
            continue
        if twins and room.index == twins[0]:
            spans += _door_spans(rooms[twins[1]], doors)
        plain = {side for side, (name, _) in styles[room.index].walls.items() if name in _PLAIN_WALLS}
        furniture.append(furnish_room(rng, size, spans, plain, cfg.furniture_per_room, styles[room.index].furniture_materials))
    atlas = build_atlas(MATERIALS, seed, cfg.texture_detail)
    builder = QuadBuilder(atlas)
    solids: list[Solid] = []
    for room, style, parts in zip(rooms, styles, furniture):
        _add_room(builder, room, style, _door_spans(room, doors), cfg)
        solids += _add_parts(builder, room, parts)
    for door in doors:
        _add_door(builder, door, cfg)
    return House(tuple(rooms), tuple(doors), tuple(solids), cfg.wall_height_m, twins, builder.build())


def _add_room(builder: QuadBuilder, room: Room, style: _RoomStyle, spans: list[WallSpan], cfg: HouseConfig) -> None:
    atlas = builder.atlas
    light = len(builder.lights_w)
    builder.lights_w.append((*room.center_xy, cfg.wall_height_m - 0.3))
    (x0, y0), (x1, y1) = room.lo_xy, room.hi_xy
    h = cfg.wall_height_m
    builder.quad(np.array([x0, y0, 0.0]), np.array([x1 - x0, 0, 0]), np.array([0, y1 - y0, 0]), atlas.index(style.floor), light=light, label=f"{room.label}/floor")
    builder.quad(np.array([x0, y1, h]), np.array([x1 - x0, 0, 0]), np.array([0, y0 - y1, 0]), atlas.index("ceiling"), light=light, label=f"{room.label}/ceiling")
    for side in SIDES:
        start, end = _wall_segment(room, side)
        material, offset = style.walls[side]
        builder.vertical_wall(
            start, end, (0.0, h), atlas.index(material), light=light, label=f"{room.label}/wall_{side}",
            tex_offset_m=offset, openings=_openings(room, side, spans, cfg.door_height_m),
        )


def _add_parts(builder: QuadBuilder, room: Room, parts: list[Part]) -> list[Solid]:
    ox, oy = room.lo_xy
    solids = []
    for part in parts:
        lo = (part.lo[0] + ox, part.lo[1] + oy, part.lo[2])
        hi = (part.hi[0] + ox, part.hi[1] + oy, part.hi[2])
        label = f"{room.label}/{part.label}"
        builder.box(np.array(lo), np.array(hi), builder.atlas.index(part.material), light=room.index, label=label, tex_offset_m=part.tex_offset_m)
        solids.append(Solid(lo, hi, label, part.blocks_floor))
    return solids


def _add_door(builder: QuadBuilder, door: Door, cfg: HouseConfig) -> None:
    (x0, y0), (x1, y1) = door.lo_xy, door.hi_xy
    label = f"door{door.rooms[0]}-{door.rooms[1]}"
    light = door.rooms[0]
    jamb = builder.atlas.index("paint0")
    builder.quad(np.array([x0, y0, 0.0]), np.array([x1 - x0, 0, 0]), np.array([0, y1 - y0, 0]), builder.atlas.index("floor_wood"), light=light, label=label)
    builder.quad(np.array([x0, y1, door.height]), np.array([x1 - x0, 0, 0]), np.array([0, y0 - y1, 0]), jamb, light=light, label=label)
    if door.axis == 0:
        sides = [((x1, y0), (x0, y0)), ((x0, y1), (x1, y1))]
    else:
        sides = [((x0, y0), (x0, y1)), ((x1, y1), (x1, y0))]
    for start, end in sides:
        builder.vertical_wall(start, end, (0.0, door.height), jamb, light=light, label=label)
