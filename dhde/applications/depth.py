"""Pseudo-depth from a defocus map, and its export (paper 5.4, 3-D estimation).

When the whole scene lies on one side of the focal plane, the amount of defocus grows
monotonically with the distance from that plane, so the scaled defocus map is a relative
(pseudo) depth map. It carries no metric scale and no sign: the caller says which side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

from dhde.io import atomic
from dhde.applications import _spectral
from dhde import checks
from dhde.io.image import save_image

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class DepthParams:
    """Pseudo-depth and point-cloud parameters (``conf/depth.yaml``; the defaults of
    :func:`pseudo_depth`, :func:`point_cloud`, :func:`save_point_cloud_ply` and of
    ``experiments/depth.py``).

    Attributes:
      near_is_sharp: the camera focused on the nearest objects (0 = near = sharp).
      smooth_sigma: Gaussian smoothing of the map before scaling, pixels (0 = none).
      ply_step: keep every ``ply_step``-th row / column in the point cloud (``step``).
      z_scale: depth extent in pixels; None = 0.25 * max(H, W).
      ply_binary: binary_little_endian (True) or ascii (False) PLY (``binary``).
    """

    near_is_sharp: bool = True
    smooth_sigma: float = 0.0
    ply_step: int = 1
    z_scale: float | None = None
    ply_binary: bool = True


@partial(jax.jit, static_argnames=("near_is_sharp", "smooth"))
def _pseudo_depth_impl(defocus, smooth_sigma, near_is_sharp: bool, smooth: bool):
    d = _spectral.blur(defocus, smooth_sigma) if smooth else defocus
    lo, hi = jnp.min(d), jnp.max(d)
    span = hi - lo
    depth = jnp.where(span > 0, (d - lo) / jnp.where(span > 0, span, 1.0), 0.0)
    depth = jnp.clip(depth, 0.0, 1.0)
    return depth if near_is_sharp else jnp.where(span > 0, 1.0 - depth, 0.0)


def pseudo_depth(defocus, *, near_is_sharp: bool = DepthParams.near_is_sharp,
                 smooth_sigma: float = DepthParams.smooth_sigma) -> jax.Array:
    """Relative depth in [0, 1] from a defocus map (scenes on one side of the focal plane).

    ``depth = (d - min d) / (max d - min d)`` with ``d`` the (optionally smoothed) defocus.

    Args:
      defocus: float (H, W) defocus map, Gaussian sigma in pixels, >= 0, finite.
      near_is_sharp: True (default) when the camera focused on the nearest objects and the
        scene lies behind the focal plane: 0 = near / in focus, 1 = far / most blurred.
        False when the scene lies in front of the focal plane (focus on the background):
        0 = near / most blurred, 1 = far / in focus.
      smooth_sigma: std in pixels of a Gaussian smoothing of the map before scaling
        (symmetric borders); 0 (default) = none.

    Returns:
      float32 jax.Array (H, W) in [0, 1] (0 = near). A constant map gives all zeros.
    """
    fn = "pseudo_depth"
    defocus = checks.sigma_map(defocus, fn)
    smooth_sigma = checks.scalar(smooth_sigma, "smooth_sigma", where=fn, lo=0.0)
    if not isinstance(near_is_sharp, (bool, np.bool_)):
        raise TypeError(f"{fn}: near_is_sharp must be a bool, got {type(near_is_sharp).__name__}")
    return _pseudo_depth_impl(
        jnp.asarray(defocus), jnp.float32(smooth_sigma), bool(near_is_sharp), smooth_sigma > 0
    )


def _check_depth(depth, fn: str, shape=None) -> np.ndarray:
    d = np.asarray(checks.sigma_map(depth, fn, name="depth", shape=shape, nonnegative=True))
    if d.max() > 1.0 + 1e-6:
        raise ValueError(f"{fn}: depth must lie in [0, 1] (use pseudo_depth), max is {d.max():.4g}")
    return np.clip(d, 0.0, 1.0)


def save_depth_png(path: PathLike, depth) -> Path:
    """Writes a depth map in [0, 1] as a 16-bit grey PNG (0 -> 0, 1 -> 65535).

    Args:
      path: output file; parent folders are created.
      depth: float (H, W) in [0, 1], e.g. from :func:`pseudo_depth`.

    Returns:
      The path written.
    """
    return save_image(path, _check_depth(depth, "save_depth_png"), bits=16)


def point_cloud(image, depth, *, step: int = DepthParams.ply_step, z_scale: float | None = DepthParams.z_scale):
    """Per-pixel 3-D points and colours from an image and a depth map in [0, 1].

    Coordinates, in pixels: ``x = col - (W - 1) / 2`` (right), ``y = (H - 1) / 2 - row`` (up),
    ``z = -depth * z_scale`` (0 = near, more negative = farther, i.e. away from a viewer on the
    +z axis, MeshLab's default camera).

    Args:
      image: float (H, W, 3) RGB in [0, 1].
      depth: float (H, W) in [0, 1].
      step: keep every ``step``-th row and column (>= 1).
      z_scale: depth extent in pixels; default ``0.25 * max(H, W)``.

    Returns:
      (xyz float32 (N, 3), rgb uint8 (N, 3)) with N = ceil(H / step) * ceil(W / step),
      rows in row-major pixel order.
    """
    fn = "point_cloud"
    image = checks.image01(image, fn)
    depth = _check_depth(depth, fn, shape=image.shape[:2])
    step = checks.integer(step, "step", where=fn, lo=1)
    h, w = depth.shape
    if z_scale is None:
        z_scale = 0.25 * max(h, w)
    z_scale = checks.scalar(z_scale, "z_scale", where=fn, lo=0.0, lo_open=True)
    rows, cols = np.meshgrid(np.arange(0, h, step), np.arange(0, w, step), indexing="ij")
    xyz = np.stack(
        [cols - (w - 1) / 2.0, (h - 1) / 2.0 - rows, -depth[rows, cols] * z_scale], axis=-1
    ).reshape(-1, 3).astype(np.float32)
    rgb = np.round(np.asarray(image)[rows, cols] * 255.0).astype(np.uint8).reshape(-1, 3)
    return xyz, rgb


def save_point_cloud_ply(
    path: PathLike,
    image,
    depth,
    *,
    step: int = DepthParams.ply_step,
    z_scale: float | None = DepthParams.z_scale,
    binary: bool = DepthParams.ply_binary,
) -> Path:
    """Writes a coloured point cloud (one vertex per kept pixel) as a PLY file MeshLab opens.

    Vertices have ``float x, y, z`` and ``uchar red, green, blue``; see :func:`point_cloud`
    for the coordinate convention.

    Args:
      path: output file; parent folders are created.
      image: float (H, W, 3) RGB in [0, 1].
      depth: float (H, W) in [0, 1] (e.g. :func:`pseudo_depth`).
      step: keep every ``step``-th row and column.
      z_scale: depth extent in pixels; default ``0.25 * max(H, W)``.
      binary: True (default) for ``binary_little_endian 1.0``, False for ``ascii 1.0``.

    Returns:
      The path written.
    """
    xyz, rgb = point_cloud(image, depth, step=step, z_scale=z_scale)
    path = Path(path)
    fmt = "binary_little_endian" if binary else "ascii"
    header = (
        "ply\n"
        f"format {fmt} 1.0\n"
        "comment dhde pseudo-depth point cloud\n"
        f"element vertex {xyz.shape[0]}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "end_header\n"
    )
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header.encode("ascii"))
        if binary:
            rec = np.empty(
                xyz.shape[0],
                dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")],
            )
            rec["x"], rec["y"], rec["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
            rec["r"], rec["g"], rec["b"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
            f.write(rec.tobytes())
        else:
            lines = (
                f"{x:.6g} {y:.6g} {z:.6g} {r} {g} {b}\n"
                for (x, y, z), (r, g, b) in zip(xyz.tolist(), rgb.tolist())
            )
            f.write("".join(lines).encode("ascii"))
    return path
