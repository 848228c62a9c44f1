"""Gradient feature f_G (paper 3.3): histogram of gradient magnitudes in a patch.

Borders. The authors' code replicate-pads the grey image by the patch radius and then takes
forward differences of the *padded* image (backward difference on its last row/column). That
is not the same as taking the gradient of the unpadded image and cutting patches with clamp
indexing: in the padded image the difference across the original border is
``I[W-1] - I[W-1] = 0`` (so column W-1 and every padding column have gx = 0, and likewise gy
on the rows at and beyond the bottom border and above the top one, e.g. row -1 where
``I[0] - I[0] = 0``), whereas on the unpadded image column W-1 gets the backward difference
``I[W-1] - I[W-2]`` and clamp indexing copies column 0's full magnitude (with its non-zero
gx) into the left padding. The two views agree on every patch that lies inside the image and
does not touch its last row or column. (The same kind of difference exists for Sobel.)

``gradient_magnitude(gray, pad=1)`` reproduces the authors' view exactly: the operators are
3x3 (or smaller), so the magnitude of an image replicate-padded by ``p >= 1`` is constant
along the normal of the border from padding depth 1 outwards, i.e. the (H+2, W+2) result with
clamp indexing equals the result for any larger padding. Cut patches from it at ``coords + 1``
(:func:`gradient_patches` does exactly this). ``pad=0`` (the default) gives the plain
(H, W) map of the module contract.
"""

from __future__ import annotations

import math
import operator
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from dhde.features.normalize import log_l1_normalize
from dhde.filters.patches import extract_patches

__all__ = [
    "gradient_magnitude",
    "gradient_feature",
    "gradient_feature_at",
    "gradient_patches",
    "SOBEL_SCALE",
]

# Largest Sobel magnitude sqrt(gx^2 + gy^2) for a 3x3 neighbourhood with values in [0, 1]:
# the magnitude is convex in the 9 values, so its maximum is at a binary neighbourhood; the
# best one (e.g. [[0,0,1],[0,.,1],[0,1,1]]) gives (gx, gy) = (4, 2), i.e. sqrt(20) = 2 sqrt(5)
# (the looser bound 4 sqrt(2) is never reached). Dividing by it maps the range onto [0, 1].
SOBEL_SCALE = math.sqrt(20.0)


def _forward(g: jax.Array) -> tuple[jax.Array, jax.Array]:
    def diff(a, axis):
        n = a.shape[axis]
        if n < 2:
            return jnp.zeros_like(a)
        d = jnp.diff(a, axis=axis)
        last = jax.lax.slice_in_dim(d, n - 2, n - 1, axis=axis)  # backward diff at the end
        return jnp.concatenate([d, last], axis=axis)

    return diff(g, 1), diff(g, 0)


def _sobel(g: jax.Array) -> tuple[jax.Array, jax.Array]:
    h, w = g.shape
    p = jnp.pad(g, 1, mode="edge")

    def s(i, j):  # p shifted so that s(1, 1) == g
        return p[i : i + h, j : j + w]

    gx = (s(0, 2) + 2 * s(1, 2) + s(2, 2)) - (s(0, 0) + 2 * s(1, 0) + s(2, 0))
    gy = (s(2, 0) + 2 * s(2, 1) + s(2, 2)) - (s(0, 0) + 2 * s(0, 1) + s(0, 2))
    return gx, gy


@partial(jax.jit, static_argnames=("method", "pad"))
def _gradient_magnitude(gray: jax.Array, method: str, pad: int) -> jax.Array:
    if pad:
        gray = jnp.pad(gray, pad, mode="edge")
    if method == "forward":
        gx, gy = _forward(gray)
        scale = math.sqrt(2.0)
    else:
        gx, gy = _sobel(gray)
        scale = SOBEL_SCALE
    return jnp.sqrt(gx * gx + gy * gy) / jnp.float32(scale)


# x * 0 is 0 for finite x and NaN for NaN/inf, so the sum is finite iff every value is; on CPU
# this float reduction is about twice as fast as isfinite(x).all()
_all_finite = jax.jit(lambda x: jnp.isfinite(jnp.sum(x * 0)))


