"""The deep feature of many patches of one image, with the first layer's work shared.

At inference the CNN (:mod:`dhde.model.cnn`) runs on every edge pixel's patch, and most of
its time goes into the first layer (conv 3x3/25 + ReLU + ceil-mode 3x3 max-pool on 27x27
patches, 625 positions each). Neighbouring edge pixels' patches overlap almost completely, and
small patches repeat their border rows, so that work is mostly repeated. Two exact rewrites
(same arithmetic per output, so the same numbers up to float32 rounding of the matmul):

* **Large (27x27) patches**, :func:`pool1_maps` + :func:`large_pool1_at`: a 27x27 patch is a
  crop of the image replicate-padded by 13, so its conv1 output at (a, b) is the dense conv1
  map ``C`` of the padded image at (row + a, col + b). Pool windows 0..7 cover three conv1
  rows/columns and are read from ``M = 3x3 max filter of C``; window 8 covers only conv1
  row/column 24 (ceil mode) and is read from ``C``. The dense maps are computed once per image
  in bands of rows (cache-sized im2col blocks); each patch then gathers its 9x9x25 pooled
  values instead of computing 625 conv1 outputs.
* **Small (15x15) patches** padded to 27x27 by replicating their border (the authors' code;
  :func:`small_pool1`): the padded patch repeats its first and last row six times, so conv1
  rows 0-4 are identical, and so are rows 20-24. Conv1 on the 15x15 patch padded by *two*
  (19x19 -> 17x17 outputs) yields every distinct row/column once; pool windows of the 27x27
  layout are maxima over fixed sets of those 17 (0: {0}, 1: {0, 1}, 2-6: {2-4} .. {14-16},
  7 and 8: {16}). That is 289 instead of 625 conv1 positions.

The layers after the first pool are unchanged (``deep.after_first_layer``). Tests check both
against ``DeepFeature`` on the explicitly cut (and padded) patches, including patches at the
image border.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from dhde.model import cnn as deep
from dhde.features.blocks import map_in_blocks

#: Patch geometry: large side, its radius, conv1 output side, pooled side.
_SIDE, _RADIUS, _CONV, _POOLED = 27, 13, 25, 9
#: Rows of the padded image per band when computing the dense maps.
BAND = 8
#: Patches per block in the per-patch layers (as ``DeepFeature.chunk``).
CHUNK = 128


class Pool1Maps(NamedTuple):
    """Dense first-layer maps of an (H, W) image (replicate-padded by 13).

    conv: (H + 24, W + 24, 25) float32, conv1 + ReLU; the patch centred on (r, c) has its conv1
      output (a, b) at ``conv[r + a, c + b]``.
    max3: (H + 22, W + 22, 25) float32, the 3x3 maximum of ``conv``: ``max3[y, x] =
      max(conv[y:y + 3, x:x + 3])``.
    """

    conv: jax.Array
    max3: jax.Array


def _band_maps(p: dict, padded: jax.Array, y0: jax.Array) -> tuple[jax.Array, jax.Array]:
    """conv rows y0 .. y0 + BAND + 1 and max3 rows y0 .. y0 + BAND - 1 of the padded image."""
    rows = lax.dynamic_slice_in_dim(padded, y0, BAND + 4, 0)  # BAND + 2 conv rows need + 2
    c = deep.conv_as_matmul(rows[None], p["conv1"]["kernel"], p["conv1"]["bias"])[0]
    mx = jnp.maximum(jnp.maximum(c[:, :-2], c[:, 1:-1]), c[:, 2:])  # 3 columns
    mx = jnp.maximum(jnp.maximum(mx[:-2], mx[1:-1]), mx[2:])  # 3 rows
    return c[:BAND], mx


@jax.jit
def _pool1_maps(p: dict, image255: jax.Array) -> Pool1Maps:
    h, w = image255.shape[:2]
    hc = h + 2 * _RADIUS - 2  # conv rows (= cols + 0 for the square padding)
    bands = -(-hc // BAND)
    # replicate padding by 13 (the patch crop); extra zero rows so the last band is full
    padded = jnp.pad(image255, ((_RADIUS, _RADIUS), (_RADIUS, _RADIUS), (0, 0)), mode="edge")
    padded = jnp.pad(padded, ((0, bands * BAND + 4 - padded.shape[0]), (0, 0), (0, 0)))
    c, mx = lax.map(lambda y0: _band_maps(p, padded, y0), jnp.arange(bands) * BAND)
    wc = w + 2 * _RADIUS - 2
    conv = c.reshape(bands * BAND, wc, -1)[:hc]
    max3 = mx.reshape(bands * BAND, wc - 2, -1)[: hc - 2]
    return Pool1Maps(conv, max3)


def pool1_maps(params: dict, image255) -> Pool1Maps:
    """Dense first-layer maps for :func:`large_pool1_at`.

    Args:
      params: the deep feature's parameters (``model.params["deep"]``).
      image255: (H, W, 3) float32 RGB in 0..255, rounded to integers as the CNN input is (the
        pipeline passes ``round(255 * image)``).

    Returns:
      :class:`Pool1Maps`; memory ``~2 (H + 24) (W + 24) 100`` bytes (67 MB at 640x480).
    """
    x = jnp.asarray(image255)
    if x.ndim != 3 or x.shape[-1] != 3 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"image255 must be (H, W, 3), got shape {x.shape}")
    return _pool1_maps(params, x.astype(jnp.float32))


def _check_coords(coords) -> None:
    if coords.ndim != 2 or coords.shape[1] != 2 or not jnp.issubdtype(coords.dtype, jnp.integer):
        raise ValueError(f"coords must be an (N, 2) integer array of [row, col], got {coords.shape} {coords.dtype}")


def _check_small(small255) -> None:
    if small255.ndim != 4 or small255.shape[1:] != (15, 15, 3):
        raise ValueError(f"expected (N, 15, 15, 3) small patches, got shape {small255.shape}")


def large_pool1_at(maps: Pool1Maps, coords: jax.Array) -> jax.Array:
    """Pooled first-layer output (N, 9, 9, 25) of the 27x27 patches centred on ``coords``.

    Equals ``deep.first_layer(params, patch)`` for the replicate-cut patch (``extract_patches(
    round(255 * image), coords, 27)``). coords: (N, 2) integer [row, col] inside the image
    (not checked against the image size: indices outside it are clamped by the gather).
    """
    _check_coords(coords)
    r = coords[:, 0][:, None, None]
    c = coords[:, 1][:, None, None]
    k3 = 3 * jnp.arange(_POOLED - 1)
    main = maps.max3[r + k3[None, :, None], c + k3[None, None, :]]  # (N, 8, 8, 25)
    line = jnp.arange(_CONV - 1)  # conv rows / cols 0..23 of the last window's row / column
    last = _CONV - 1
    bottom = maps.conv[r[:, :, 0] + last, c[:, :, 0] + line[None, :]]  # (N, 24, 25)
    right = maps.conv[r[:, :, 0] + line[None, :], c[:, :, 0] + last]
    n = coords.shape[0]
    bottom = jnp.max(bottom.reshape(n, _POOLED - 1, 3, -1), axis=2)
    right = jnp.max(right.reshape(n, _POOLED - 1, 3, -1), axis=2)
    corner = maps.conv[coords[:, 0] + last, coords[:, 1] + last]  # (N, 25)
    top = jnp.concatenate([main, right[:, :, None]], axis=2)  # (N, 8, 9, 25)
    low = jnp.concatenate([bottom, corner[:, None]], axis=1)  # (N, 9, 25)
    return jnp.concatenate([top, low[:, None]], axis=1)


def _pool_small_axis(u: jax.Array, axis: int) -> jax.Array:
    """17 distinct conv1 rows (or columns) -> the 9 ceil-mode pool windows of the 27 layout."""
    take = partial(lax.slice_in_dim, u, axis=axis)
    first, second, last = take(0, 1), take(1, 2), take(16, 17)
    mid = take(2, 17)
    shape = mid.shape[:axis] + (5, 3) + mid.shape[axis + 1 :]
    mid = jnp.max(mid.reshape(shape), axis=axis + 1)
    return jnp.concatenate([first, jnp.maximum(first, second), mid, last, last], axis=axis)


def _small_pool1(p: dict, small255: jax.Array) -> jax.Array:
    x = jnp.pad(small255, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")  # (N, 19, 19, 3)
    u = deep.conv_as_matmul(x, p["conv1"]["kernel"], p["conv1"]["bias"])  # (N, 17, 17, 25)
    return _pool_small_axis(_pool_small_axis(u, 1), 2)


def small_pool1(params: dict, small255: jax.Array) -> jax.Array:
    """Pooled first-layer output (N, 9, 9, 25) of 15x15 patches replicate-padded to 27x27.

    small255: (N, 15, 15, 3) float32 RGB in 0..255. Equals ``deep.first_layer(params,
    pad_small_to_large(small255, "replicate"))`` with 289 instead of 625 conv1 positions.
    """
    _check_small(small255)
    return _small_pool1(params, small255)


def _features_small(p: dict, small255: jax.Array) -> jax.Array:
    return deep.after_first_layer(p, _small_pool1(p, small255))


def deep_feature_small(params: dict, small255: jax.Array, chunk: int = CHUNK) -> jax.Array:
    """Deep feature (N, 25) of 15x15 patches, replicate-padded to 27x27 as in the authors' code.

    Args:
      params: ``model.params["deep"]``.
      small255: (N, 15, 15, 3) float32 RGB in 0..255.
      chunk: patches per block (static; only changes speed).

    Returns:
      (N, 25) float32 >= 0, ``DeepFeature()`` of the replicate-padded patches up to float32
      rounding.
    """
    _check_small(small255)
    return map_in_blocks(partial(_features_small, params), small255, chunk)


def deep_feature_large_at(params: dict, maps: Pool1Maps, coords: jax.Array, chunk: int = CHUNK) -> jax.Array:
    """Deep feature (N, 25) of the 27x27 patches centred on ``coords`` from shared maps.

    Args:
      params: ``model.params["deep"]``.
      maps: :func:`pool1_maps` of the rounded 0..255 image.
      coords: (N, 2) int32 [row, col] pixel coordinates inside the image.
      chunk: patches per block (static).

    Returns:
      (N, 25) float32, ``DeepFeature()`` of the replicate-cut patches up to float32 rounding.
    """
    _check_coords(coords)
    return map_in_blocks(lambda c: deep.after_first_layer(params, large_pool1_at(maps, c)), coords, chunk)
