"""Exact pinhole renderer of a quad scene: per-pixel ray/plane intersection inside each quad's
screen bounding box, a z-buffer, and trilinear (mip-mapped) texture sampling, compiled with numba.

Depth is the z coordinate in the camera optical frame (REP-103: x right, y down, z forward) of
the surface hit by the ray through the pixel centre ``(u, v)`` (integer coordinates, OpenCV/ROS
convention), so ``u = fx * x / z + cx`` holds exactly for every rendered surface point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.geometry.camera import PinholeCamera
from mp_slam_ros.sim.scene import Scene

_EDGE_EPS = 1e-7
_AMBIENT = 0.45
_DIFFUSE = 0.75
_FALLOFF_M = 3.5
_ROWS_PER_CHUNK = 8


@dataclass(frozen=True)
class RenderResult:
    """One rendered view; pixels that see nothing have depth 0 and surface -1."""

    rgb: NDArray[np.uint8]  # (H, W, 3)
    depth_m: NDArray[np.float32]  # (H, W) optical-axis depth, metres
    surface: NDArray[np.int32]  # (H, W) quad index
    albedo: NDArray[np.float32]  # (H, W) grey reflectance in [0, 1] before lighting
    cos_incidence: NDArray[np.float32]  # (H, W) |cos| of the angle between ray and surface normal


@numba.njit(cache=True)
def _screen_boxes(origin_c, axis_u_c, axis_v_c, normal_c, near, fx, fy, cx, cy, width, height):  # type: ignore[no-untyped-def]
    """Screen bounding boxes ``(Q, 4)`` [u0, v0, u1, v1) of front-facing quads clipped at ``near``."""
    n_quads = origin_c.shape[0]
    boxes = np.zeros((n_quads, 4), np.int64)
    corners = np.empty((4, 3))
    clipped = np.empty((8, 3))
    for q in range(n_quads):
        o = origin_c[q]
        if normal_c[q, 0] * o[0] + normal_c[q, 1] * o[1] + normal_c[q, 2] * o[2] >= 0.0:
            continue  # back face
        for i in range(3):
            corners[0, i] = o[i]
            corners[1, i] = o[i] + axis_u_c[q, i]
            corners[2, i] = o[i] + axis_u_c[q, i] + axis_v_c[q, i]
            corners[3, i] = o[i] + axis_v_c[q, i]
        count = 0
        for i in range(4):  # Sutherland-Hodgman against z >= near
            a = corners[i]
            b = corners[(i + 1) % 4]
            if a[2] >= near:
                clipped[count] = a
                count += 1
            if (a[2] >= near) != (b[2] >= near):
                t = (near - a[2]) / (b[2] - a[2])
                clipped[count] = a + t * (b - a)
                count += 1
        if count == 0:
            continue
        u_lo, v_lo, u_hi, v_hi = 1e18, 1e18, -1e18, -1e18
        for i in range(count):
            u = fx * clipped[i, 0] / clipped[i, 2] + cx
            v = fy * clipped[i, 1] / clipped[i, 2] + cy
            u_lo, u_hi = min(u_lo, u), max(u_hi, u)
            v_lo, v_hi = min(v_lo, v), max(v_hi, v)
        boxes[q, 0] = max(0, int(np.floor(u_lo)) - 1)
        boxes[q, 1] = max(0, int(np.floor(v_lo)) - 1)
        boxes[q, 2] = min(width, int(np.ceil(u_hi)) + 2)
        boxes[q, 3] = min(height, int(np.ceil(v_hi)) + 2)
    return boxes


@numba.njit(cache=True, parallel=True)
def _rasterize(origin_c, axis_u_c, axis_v_c, normal_c, boxes, near, fx, fy, cx, cy, depth, surface, coord_a, coord_b):  # type: ignore[no-untyped-def]
    """Z-buffer pass: nearest quad, depth and edge coordinates (a, b) per pixel (rows in parallel)."""
    height, width = depth.shape
    visible = np.nonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))[0]
    for r in numba.prange(height):
        y = (r - cy) / fy
        for k in range(visible.shape[0]):
            q = visible[k]
            if r < boxes[q, 1] or r >= boxes[q, 3]:
                continue
            n0, n1, n2 = normal_c[q, 0], normal_c[q, 1], normal_c[q, 2]
            o0, o1, o2 = origin_c[q, 0], origin_c[q, 1], origin_c[q, 2]
            u0, u1, u2 = axis_u_c[q, 0], axis_u_c[q, 1], axis_u_c[q, 2]
            v0, v1, v2 = axis_v_c[q, 0], axis_v_c[q, 1], axis_v_c[q, 2]
            inv_uu = 1.0 / (u0 * u0 + u1 * u1 + u2 * u2)
            inv_vv = 1.0 / (v0 * v0 + v1 * v1 + v2 * v2)
            num = n0 * o0 + n1 * o1 + n2 * o2
            for c in range(boxes[q, 0], boxes[q, 2]):
                x = (c - cx) / fx
                den = n0 * x + n1 * y + n2
                if den >= -1e-12:
                    continue
                z = num / den
                if z <= near or z >= depth[r, c]:
                    continue
                px, py, pz = z * x - o0, z * y - o1, z - o2
                a = (px * u0 + py * u1 + pz * u2) * inv_uu
                if a < -_EDGE_EPS or a > 1.0 + _EDGE_EPS:
                    continue
                b = (px * v0 + py * v1 + pz * v2) * inv_vv
                if b < -_EDGE_EPS or b > 1.0 + _EDGE_EPS:
                    continue
                depth[r, c] = z
                surface[r, c] = q
                coord_a[r, c] = a
                coord_b[r, c] = b


@numba.njit(cache=True, inline="always")
def _bilinear_rgb(texels, offset, size, x, y):  # type: ignore[no-untyped-def]
    """Bilinear RGB sample of a wrapping ``size x size`` texture at texel coordinates (x, y)."""
    x0 = int(np.floor(x))
    y0 = int(np.floor(y))
    fx = x - x0
    fy = y - y0
    mask = size - 1
    xa, xb = x0 & mask, (x0 + 1) & mask
    ya, yb = y0 & mask, (y0 + 1) & mask
    i00 = offset + (ya * size + xa) * 3
    i01 = offset + (ya * size + xb) * 3
    i10 = offset + (yb * size + xa) * 3
    i11 = offset + (yb * size + xb) * 3
    w00, w01, w10, w11 = (1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy
    red = w00 * texels[i00] + w01 * texels[i01] + w10 * texels[i10] + w11 * texels[i11]
    green = w00 * texels[i00 + 1] + w01 * texels[i01 + 1] + w10 * texels[i10 + 1] + w11 * texels[i11 + 1]
    blue = w00 * texels[i00 + 2] + w01 * texels[i01 + 2] + w10 * texels[i10 + 2] + w11 * texels[i11 + 2]
    return red, green, blue


@numba.njit(cache=True, parallel=True)
def _shade(depth, surface, coord_a, coord_b, len_u, len_v, tex_offset, material, normal_c, quad_light, lights_c,
           texels, offsets, sizes, n_levels, texel_m, fx, fy, cx, cy, rgb, albedo, cos_incidence):  # type: ignore[no-untyped-def]
    """Texture (trilinear mip-mapping) and Lambert lighting of every pixel that hit a quad."""
    height, width = depth.shape
    for r in numba.prange(height):
        y = (r - cy) / fy
        for c in range(width):
            q = surface[r, c]
            if q < 0:
                continue
            z = depth[r, c]
            x = (c - cx) / fx
            ray_norm = np.sqrt(x * x + y * y + 1.0)
            cos_i = abs(normal_c[q, 0] * x + normal_c[q, 1] * y + normal_c[q, 2]) / ray_norm
            cos_incidence[r, c] = cos_i
            m = material[q]
            texel = texel_m[m]
            footprint = z * ray_norm / fx / max(cos_i, 0.25)
            level = np.log2(max(footprint / texel, 1.0))
            top = n_levels[m] - 1
            level = min(level, float(top))
            l0 = int(level)
            l1 = min(l0 + 1, top)
            w1 = level - l0
            s = coord_a[r, c] * len_u[q] + tex_offset[q, 0]
            t = coord_b[r, c] * len_v[q] + tex_offset[q, 1]
            scale0 = texel * (1 << l0)
            scale1 = texel * (1 << l1)
            light = quad_light[q]
            lx, ly, lz = lights_c[light, 0] - z * x, lights_c[light, 1] - z * y, lights_c[light, 2] - z
            dist = np.sqrt(lx * lx + ly * ly + lz * lz)
            lambert = max(0.0, (normal_c[q, 0] * lx + normal_c[q, 1] * ly + normal_c[q, 2] * lz) / dist)
            gain = _AMBIENT + _DIFFUSE * lambert / (1.0 + (dist / _FALLOFF_M) ** 2)
            r0, g0, b0 = _bilinear_rgb(texels, offsets[m, l0], sizes[m, l0], s / scale0 - 0.5, -t / scale0 - 0.5)
            r1, g1, b1 = _bilinear_rgb(texels, offsets[m, l1], sizes[m, l1], s / scale1 - 0.5, -t / scale1 - 0.5)
            red, green, blue = r0 + w1 * (r1 - r0), g0 + w1 * (g1 - g0), b0 + w1 * (b1 - b0)
            albedo[r, c] = (red + green + blue) / (3.0 * 255.0)
            rgb[r, c, 0] = np.uint8(min(255.0, red * gain + 0.5))
            rgb[r, c, 1] = np.uint8(min(255.0, green * gain + 0.5))
            rgb[r, c, 2] = np.uint8(min(255.0, blue * gain + 0.5))


def render(scene: Scene, camera: PinholeCamera, T_world_cam: NDArray[np.float64], near_m: float = 0.05) -> RenderResult:
    """Render ``scene`` from the optical frame pose ``T_world_cam`` (4x4, REP-103 optical axes)."""
    R_world_cam = T_world_cam[:3, :3]
    t_world_cam = T_world_cam[:3, 3]
    origin_c = (scene.origin_w - t_world_cam) @ R_world_cam
    axis_u_c = scene.axis_u_w @ R_world_cam
    axis_v_c = scene.axis_v_w @ R_world_cam
    normal_c = scene.normal_w @ R_world_cam
    lights_c = (scene.lights_w - t_world_cam) @ R_world_cam
    h, w = camera.height, camera.width
    args = (camera.fx, camera.fy, camera.cx, camera.cy)
    boxes = _screen_boxes(origin_c, axis_u_c, axis_v_c, normal_c, near_m, *args, w, h)
    depth = np.full((h, w), np.inf, np.float64)
    surface = np.full((h, w), -1, np.int32)
    coord_a = np.zeros((h, w), np.float64)
    coord_b = np.zeros((h, w), np.float64)
    rgb = np.zeros((h, w, 3), np.uint8)
    albedo = np.zeros((h, w), np.float32)
    cos_incidence = np.zeros((h, w), np.float32)
    atlas = scene.atlas
    # rows are handed out in small chunks so a thread slowed by other load does not stall the frame
    with numba.parallel_chunksize(_ROWS_PER_CHUNK):
        _rasterize(origin_c, axis_u_c, axis_v_c, normal_c, boxes, near_m, *args, depth, surface, coord_a, coord_b)
        _shade(
            depth, surface, coord_a, coord_b,
            np.linalg.norm(scene.axis_u_w, axis=1), np.linalg.norm(scene.axis_v_w, axis=1), scene.tex_offset_m, scene.material,
            normal_c, scene.light, lights_c, atlas.texels, atlas.offsets, atlas.sizes, atlas.n_levels, atlas.texel_m,
            *args, rgb, albedo, cos_incidence,
        )
    depth[surface < 0] = 0.0
    return RenderResult(rgb, depth.astype(np.float32), surface, albedo, cos_incidence)
