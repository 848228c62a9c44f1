"""Canny edges with MATLAB ``edge(I, 'canny', [low high], sigma)`` semantics, and the two-scale
edge map of the paper (section 3.1).

The pipeline follows MATLAB's ``edge.m`` (recent releases):

1. ``smoothGradient``: a Gaussian (extent ceil(4 sigma)) and its normalised derivative,
   applied separably by *convolution* with replicate borders.
2. ``magGrad = hypot(GX, GY) / max`` (no division when the max is 0: such an image has no edges).
3. ``cannyFindLocalMaxima``: non-maximum suppression in 4 direction sectors with linear
   interpolation between the two neighbours along the gradient; border pixels are never edges.
   Candidates are local maxima with ``magGrad > low``.
4. Hysteresis: 8-connected candidate components that hold a pixel with ``magGrad > high``
   (MATLAB ``bwselect(E, c, r, 8)``). Here computed exactly by connected-component labelling
   with min-label propagation, root hooking and pointer jumping inside a ``lax.while_loop``.

Thresholds are traced (new values do not recompile); ``sigma`` is static.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dhde import checks
from dhde.filters.gaussian import convolve1d_replicate

#: Canny [low, high] per scale at estimation time (scale 1 = weak edges, scale 2 = strong edges).
ESTIMATION_THRESHOLDS = ((0.117, 0.176), (0.234, 0.351))
#: The thresholds used when building training data: exactly twice the estimation ones.
TRAINING_THRESHOLDS = ((0.234, 0.351), (0.468, 0.702))
#: MATLAB's default Canny sigma.
DEFAULT_SIGMA = math.sqrt(2.0)
#: Contrast floor of the estimator: an image whose largest smoothed gradient magnitude
#: ``hypot(gx, gy)`` (intensity units per pixel, value channel in [0, 1], Canny's sigma sqrt 2)
#: is below this has no edges. Canny's thresholds are fractions of the image's own maximum, so
#: without a floor the noise of a flat image becomes "edges". Measured maxima: flat grey with
#: +-1/255 noise 0.004-0.007 (64x80 to 2000x3000), Gaussian noise of std 1 / 2 grey levels up
#: to 0.007 / 0.016; photographs 0.13-0.98 (scikit-image's set), 0.033-0.25 darkened to 0.25x.
#: 0.02 is a step of about 5 grey levels.
CONTRAST_FLOOR = 0.02
#: Pointer-jumping steps per hysteresis iteration.
_JUMPS = 2


def derivative_of_gaussian_kernels(sigma: float = DEFAULT_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's ``smoothGradient`` kernels, float64, both of length 2 * ceil(4 sigma) + 1.

    Returns:
      (gauss, deriv): ``gauss`` sums to 1; ``deriv`` = MATLAB ``gradient(gauss)`` (central
      differences, one-sided at both ends) with positive taps scaled to sum 1 and negative taps
      to sum -1. ``deriv`` is positive on the left, i.e. meant for *convolution*.
    """
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
    ext = int(math.ceil(4.0 * sigma))
    x = np.arange(-ext, ext + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    g = g / g.sum()
    d = np.empty_like(g)
    d[1:-1] = (g[2:] - g[:-2]) / 2.0
    d[0] = g[1] - g[0]
    d[-1] = g[-1] - g[-2]
    pos, neg = d > 0, d < 0
    d[pos] /= d[pos].sum()
    d[neg] /= abs(d[neg].sum())
    return g, d


# ----------------------------------------------------------------------------- private, jitted


def _smooth_gradient_impl(gray: jax.Array, sigma: float) -> tuple[jax.Array, jax.Array]:
    g, d = derivative_of_gaussian_kernels(sigma)
    g = jnp.asarray(g, jnp.float32)
    d_corr = jnp.asarray(d[::-1].copy(), jnp.float32)  # convolution == correlation with flip
    # The kernels are shift-invariant in exact arithmetic (deriv sums to 0); removing an offset
    # makes a constant image exactly zero, so float32 rounding cannot create fake gradients that
    # the normalisation by the maximum would blow up.
    gray = gray - gray[0, 0]
    gx = convolve1d_replicate(convolve1d_replicate(gray, g, axis=0), d_corr, axis=1)
    gy = convolve1d_replicate(convolve1d_replicate(gray, g, axis=1), d_corr, axis=0)
    return gx, gy


def _normalised_magnitude(gx: jax.Array, gy: jax.Array) -> jax.Array:
    mag = jnp.hypot(gx, gy)
    mmax = jnp.max(mag)
    return jnp.where(mmax > 0, mag / jnp.where(mmax > 0, mmax, 1.0), mag)


def _local_maxima(ix: jax.Array, iy: jax.Array, mag: jax.Array) -> jax.Array:
    """MATLAB ``cannyFindLocalMaxima`` for all 4 directions, OR-ed; (H, W) bool."""
    h, w = mag.shape
    mp = jnp.pad(mag, 1)

    def nb(di: int, dj: int) -> jax.Array:  # mag(i + di, j + dj)
        return mp[1 + di : 1 + di + h, 1 + dj : 1 + dj + w]

    def ratio(num, den):
        return jnp.abs(num / jnp.where(den == 0, 1.0, den))

    dyx, dxy = ratio(iy, ix), ratio(ix, iy)
    # (sector mask, d, (first neighbour, diagonal), (opposite neighbour, diagonal))
    sectors = (
        ((iy <= 0) & (ix > -iy)) | ((iy >= 0) & (ix < -iy)),
        ((ix > 0) & (-iy >= ix)) | ((ix < 0) & (-iy <= ix)),
        ((ix <= 0) & (ix > iy)) | ((ix >= 0) & (ix < iy)),
        ((iy < 0) & (ix <= iy)) | ((iy > 0) & (ix >= iy)),
    )
    ds = (dyx, dxy, dxy, dyx)
    offsets = (
        (((0, 1), (-1, 1)), ((0, -1), (1, -1))),
        (((-1, 0), (-1, 1)), ((1, 0), (1, -1))),
        (((-1, 0), (-1, -1)), ((1, 0), (1, 1))),
        (((0, -1), (-1, -1)), ((0, 1), (1, 1))),
    )
    out = jnp.zeros((h, w), bool)
    for sector, d, ((a1, b1), (a2, b2)) in zip(sectors, ds, offsets):
        m1 = nb(*a1) * (1 - d) + nb(*b1) * d
        m2 = nb(*a2) * (1 - d) + nb(*b2) * d
        out = out | (sector & (mag >= m1) & (mag >= m2))
    interior = jnp.zeros((h, w), bool).at[1:-1, 1:-1].set(True)
    return out & interior


def _hysteresis_impl(cand: jax.Array, strong: jax.Array) -> jax.Array:
    """Exact 8-connected hysteresis by connected-component labelling.

    Labels are flat pixel indices; every label points at a pixel of the same component with a
    smaller or equal index. Each iteration takes the 3x3 neighbour minimum, hooks the current
    label's target onto it (scatter-min) and pointer-jumps; it stops when nothing changes, at
    which point labels are constant on each component.
    """
    h, w = cand.shape
    n = h * w
    big = jnp.int32(n)  # label of non-candidates, out of range for scatters/gathers
    cand = cand.astype(bool)
    lab0 = jnp.where(cand, jnp.arange(n, dtype=jnp.int32).reshape(h, w), big).reshape(-1)

    def neighbour_min(flat):  # 3x3 minimum, separable; outside the image counts as `big`
        p = jnp.pad(flat.reshape(h, w), 1, constant_values=n)
        r = jnp.minimum(jnp.minimum(p[:-2], p[1:-1]), p[2:])
        m = jnp.minimum(jnp.minimum(r[:, :-2], r[:, 1:-1]), r[:, 2:])
        return jnp.where(cand, m, big).reshape(-1)

    def jump(flat):
        return jnp.take(flat, flat, mode="fill", fill_value=n)

    def body(state):
        flat, _ = state
        m = neighbour_min(flat)
        new = jnp.minimum(flat, m).at[flat].min(m, mode="drop")
        for _ in range(_JUMPS):
            new = jump(new)
        return new, jnp.any(new != flat)

    flat, _ = jax.lax.while_loop(lambda s: s[1], body, (lab0, jnp.any(cand)))
    seeds = jnp.where(strong.reshape(-1) & cand.reshape(-1), flat, big)
    good = jnp.zeros((n,), bool).at[seeds].set(True, mode="drop")
    return (cand.reshape(-1) & jnp.take(good, flat, mode="fill", fill_value=False)).reshape(h, w)


@partial(jax.jit, static_argnames=("sigma",))
def _gradient_jit(gray, sigma):
    gx, gy = _smooth_gradient_impl(gray, sigma)
    return gx, gy, _normalised_magnitude(gx, gy)


@partial(jax.jit, static_argnames=("sigma",))
def _canny_jit(gray, low, high, sigma):
    gx, gy = _smooth_gradient_impl(gray, sigma)
    mag = _normalised_magnitude(gx, gy)
    cand = _local_maxima(gx, gy, mag) & (mag > low)
    return _hysteresis_impl(cand, mag > high)


@partial(jax.jit, static_argnames=("sigma",))
def _scale_map_jit(gray, thresholds, sigma, floor=0.0):
    gx, gy = _smooth_gradient_impl(gray, sigma)
    above_floor = jnp.max(jnp.hypot(gx, gy)) >= floor  # else no edges at all (traced floor)
    mag = _normalised_magnitude(gx, gy)
    maxima = _local_maxima(gx, gy, mag)
    scales = jnp.zeros(gray.shape, jnp.int32)
    for k in range(thresholds.shape[0]):  # a few pairs: unrolled, NMS shared
        edge = _hysteresis_impl(maxima & (mag > thresholds[k, 0]), mag > thresholds[k, 1])
        scales = jnp.maximum(scales, jnp.where(edge, k + 1, 0))
    return jnp.where(above_floor, scales, 0)


_hysteresis_jit = jax.jit(_hysteresis_impl)


@partial(jax.jit, static_argnames=("sigma",))
def _max_gradient_jit(gray, sigma):
    return jnp.max(jnp.hypot(*_smooth_gradient_impl(gray, sigma)))


@partial(jax.jit, static_argnames=("sigma",))
def scale_map_absolute(gray, thresholds, sigma, reference):
    """The paper's two-scale edge map (:func:`scale_map`) with thresholds relative to a given
    gradient magnitude ``reference`` (e.g. level 0's maximum) instead of this image's own
    maximum. gray (H, W) float32; thresholds (S, 2) float32; returns int32 (H, W) in 0..S."""
    gx, gy = _smooth_gradient_impl(gray, sigma)
    mag = jnp.hypot(gx, gy) / jnp.maximum(reference, 1e-12)
    maxima = _local_maxima(gx, gy, mag)
    scales = jnp.zeros(gray.shape, jnp.int32)
    for k in range(thresholds.shape[0]):
        edge = _hysteresis_impl(maxima & (mag > thresholds[k, 0]), mag > thresholds[k, 1])
        scales = jnp.maximum(scales, jnp.where(edge, k + 1, 0))
    return scales


def peak_gradient(gray, sigma):
    """Jit-safe :func:`max_gradient`: the maximum derivative-of-Gaussian gradient magnitude of (H, W)
    float32 ``gray`` as a float32 scalar (``sigma`` static)."""
    gx, gy = _smooth_gradient_impl(gray, sigma)
    return jnp.max(jnp.hypot(gx, gy))


# ----------------------------------------------------------------------------- public wrappers


def _check_gray(gray, name: str = "gray") -> jax.Array:
    if not hasattr(gray, "dtype"):
        gray = np.asarray(gray)
    if not jnp.issubdtype(gray.dtype, jnp.floating):
        raise TypeError(f"{name} must be a float array, got dtype {gray.dtype}")
    if gray.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {tuple(gray.shape)}")
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        raise ValueError(f"{name} must be at least 3x3, got shape {tuple(gray.shape)}")
    if not checks.is_traced(gray) and not bool(np.isfinite(np.asarray(gray)).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return jnp.asarray(gray, jnp.float32)


def _check_sigma(sigma) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.floating, np.integer)):
        raise TypeError(f"sigma must be a Python number, got {type(sigma).__name__}")
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive finite number, got {sigma}")
    return sigma


