"""Edge coordinates and fixed-size patches around them, with static shapes.

Every edge pixel becomes one patch centred on it (paper 3.1): weak edges (scale 1) get a LARGE
27x27 patch (radius 13), strong edges (scale 2) a SMALL 15x15 patch (radius 7). Image borders
are handled by replicate padding, i.e. clamp indexing.

To keep XLA compilations few, the number of coordinates is rounded up to a bucketed
*capacity* (:func:`capacity_for`); :func:`edge_coordinates` returns that many coordinates plus
a validity mask, so one compiled function serves every image of a given size and every edge
count in the same bucket.
"""

from __future__ import annotations

import operator
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

LARGE = 27
SMALL = 15
LARGE_RADIUS = LARGE // 2  # 13
SMALL_RADIUS = SMALL // 2  # 7
MIN_CAPACITY = 256
#: Side of a *context patch*: the large patch plus the one-pixel ring its gradient needs
#: (see dhde.features.pipeline); the training set stores 29x29 context patches.
CONTEXT = LARGE + 2

__all__ = [
    "LARGE",
    "SMALL",
    "LARGE_RADIUS",
    "SMALL_RADIUS",
    "MIN_CAPACITY",
    "CONTEXT",
    "EdgeCoordinates",
    "capacity_for",
    "edge_coordinates",
    "extract_patches",
    "pad_small_to_large",
]


def _as_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got a bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def capacity_for(count: int) -> int:
    """The bucketed capacity (static array length) for ``count`` items.

    Rule: the smallest value of the form ``m * 2**k`` with ``m`` in {4, 5, 6, 7} and ``k >= 0``
    that is ``>= max(count, MIN_CAPACITY)`` (``MIN_CAPACITY = 256``). Consecutive buckets are a
    quarter octave apart (256, 320, 384, 448, 512, 640, ...), so at most 25 % of a capacity is
    padding for counts above 256, and counts from 0 to 10**6 share 49 buckets.

    Args:
      count: a non-negative Python integer (e.g. the number of edge pixels of one scale).

    Returns:
      int capacity, ``>= count``, monotone non-decreasing in ``count``.
    """
    count = _as_int(count, "count")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    c = max(count, MIN_CAPACITY)
    k = c.bit_length() - 3  # 4 * 2**k <= c < 8 * 2**k  (c >= 256, so k >= 6)
    m = -(-c // (1 << k))  # ceil(c / 2**k), in 4..8
    return m << k  # m == 8 gives 4 * 2**(k+1), still of the right form


class EdgeCoordinates(NamedTuple):
    """Output of :func:`edge_coordinates`.

    coords: (C, 2) int32 [row, col] in row-major order of the image; entries past ``count``
      are (0, 0).
    valid: (C,) bool, ``index < count``.
    count: () int32, the true number of pixels of the scale; ``count > C`` means overflow
      (only the first C pixels in row-major order were kept).
    """

    coords: jax.Array
    valid: jax.Array
    count: jax.Array


@partial(jax.jit, static_argnames=("capacity",))
def _edge_coordinates(scales: jax.Array, scale: jax.Array, capacity: int) -> EdgeCoordinates:
    mask = scales == scale
    rows, cols = jnp.nonzero(mask, size=capacity, fill_value=0)
    coords = jnp.stack([rows, cols], axis=-1).astype(jnp.int32)
    count = jnp.sum(mask, dtype=jnp.int32)
    valid = jnp.arange(capacity, dtype=jnp.int32) < count
    return EdgeCoordinates(coords, valid, count)


def edge_coordinates(scales, scale: int, capacity: int) -> EdgeCoordinates:
    """Coordinates of the pixels where ``scales == scale``, padded to a static capacity.

    Args:
      scales: (H, W) integer (or bool) array, e.g. the scale map of ``dhde.filters.edges.scale_map``
        (0 = no patch, 1 = LARGE, 2 = SMALL).
      scale: the scale value to select (Python int; traced, so all scales share a compilation).
      capacity: static output length C >= 1, normally ``capacity_for(count)``.

    Returns:
      :class:`EdgeCoordinates` ``(coords (C, 2) int32 [row, col], valid (C,) bool,
      count () int32)``. Pixels are listed in row-major order; if ``count > C`` only the first
      C are returned (check ``count`` to detect this). One compilation per (H, W, C).
    """
    scales = jnp.asarray(scales)
    if scales.ndim != 2:
        raise ValueError(f"scales must be a 2-D (H, W) array, got shape {scales.shape}")
    if not (jnp.issubdtype(scales.dtype, jnp.integer) or scales.dtype == jnp.bool_):
        raise TypeError(f"scales must have an integer dtype, got {scales.dtype}")
    scale = _as_int(scale, "scale")
    capacity = _as_int(capacity, "capacity")
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    return _edge_coordinates(scales, jnp.asarray(scale, scales.dtype), capacity)


@partial(jax.jit, static_argnames=("size",))
def _extract_patches(image: jax.Array, coords: jax.Array, size: int) -> jax.Array:
    # Clamp indexing: the patch around (r, c) reads image[clip(r + i), clip(c + j)],
    # |i|, |j| <= size // 2. This is the same as replicate-padding the image without limit and
    # cutting the centred patch. (Measured on CPU for 15000 27x27 patches: this gather, pad +
    # vmapped dynamic_slice, a row-slab gather and a flat take all take 14-18 ms.)
    h, w = image.shape[:2]
    r = size // 2
    off = jnp.arange(-r, r + 1, dtype=jnp.int32)
    # pre-clip the centres (no effect on the result) so that r + off cannot overflow int32
    cr = jnp.clip(coords[:, 0].astype(jnp.int32), -size, h - 1 + size)
    cc = jnp.clip(coords[:, 1].astype(jnp.int32), -size, w - 1 + size)
    rows = jnp.clip(cr[:, None] + off, 0, h - 1)
    cols = jnp.clip(cc[:, None] + off, 0, w - 1)
    return image.at[rows[:, :, None], cols[:, None, :]].get(mode="promise_in_bounds")


def extract_patches(image, coords, size: int) -> jax.Array:
    """Square patches centred on the given pixels, with replicate (clamp) borders.

    Args:
      image: (H, W) or (H, W, C) array of any numeric dtype (kept), e.g. float32 in [0, 1].
      coords: (N, 2) integer array of [row, col] centres (N may be 0). Centres outside the
        image are allowed: indexing is clamped, as if the image were replicate-padded without
        limit.
      size: odd patch side (``LARGE`` = 27 or ``SMALL`` = 15); static.

    Returns:
      (N, size, size) or (N, size, size, C) array of ``image``'s dtype;
      ``out[n, i, j] = image[clip(row_n + i - size//2), clip(col_n + j - size//2)]``.
      One compilation per (image shape, dtype, N, size).
    """
    image = jnp.asarray(image)
    coords = jnp.asarray(coords)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be non-empty, got shape {image.shape}")
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must have shape (N, 2), got {coords.shape}")
    if not jnp.issubdtype(coords.dtype, jnp.integer):
        raise TypeError(f"coords must have an integer dtype, got {coords.dtype}")
    size = _as_int(size, "size")
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size}")
    return _extract_patches(image, coords, size)


