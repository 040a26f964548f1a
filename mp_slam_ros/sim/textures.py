"""Seeded procedural textures (rich in corners, or deliberately plain) and their mip pyramids.

Every texture is a square power-of-two RGB image attached to surfaces in metres (``texel_m`` per
texel), so the same surface point has the same colour from every view. All randomness comes from
the ``numpy.random.Generator`` passed in; OpenCV drawing is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]
_LETTERS = np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"))


@dataclass(frozen=True)
class TextureAtlas:
    """All textures of a scene, with mip levels, packed for the renderer.

    ``texels`` is one flat ``uint8`` array; level ``l`` of material ``m`` is a
    ``sizes[m, l] x sizes[m, l] x 3`` image starting at ``offsets[m, l]``.
    """

    names: tuple[str, ...]
    texels: NDArray[np.uint8]
    offsets: NDArray[np.int64]
    sizes: NDArray[np.int64]
    n_levels: NDArray[np.int64]
    texel_m: NDArray[np.float64]

    def index(self, name: str) -> int:
        """Material index of ``name``."""
        return self.names.index(name)

    def level0(self, material: int) -> Image:
        """Full-resolution texture ``(S, S, 3)`` of one material (a view into the atlas)."""
        size = int(self.sizes[material, 0])
        start = int(self.offsets[material, 0])
        return self.texels[start : start + size * size * 3].reshape(size, size, 3)


def _noise(rng: np.random.Generator, size: int, cells: int) -> NDArray[np.float32]:
    """Smooth value noise in [-1, 1]: a ``cells x cells`` random grid upsampled (wraps at the edge)."""
    grid = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
    tiled = np.tile(grid, (3, 3))
    big = cv2.resize(tiled, (3 * size, 3 * size), interpolation=cv2.INTER_CUBIC)
    return big[size : 2 * size, size : 2 * size]


def _fbm(rng: np.random.Generator, size: int, base_cells: int, octaves: int) -> NDArray[np.float32]:
    """Fractal noise: octaves of :func:`_noise` with halving amplitude, roughly in [-1, 1]."""
    total = np.zeros((size, size), np.float32)
    amplitude = 0.5
    for octave in range(octaves):
        total += amplitude * _noise(rng, size, min(size, base_cells * 2**octave))
        amplitude *= 0.5
    return total


def _colour(rng: np.random.Generator, lo: float = 40.0, hi: float = 230.0) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.uniform(lo, hi, 3))  # type: ignore[return-value]


def _shade(base: tuple[int, int, int], noise: NDArray[np.float32], amount: float) -> Image:
    img = np.asarray(base, np.float32)[None, None, :] * (1.0 + amount * noise[..., None])
    return np.clip(img, 0, 255).astype(np.uint8)


def _text(rng: np.random.Generator, img: Image, x: int, y: int, scale: float, colour: tuple[int, int, int]) -> None:
    word = "".join(rng.choice(_LETTERS, int(rng.integers(3, 8))))
    thickness = max(1, int(scale * 2))
    cv2.putText(img, word, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def wallpaper(rng: np.random.Generator, size: int) -> Image:
    """Patterned wallpaper: noisy base, rectangles, discs and printed words (many corners)."""
    img = _shade(_colour(rng, 120, 220), _fbm(rng, size, 8, 4), 0.25)
    for _ in range(size // 10):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(size // 64, size // 10, 2))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + w, y + h), _colour(rng), -1)
        else:
            cv2.circle(img, (x, y), w // 2, _colour(rng), -1, cv2.LINE_AA)
    for _ in range(size // 40):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        _text(rng, img, x, y, float(rng.uniform(0.4, 1.2)) * size / 1024, _colour(rng, 0, 90))
    return img


def bricks(rng: np.random.Generator, size: int) -> Image:
    """Brick wall: offset rows of tinted bricks with mortar lines."""
    mortar = _colour(rng, 170, 210)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = mortar
    brick_h, brick_w, gap = size // 16, size // 6, max(2, size // 200)
    base = np.asarray(_colour(rng, 90, 170), np.float32)
    for row, y in enumerate(range(0, size, brick_h)):
        shift = (brick_w // 2) * (row % 2)
        for x in range(-shift, size, brick_w):
            tint = np.clip(base * rng.uniform(0.7, 1.3, 3), 0, 255)
            cv2.rectangle(img, (x + gap, y + gap), (x + brick_w - gap, y + brick_h - gap), tint.tolist(), -1)
    return _shade_image(img, _fbm(rng, size, 32, 3), 0.15)


def _shade_image(img: Image, noise: NDArray[np.float32], amount: float) -> Image:
    return np.clip(img.astype(np.float32) * (1.0 + amount * noise[..., None]), 0, 255).astype(np.uint8)


def books(rng: np.random.Generator, size: int) -> Image:
    """Rows of book spines of random widths, colours, bands and titles."""
    img = np.zeros((size, size, 3), np.uint8)
    row_h = size // 4
    for y in range(0, size, row_h):
        x = 0
        while x < size:
            w = int(rng.integers(size // 40, size // 12))
            h = int(row_h * rng.uniform(0.65, 0.98))
            colour = _colour(rng, 20, 220)
            cv2.rectangle(img, (x, y + row_h - h), (x + w - 1, y + row_h - 1), colour, -1)
            band = int(y + row_h - h * rng.uniform(0.2, 0.8))
            cv2.rectangle(img, (x, band), (x + w - 1, band + size // 80), _colour(rng), -1)
            x += w
    return _shade_image(img, _fbm(rng, size, 16, 2), 0.2)


def wood(rng: np.random.Generator, size: int) -> Image:
    """Wood planks: stretched grain noise with seams between planks."""
    grain = cv2.resize(_fbm(rng, size, 8, 4), (size, size // 8))
    grain = cv2.resize(np.tile(grain, (8, 1)), (size, size))
    img = _shade(_colour(rng, 100, 180), grain, 0.35)
    plank = size // 8
    for y in range(0, size, plank):
        offset = int(rng.integers(0, size))
        img[y : y + 2] = img[y : y + 2] // 3
        img[y : y + plank, offset : offset + 2] //= 3
    return img


def floor_tiles(rng: np.random.Generator, size: int) -> Image:
    """Ceramic tiles of slightly varying tint with dark grout and speckles."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = _colour(rng, 40, 80)
    tile, gap = size // 8, max(2, size // 256)
    base = np.asarray(_colour(rng, 120, 230), np.float32)
    for y in range(0, size, tile):
        for x in range(0, size, tile):
            tint = np.clip(base * rng.uniform(0.85, 1.15), 0, 255)
            cv2.rectangle(img, (x + gap, y + gap), (x + tile - gap, y + tile - gap), tint.tolist(), -1)
    speckle = rng.random((size, size)) < 0.01
    img[speckle] = img[speckle] // 2
    return _shade_image(img, _fbm(rng, size, 16, 3), 0.1)