def _check_finite(x: jax.Array, name: str) -> None:
    """Raises ValueError on NaN/inf in a concrete array (skipped while tracing)."""
    if not isinstance(x, jax.core.Tracer) and not bool(_all_finite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")


def gradient_magnitude(gray, method: str = "forward", pad: int = 0) -> jax.Array:
    """Normalised gradient magnitude of a grey image.

    Args:
      gray: (H, W) float array, grey values in [0, 1].
      method: ``"forward"`` (the authors' code, default): gx[i, j] = I[i, j+1] - I[i, j]
        (last column: the backward difference I[i, W-1] - I[i, W-2]), gy likewise along rows,
        magnitude ``sqrt(gx^2 + gy^2) / sqrt(2)``. ``"sobel"`` (the paper): 3x3 Sobel with
        replicate borders, magnitude ``sqrt(gx^2 + gy^2) / SOBEL_SCALE`` with
        ``SOBEL_SCALE = sqrt(20)``, the largest Sobel magnitude reachable with values in
        [0, 1] (not the loose bound 4 sqrt(2)).
      pad: replicate-pad the image by this many pixels first (static, >= 0); ``pad=1`` gives the
        authors' border handling exactly (see the module docstring): cut patches at
        ``coords + 1``.

    Returns:
      (H + 2 pad, W + 2 pad) float32; in [0, 1] when ``gray`` is in [0, 1] (both maxima are
      reached). Side of length 1: its difference is 0.
    """
    g = jnp.asarray(gray)
    if g.ndim != 2 or g.shape[0] < 1 or g.shape[1] < 1:
        raise ValueError(f"gray must be a non-empty 2-D (H, W) array, got shape {g.shape}")
    if not jnp.issubdtype(g.dtype, jnp.floating):
        raise TypeError(f"gray must be floating point, got {g.dtype}")
    if method not in ("forward", "sobel"):
        raise ValueError(f"method must be 'forward' or 'sobel', got {method!r}")
    pad = operator.index(pad)
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    _check_finite(g, "gray")
    return _gradient_magnitude(g.astype(jnp.float32), method, pad)


def gradient_patches(gray, coords, size: int, method: str = "forward") -> jax.Array:
    """Magnitude patches with the authors' border handling (see the module docstring).

    Equivalent to ``extract_patches(gradient_magnitude(gray, method, pad=1), coords + 1, size)``.
    Compute the magnitude once per image yourself when cutting several sizes.

    Args:
      gray: (H, W) float grey image in [0, 1].
      coords: (N, 2) integer [row, col] patch centres in ``gray``.
      size: odd patch side.

    Returns:
      (N, size, size) float32 magnitudes in [0, 1].
    """
    mag = gradient_magnitude(gray, method, pad=1)
    coords = jnp.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must have shape (N, 2), got {coords.shape}")
    if not jnp.issubdtype(coords.dtype, jnp.integer):
        raise TypeError(f"coords must have an integer dtype, got {coords.dtype}")
    return extract_patches(mag, coords + 1, size)


def _hist_edges(n_bins: int) -> np.ndarray:
    """Inner bin edges float32(k / n), k = 1..n-1, correctly rounded (values compare in float32)."""
    return np.arange(1, n_bins, dtype=np.float32) / np.float32(n_bins)


def _counts_to_feature(above: jax.Array, total: int) -> jax.Array:
    # above[:, k] = number of values > edge k+1 (k = 0..n-2); bin k = above[k-1] - above[k]
    # with the first bin open below (above[-1] := total) and the last open above.
    n = above.shape[0]
    full = jnp.concatenate(
        [jnp.full((n, 1), total, jnp.int32), above, jnp.zeros((n, 1), jnp.int32)], axis=1
    )
    return log_l1_normalize((full[:, :-1] - full[:, 1:]).astype(jnp.float32))


def _bin_index(x: jax.Array, n_bins: int) -> jax.Array:
    """Bin of each value, int32 in 0..n-1: the number of edges float32(k/n) below it."""
    edges = _hist_edges(n_bins)
    # floor(x * n) is within one of the answer; the two comparisons make it exact.
    i = jnp.clip(jnp.floor(x * jnp.float32(n_bins)), 0, n_bins - 1).astype(jnp.int32)
    table = jnp.asarray(np.concatenate([[-np.inf], edges, [np.inf]]).astype(np.float32))
    i = i - (x <= table[i]).astype(jnp.int32)  # value at or below edge i: lower bin
    i = i + (x > table[i + 1]).astype(jnp.int32)  # value above edge i+1: upper bin
    return jnp.clip(i, 0, n_bins - 1)


@partial(jax.jit, static_argnames=("n_bins",))
def _gradient_feature(patches: jax.Array, n_bins: int) -> jax.Array:
    n, m = patches.shape[0], patches.shape[1] * patches.shape[2]
    idx = _bin_index(patches.reshape(n, m), n_bins)
    # one scatter-add of all N*w*w values into the (N, n_bins) counts: on CPU ~10x faster
    # than n_bins compare-and-sum passes over the patches
    flat = (idx + n_bins * jnp.arange(n, dtype=jnp.int32)[:, None]).reshape(-1)
    counts = jnp.zeros(n * n_bins, jnp.int32).at[flat].add(1, mode="promise_in_bounds")
    return log_l1_normalize(counts.reshape(n, n_bins).astype(jnp.float32))


def _box_sum(a: jax.Array, size: int, axis: int) -> jax.Array:
    """Sums of ``size`` consecutive entries along ``axis`` ("valid" windows), by doubling.

    About 2 log2(size) vectorised slice-adds instead of ``size`` (``lax.reduce_window`` and
    ``cumsum`` were 2-5x slower on CPU).
    """
    out_len = a.shape[axis] - size + 1
    res, off, k, p = None, 0, 1, a  # p holds sums of windows of length k
    while k <= size:
        if size & k:
            t = jax.lax.slice_in_dim(p, off, off + out_len, axis=axis)
            res = t if res is None else res + t
            off += k
        if 2 * k <= size:
            n = p.shape[axis] - k
            p = jax.lax.slice_in_dim(p, 0, n, axis=axis) + jax.lax.slice_in_dim(
                p, k, k + n, axis=axis
            )
        k *= 2
    return res


@partial(jax.jit, static_argnames=("size", "n_bins"))
def _gradient_feature_at(mag: jax.Array, coords: jax.Array, size: int, n_bins: int) -> jax.Array:
    h, w = mag.shape
    r = size // 2
    edges = jnp.asarray(_hist_edges(n_bins))
    # Per pixel and inner edge k: is the value above edge k? Window sums of these planes are
    # the "above" counts of every patch. uint8 holds a column of `size` ones, int16 a patch.
    small = size <= 255
    above = (mag[:, :, None] > edges).astype(jnp.uint8 if small else jnp.int32)  # (H, W, n-1)
    # Clamp indexing: a centre beyond r pixels outside the image gives the same patch as one
    # r pixels outside, so clip the centres to [-r, H-1+r] and replicate-pad by 2r.
    above = jnp.pad(above, ((2 * r, 2 * r), (2 * r, 2 * r), (0, 0)), mode="edge")
    rows = _box_sum(above, size, 0).astype(jnp.int16 if size * size <= 32767 else jnp.int32)
    win = _box_sum(rows, size, 1)  # (H + 2r, W + 2r, n-1), window at padded centre + r
    cr = jnp.clip(coords[:, 0].astype(jnp.int32), -r, h - 1 + r) + r
    cc = jnp.clip(coords[:, 1].astype(jnp.int32), -r, w - 1 + r) + r
    counts = win.at[cr, cc].get(mode="promise_in_bounds").astype(jnp.int32)  # (N, n-1)
    return _counts_to_feature(counts, size * size)


def gradient_feature(magnitude_patches, n_bins: int) -> jax.Array:
    """The gradient feature f_G: a histogram of the magnitudes of each patch (paper Eq. 2).

    MATLAB ``hist(values, centres)`` with centres (k - 0.5)/n, k = 1..n, i.e. equal-width bins
    on [0, 1] whose intervals are closed on the right: bin k (0-based) holds the values v with
    ``k/n < v <= (k+1)/n``; bin 0 also takes everything <= 1/n (including values < 0) and bin
    n-1 everything > (n-1)/n (including values > 1). A value exactly on an inner edge goes to
    the LOWER bin, as in MATLAB (whose ``hist`` shifts the ``histc`` edges by eps "so the
    interval is ( ] instead of [ )"). Edges are float32(k/n), compared in float32. The counts
    are then mapped by ``log_l1_normalize``.

    Args:
      magnitude_patches: (N, w, w) float array of gradient magnitudes in [0, 1], e.g. patches
        of :func:`gradient_magnitude`.
      n_bins: number of bins >= 1 (25 for LARGE, 13 for SMALL patches); static.

    Returns:
      (N, n_bins) float32, non-negative, each row sums to 1. One compilation per (N, w, n_bins).
    """
    x = jnp.asarray(magnitude_patches)
    if x.ndim != 3 or x.shape[1] != x.shape[2] or x.shape[1] < 1:
        raise ValueError(f"magnitude_patches must have shape (N, w, w), got {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"magnitude_patches must be floating point, got {x.dtype}")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    _check_finite(x, "magnitude_patches")
    return _gradient_feature(x.astype(jnp.float32), int(n_bins))


def gradient_feature_at(magnitude, coords, size: int, n_bins: int) -> jax.Array:
    """The gradient feature of the ``size`` x ``size`` patches of a magnitude image, fast.

    Exactly ``gradient_feature(extract_patches(magnitude, coords, size), n_bins)`` (same bins,
    same clamp indexing, integer counts), but computed from window sums of per-pixel
    "above edge k" planes of the whole image, so its cost hardly depends on N (the histogram
    of N separate patches needs a scatter of N * size^2 values).

    Args:
      magnitude: (H, W) float magnitudes in [0, 1], e.g. ``gradient_magnitude(gray)``; for the
        authors' border handling use ``gradient_magnitude(gray, pad=1)`` and ``coords + 1``.
      coords: (N, 2) integer [row, col] patch centres (clamp indexing outside the image).
      size: odd patch side (27 or 15); static.
      n_bins: number of bins >= 1; static.

    Returns:
      (N, n_bins) float32, rows sum to 1. One compilation per (H, W, N, size, n_bins).
    """
    m = jnp.asarray(magnitude)
    if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise ValueError(f"magnitude must be a non-empty 2-D (H, W) array, got shape {m.shape}")
    if not jnp.issubdtype(m.dtype, jnp.floating):
        raise TypeError(f"magnitude must be floating point, got {m.dtype}")
    coords = jnp.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must have shape (N, 2), got {coords.shape}")
    if not jnp.issubdtype(coords.dtype, jnp.integer):
        raise TypeError(f"coords must have an integer dtype, got {coords.dtype}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"size must be a positive odd integer, got {size!r}")
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size!r}")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    _check_finite(m, "magnitude")
    return _gradient_feature_at(m.astype(jnp.float32), coords, int(size), int(n_bins))