@partial(jax.jit, static_argnames=("mode",))
def _pad_small_to_large(p: jax.Array, mode: str) -> jax.Array:
    d = (LARGE - SMALL) // 2
    widths = [(0, 0), (d, d), (d, d)] + [(0, 0)] * (p.ndim - 3)
    if mode == "replicate":
        return jnp.pad(p, widths, mode="edge")
    return jnp.pad(p, widths, mode="constant")


def pad_small_to_large(p, mode: str = "replicate") -> jax.Array:
    """Pads SMALL (15x15) patches to LARGE (27x27), 6 pixels on every side.

    Args:
      p: (N, 15, 15) or (N, 15, 15, C) array, any dtype (kept).
      mode: ``"replicate"`` (the authors' code, default: the patch border is repeated, which
        equals cutting a 27x27 patch from the image after replacing everything outside the
        15x15 window by its nearest window pixel) or ``"zero"`` (the paper, section 3.5).

    Returns:
      (N, 27, 27) or (N, 27, 27, C) array of ``p``'s dtype, the input in the centre.
    """
    p = jnp.asarray(p)
    if p.ndim not in (3, 4) or p.shape[1:3] != (SMALL, SMALL):
        raise ValueError(
            f"p must have shape (N, {SMALL}, {SMALL}) or (N, {SMALL}, {SMALL}, C), got {p.shape}"
        )
    if mode not in ("replicate", "zero"):
        raise ValueError(f"mode must be 'replicate' or 'zero', got {mode!r}")
    return _pad_small_to_large(p, mode)
