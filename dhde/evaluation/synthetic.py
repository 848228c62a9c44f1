"""Synthetic defocus with a known per-pixel sigma: layered spatially varying Gaussian blur.

:func:`render_defocus` blurs a sharp image with a Gaussian whose standard deviation varies per
pixel: the whole image is blurred once at each of a set of sigma levels (``dhde.filters.gaussian``,
replicate borders) and every output pixel interpolates linearly between the two levels that
bracket its sigma. A pixel whose sigma equals a level gets exactly that Gaussian blur. It is a
"gather" model (each output pixel sees the sharp image through its own kernel), with no occlusion
handling at depth edges.

:func:`stereo_motorcycle_scene` turns scikit-image's Middlebury 2014 ``stereo_motorcycle`` pair
(left image + disparity) into such a test scene. For a thin lens the blur diameter is
proportional to ``|d - d_focus|`` in disparity, so sigma is a linear function of disparity: the
focused plane gets ``sigma_range[0]`` and the farthest plane from it ``sigma_range[1]``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dhde import checks
from dhde.filters.gaussian import convolve1d_replicate, gaussian_kernel1d
from dhde.labels import SIGMA_MIN, SIGMA_STEP

#: Default grid of blur levels: 0.5 + 0.15 k (the 11 label sigmas, extended as needed).
LEVEL_ANCHOR = SIGMA_MIN
LEVEL_STEP = SIGMA_STEP
#: The default levels always reach at least this sigma (the largest label sigma).
DEFAULT_MAX = 2.0


def default_levels(sigma_min: float, sigma_max: float, step: float = LEVEL_STEP,
                   anchor: float = LEVEL_ANCHOR) -> tuple[float, ...]:
    """Levels ``anchor + step k`` that bracket [sigma_min, sigma_max], as a tuple of floats.

    Levels at or below 0 become a single 0.0 (identity, no blur). Used by
    :func:`render_defocus` when no ``levels`` are given; with the default grid the 11 label
    sigmas 0.5 .. 2.0 are levels, so they are rendered exactly.
    """
    checks.scalar(sigma_min, "sigma_min (px)", lo=0.0, where="default_levels")
    checks.scalar(sigma_max, "sigma_max (px)", lo=float(sigma_min), where="default_levels")
    checks.scalar(step, "step (px)", lo=0.0, lo_open=True, where="default_levels")
    checks.scalar(anchor, "anchor (px)", where="default_levels")
    k_lo = math.floor(round((sigma_min - anchor) / step, 6))
    k_hi = math.ceil(round((sigma_max - anchor) / step, 6))
    levels = sorted({max(0.0, round(anchor + step * k, 6)) for k in range(k_lo, k_hi + 1)})
    if len(levels) == 1:  # a constant map on a level: one level is enough
        return (levels[0],)
    return tuple(levels)


def _kernel(level: float, radius: int) -> np.ndarray:
    k = np.zeros(2 * radius + 1)
    if level == 0.0:
        k[radius] = 1.0
        return k
    g = gaussian_kernel1d(level)
    r = g.shape[0] // 2
    k[radius - r : radius + r + 1] = g
    return k


@partial(jax.jit, static_argnames=("levels",))
def _render(sharp: jax.Array, sigma_map: jax.Array, levels: tuple[float, ...]) -> jax.Array:
    """sharp (H, W, C) float32, sigma_map (H, W) float32, static increasing levels."""
    radius = max(1, max(int(math.ceil(4.0 * s)) for s in levels))
    # Every level's Gaussian (default radius ceil(4 sigma)) zero-padded to one common length, so
    # all levels are blurred by one vmapped separable convolution.
    kernels = jnp.asarray(np.stack([_kernel(s, radius) for s in levels]), jnp.float32)

    def blur(k):
        return convolve1d_replicate(convolve1d_replicate(sharp, k, axis=0), k, axis=1)

    stack = jax.vmap(blur)(kernels)  # (K, H, W, C)
    if len(levels) == 1:
        return stack[0]
    lv = jnp.asarray(levels, jnp.float32)
    s = jnp.clip(sigma_map, lv[0], lv[-1])
    lo = jnp.clip(jnp.searchsorted(lv, s, side="right") - 1, 0, len(levels) - 2)
    w = (s - lv[lo]) / (lv[lo + 1] - lv[lo])
    w = jnp.clip(w, 0.0, 1.0)[..., None]
    a = jnp.take_along_axis(stack, lo[None, ..., None], axis=0)[0]
    b = jnp.take_along_axis(stack, (lo + 1)[None, ..., None], axis=0)[0]
    return (1.0 - w) * a + w * b


def render_defocus(sharp, sigma_map, levels: Sequence[float] | None = None) -> jax.Array:
    """Spatially varying Gaussian blur with a per-pixel sigma (layered approximation).

    Args:
      sharp: (H, W, C) or (H, W) float image (e.g. RGB in [0, 1]).
      sigma_map: (H, W) float, Gaussian standard deviation in pixels per output pixel, >= 0.
      levels: increasing, distinct sigma levels >= 0 (0 = no blur). Default: the 11 label sigmas
        0.5 + 0.15 k, k = 0..10, extended on the same grid (and by 0.0) to cover the map's
        range, i.e. :func:`default_levels` of [min(0.5, min sigma), max(2.0, max sigma)].
        Sigmas outside the levels are clamped to the first / last level. The jitted renderer
        compiles once per (shape, levels).

    Returns:
      float32 array of the shape of ``sharp``. Where ``sigma_map`` equals a level the pixel is
      exactly ``dhde.filters.gaussian.gaussian_blur(sharp, level)``; in between it is the linear
      interpolation of the two neighbouring levels (error vs a true Gaussian of that sigma is
      small for a 0.15 step).
    """
    img = np.asarray(checks.as_array(sharp, "sharp", "render_defocus"))
    if img.ndim not in (2, 3):
        raise ValueError(f"sharp must have shape (H, W) or (H, W, C), got {img.shape}")
    if not np.issubdtype(img.dtype, np.floating):
        raise checks.InputTypeError(f"sharp must be a float image, got dtype {img.dtype}")
    if img.size == 0:
        raise ValueError(f"sharp is empty (shape {img.shape})")
    if not np.all(np.isfinite(img)):
        raise ValueError("sharp contains NaN or infinite values")
    s = checks.sigma_map(sigma_map, "render_defocus", "sigma_map", shape=img.shape[:2])
    if levels is None:
        # the fixed label grid 0.5 .. 2.0 (one compilation per shape), extended to the map's range
        levels = default_levels(min(float(s.min()), LEVEL_ANCHOR), max(float(s.max()), DEFAULT_MAX))
    else:
        levels = tuple(float(v) for v in levels)
        if not levels:
            raise ValueError("levels is empty")
        if any(not (math.isfinite(v) and v >= 0) for v in levels):
            raise ValueError(f"levels must be finite and >= 0, got {levels}")
        if any(b <= a for a, b in zip(levels, levels[1:])):
            raise ValueError(f"levels must increase strictly, got {levels}")
    radius = max(1, int(math.ceil(4.0 * levels[-1])))
    if radius > 64:
        raise ValueError(f"largest level {levels[-1]} needs a {2 * radius + 1}-tap kernel; keep sigma <= 16")
    x = jnp.asarray(img, jnp.float32)
    if x.ndim == 2:
        return _render(x[..., None], jnp.asarray(s), levels)[..., 0]
    return _render(x, jnp.asarray(s), levels)


def fill_invalid(values, invalid=None) -> np.ndarray:
    """Replaces invalid entries of an (H, W) map by the nearest valid one (Euclidean).

    Args:
      values: (H, W) float map (e.g. disparity).
      invalid: (H, W) bool, default: not finite or <= 0 (Middlebury marks unknown disparity as
        inf; 0 is not a valid disparity either).

    Returns:
      float32 (H, W) with no invalid entry.
    """
    from scipy import ndimage

    v = np.asarray(checks.as_array(values, "values", "fill_invalid"), dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"expected an (H, W) map, got shape {v.shape}")
    if invalid is None:
        with np.errstate(invalid="ignore"):
            invalid = ~np.isfinite(v) | (v <= 0)
    invalid = np.asarray(invalid, bool)
    if invalid.shape != v.shape:
        raise ValueError(f"invalid mask {invalid.shape} does not match map {v.shape}")
    if invalid.all():
        raise ValueError("the map has no valid entry")
    if not invalid.any():
        return v.astype(np.float32)
    idx = ndimage.distance_transform_edt(invalid, return_distances=False, return_indices=True)
    return v[tuple(idx)].astype(np.float32)


def _sigma_range(sigma_range, where: str) -> tuple[float, float]:
    """A pair (lo, hi) of finite sigmas in px with 0 <= lo <= hi -> floats."""
    try:
        lo, hi = sigma_range
    except (TypeError, ValueError):
        raise ValueError(f"{where}: sigma_range must be a pair (lo, hi), got {sigma_range!r}") from None
    lo = checks.scalar(lo, "sigma_range[0] (px)", lo=0.0, where=where)
    return lo, checks.scalar(hi, "sigma_range[1] (px)", lo=lo, where=where)


def disparity_to_sigma(disparity, focus: str = "near", sigma_range: Sequence[float] = (0.5, 2.0),
                       clip_percentile: float = 0.0) -> np.ndarray:
    """Linear disparity -> sigma map (invalid disparities filled by the nearest valid one).

    Args:
      disparity: (H, W) float, larger = nearer; inf / NaN / <= 0 are invalid.
      focus: ``"near"``: the largest disparity is in focus (``sigma_range[0]``) and the smallest
        gets ``sigma_range[1]``; ``"far"``: the reverse.
      sigma_range: (lo, hi) in pixels, 0 <= lo <= hi.
      clip_percentile: p in [0, 50): the disparity range is taken between the p-th and
        (100 - p)-th percentiles instead of min and max, and disparities outside it saturate
        (robust to a few outliers). Default 0 = plain min-max.

    Returns:
      float32 (H, W) sigma in pixels within ``sigma_range``.
    """
    checks.choice(focus, "focus", ("near", "far"), where="disparity_to_sigma")
    lo, hi = _sigma_range(sigma_range, "disparity_to_sigma")
    p = checks.scalar(clip_percentile, "clip_percentile", lo=0.0, where="disparity_to_sigma")
    if not p < 50.0:
        raise ValueError(f"disparity_to_sigma: clip_percentile must be in [0, 50), got {clip_percentile}")
    d = fill_invalid(disparity).astype(np.float64)
    dmin, dmax = np.percentile(d, [p, 100.0 - p]) if p > 0 else (d.min(), d.max())
    t = np.clip((d - dmin) / (dmax - dmin), 0.0, 1.0) if dmax > dmin else np.zeros_like(d)
    if focus == "near":
        t = 1.0 - t
    return (lo + (hi - lo) * t).astype(np.float32)


def stereo_motorcycle_scene(focus: str = "near", sigma_range: Sequence[float] = (0.5, 2.0),
                            downscale: int = 1, clip_percentile: float = 0.0,
                            noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A rendered defocus test scene with known sigma from ``skimage.data.stereo_motorcycle()``.

    The left image (500 x 741 at ``downscale=1``) is block-averaged by ``downscale`` (the
    disparity too, after filling invalid pixels), the disparity is mapped linearly onto sigma
    (:func:`disparity_to_sigma`, in pixels of the downscaled image) and the image is rendered by
    :func:`render_defocus`.

    Args:
      focus: ``"near"`` (default, nearest plane sharp) or ``"far"``.
      sigma_range: (lo, hi) sigma in pixels, default (0.5, 2.0) = the classifier's label range.
      downscale: positive integer block size.
      clip_percentile: see :func:`disparity_to_sigma` (default 0: plain min-max).
      noise: std of i.i.d. Gaussian sensor noise added to the rendering, in grey levels of 255
        (default 0: none). A camera photograph carries about 1-3; the noise-free rendering
        flatters any method that reads fine texture as sharpness.
      seed: seed of the noise.

    Returns:
      (image float32 (H, W, 3) in [0, 1], sigma_map float32 (H, W)).
    """
    import skimage.data
    from skimage.transform import downscale_local_mean

    where = "stereo_motorcycle_scene"
    checks.integer(downscale, "downscale", lo=1, where=where)
    checks.choice(focus, "focus", ("near", "far"), where=where)
    _sigma_range(sigma_range, where)
    noise = checks.scalar(noise, "noise (std, grey levels of 255)", lo=0.0, where=where)
    checks.integer(seed, "seed", lo=0, where=where)
    left, _, disparity = skimage.data.stereo_motorcycle()
    sharp = left.astype(np.float32) / 255.0
    disp = fill_invalid(disparity)
    if downscale > 1:
        f = int(downscale)
        h, w = (disp.shape[0] // f) * f, (disp.shape[1] // f) * f
        sharp = downscale_local_mean(sharp[:h, :w], (f, f, 1)).astype(np.float32)
        disp = downscale_local_mean(disp[:h, :w], (f, f)).astype(np.float32) / f
    sigma = disparity_to_sigma(disp, focus=focus, sigma_range=sigma_range,
                               clip_percentile=clip_percentile)
    image = np.asarray(render_defocus(sharp, sigma))
    if noise > 0:
        image = image + np.random.default_rng(seed).normal(0.0, noise / 255.0, image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32), sigma