def carpet(rng: np.random.Generator, size: int) -> Image:
    """Carpet: coloured fractal noise (blobs, few sharp corners)."""
    base = _colour(rng, 60, 180)
    img = _shade(base, _fbm(rng, size, 16, 5), 0.6)
    return img


def paint(rng: np.random.Generator, size: int) -> Image:
    """Plain painted wall: one colour with a faint low-frequency shading (low texture)."""
    return _shade(_colour(rng, 150, 235), _fbm(rng, size, 2, 2), 0.04)


def cardboard(rng: np.random.Generator, size: int) -> Image:
    """Cardboard: brown noise with tape strips, printed labels and words."""
    img = _shade((150, 115, 75), _fbm(rng, size, 16, 3), 0.15)
    cv2.rectangle(img, (0, size // 2 - size // 20), (size, size // 2 + size // 20), (190, 170, 120), -1)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(0, size - size // 4, 2))
        cv2.rectangle(img, (x, y), (x + size // 5, y + size // 8), (235, 235, 230), -1)
        _text(rng, img, x + 4, y + size // 12, size / 600.0, (20, 20, 20))
    return img


def poster(rng: np.random.Generator, size: int) -> Image:
    """Poster/picture: colour blocks, discs, lines and a title."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = _colour(rng)
    for _ in range(25):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(size // 30, size // 6))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x - r, y - r), (x + r, y + r // 2), _colour(rng), -1)
        else:
            cv2.circle(img, (x, y), r, _colour(rng), -1, cv2.LINE_AA)
    for _ in range(4):
        _text(rng, img, int(rng.integers(0, size // 2)), int(rng.integers(size // 8, size)), size / 250.0, _colour(rng, 0, 60))
    return img


#: kind -> (generator, default size in texels)
KINDS: dict[str, tuple[Callable[[np.random.Generator, int], Image], int]] = {
    "wallpaper": (wallpaper, 1024),
    "bricks": (bricks, 1024),
    "books": (books, 512),
    "wood": (wood, 512),
    "floor_tiles": (floor_tiles, 1024),
    "carpet": (carpet, 1024),
    "paint": (paint, 256),
    "cardboard": (cardboard, 512),
    "poster": (poster, 512),
}


def mip_pyramid(image: Image, min_size: int = 4) -> list[Image]:
    """Levels of a square power-of-two image, each half the size (box filter)."""
    levels = [image]
    while levels[-1].shape[0] > min_size:
        levels.append(cv2.resize(levels[-1], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    return levels


def build_atlas(specs: list[tuple[str, str, float]], seed: int, detail: float = 1.0) -> TextureAtlas:
    """Generate one texture per ``(name, kind, texel_m)`` from ``seed`` and pack all mip levels.

    ``detail`` scales every texture size (power of two kept) so tests can use small textures;
    ``texel_m`` is scaled inversely so textures keep their size in metres.
    """
    images: list[list[Image]] = []
    texel_m = []
    for index, (_, kind, texel) in enumerate(specs):
        make, size = KINDS[kind]
        scaled = int(2 ** round(np.log2(max(16, size * detail))))
        rng = np.random.default_rng([seed, index])
        images.append(mip_pyramid(make(rng, scaled)))
        texel_m.append(texel * size / scaled)
    n_levels = max(len(levels) for levels in images)
    offsets = np.zeros((len(specs), n_levels), np.int64)
    sizes = np.zeros((len(specs), n_levels), np.int64)
    position = 0
    for m, levels in enumerate(images):
        for level in range(n_levels):
            image = levels[min(level, len(levels) - 1)]
            offsets[m, level] = position if level < len(levels) else offsets[m, len(levels) - 1]
            sizes[m, level] = image.shape[0]
            if level < len(levels):
                position += image.size
    texels = np.concatenate([image.reshape(-1) for levels in images for image in levels])
    return TextureAtlas(
        names=tuple(name for name, _, _ in specs),
        texels=texels,
        offsets=offsets,
        sizes=sizes,
        n_levels=np.array([len(levels) for levels in images], np.int64),
        texel_m=np.asarray(texel_m, np.float64),
    )