def _check_pair(low, high) -> None:
    if checks.is_traced(low) or checks.is_traced(high):
        return
    low, high = float(np.asarray(low)), float(np.asarray(high))
    if not (0.0 <= low < high < 1.0):
        raise ValueError(f"Canny thresholds must satisfy 0 <= low < high < 1, got [{low}, {high}]")


def smooth_gradient(gray, sigma: float = DEFAULT_SIGMA) -> tuple[jax.Array, jax.Array, jax.Array]:
    """MATLAB ``smoothGradient`` and the normalised magnitude used by Canny.

    Args:
      gray: float (H, W), H, W >= 3, finite (any range; [0, 1] for images).
      sigma: Gaussian std in pixels (static).

    Returns:
      (gx, gy, magnitude), float32 (H, W): derivative-of-Gaussian responses along columns (x,
      increasing to the right) and rows (y, increasing downwards), in intensity units per pixel;
      ``magnitude = hypot(gx, gy) / max`` in [0, 1] (all zeros when the image is constant).
    """
    return _gradient_jit(_check_gray(gray), _check_sigma(sigma))


def max_gradient(gray, sigma: float = DEFAULT_SIGMA) -> float:
    """The largest smoothed gradient magnitude ``max hypot(gx, gy)`` of an image, in intensity
    units per pixel: the quantity :data:`CONTRAST_FLOOR` bounds (Canny's thresholds are
    fractions of it).

    Args:
      gray: float (H, W), H, W >= 3, finite (the value channel in [0, 1]).
      sigma: Canny smoothing std in pixels.
    """
    return float(_max_gradient_jit(_check_gray(gray), _check_sigma(sigma)))


def canny(gray, low: float, high: float, sigma: float = DEFAULT_SIGMA) -> jax.Array:
    """Canny edges like MATLAB ``edge(gray, 'canny', [low high], sigma)``.

    Args:
      gray: float (H, W), H, W >= 3, finite, usually in [0, 1].
      low, high: hysteresis thresholds as fractions of the image's maximum gradient magnitude,
        0 <= low < high < 1. Traced: new values reuse the compiled function.
      sigma: std of the smoothing Gaussian in pixels (static), default sqrt(2).

    Returns:
      bool (H, W) edge map; border pixels are never edges; a constant image has no edges.
    """
    gray = _check_gray(gray)
    _check_pair(low, high)
    return _canny_jit(gray, jnp.float32(low), jnp.float32(high), _check_sigma(sigma))


def scale_map(
    gray, thresholds: Sequence[Sequence[float]] = ESTIMATION_THRESHOLDS, sigma: float = DEFAULT_SIGMA,
    floor: float = 0.0,
) -> jax.Array:
    """Edge scale map: ``max_k k * canny(gray, *thresholds[k-1])``.

    The smoothed gradient and non-maximum suppression are computed once; only hysteresis runs
    per threshold pair.

    Args:
      gray: float (H, W), H, W >= 3, finite, usually the value channel in [0, 1].
      thresholds: K pairs (low, high), each 0 <= low < high < 1; default
        ``ESTIMATION_THRESHOLDS`` (use ``TRAINING_THRESHOLDS`` for training data). Values are
        traced; K is static.
      sigma: Canny smoothing std in pixels (static).
      floor: contrast floor (>= 0, traced): when the largest smoothed gradient magnitude is
        below it, the map is all 0 (no edges). 0 (default) = Canny as MATLAB; the estimator
        uses :data:`CONTRAST_FLOOR`.

    Returns:
      int32 (H, W) in 0..K. With the default two pairs: 0 = no edge, 1 = weak edge only
      (large 27x27 patch), 2 = strong edge (small 15x15 patch).
    """
    gray = _check_gray(gray)
    if not checks.is_traced(floor) and not (np.isfinite(float(floor)) and float(floor) >= 0):
        raise ValueError(f"floor must be a finite number >= 0, got {floor!r}")
    if not checks.is_traced(thresholds):
        t = np.asarray(thresholds, dtype=np.float64)
        if t.ndim != 2 or t.shape[1] != 2 or t.shape[0] < 1:
            raise ValueError(f"thresholds must have shape (K, 2) with K >= 1, got {t.shape}")
        for low, high in t:
            _check_pair(low, high)
    return _scale_map_jit(gray, jnp.asarray(thresholds, jnp.float32), _check_sigma(sigma), jnp.float32(floor))


def hysteresis(candidates, strong) -> jax.Array:
    """8-connected hysteresis: candidate components that contain a strong candidate pixel.

    Args:
      candidates: bool (H, W), pixels that may be edges (e.g. local maxima above ``low``).
      strong: bool (H, W), seeds (only seeds inside ``candidates`` count).

    Returns:
      bool (H, W), a subset of ``candidates`` (MATLAB ``bwselect(candidates, seeds, 8)``).
    """
    for name, a in (("candidates", candidates), ("strong", strong)):
        if not hasattr(a, "dtype") or a.dtype != bool:
            raise TypeError(f"{name} must be a bool array")
        if a.ndim != 2:
            raise ValueError(f"{name} must be 2-D (H, W), got shape {tuple(a.shape)}")
    if candidates.shape != strong.shape:
        raise ValueError(f"shape mismatch: candidates {candidates.shape} vs strong {strong.shape}")
    if candidates.shape[0] * candidates.shape[1] >= 2**31 - 1:
        raise ValueError("image too large for int32 labels")
    return _hysteresis_jit(jnp.asarray(candidates), jnp.asarray(strong))
