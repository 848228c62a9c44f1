"""Blurred/sharp segmentation by thresholding the defocus map (paper 5.3, Eq. 13, and beyond).

Three rules of :func:`segment_blur` (pixels whose defocus exceeds ``tau`` are blurred, white in
the CUHK masks):

* ``"alpha"`` (paper Eq. 13): ``tau = alpha v_max + (1 - alpha) v_min`` with ``v_max``, ``v_min``
  the extremes of the map; alpha = 0.3. Relative: an image that is sharp everywhere still gets
  a "blurred" part, and one outlier stretches the threshold.
* ``"absolute"``: a fixed ``tau`` in pixels of sigma (default 1.0 px), the same for every image.
* ``"otsu"``: Otsu's threshold on log(sigma) (256-bin histogram between the map's extremes),
  a data-driven split into two classes; the threshold is a bin centre, as in
  ``skimage.filters.threshold_otsu``.

The paper sweeps tau from sigma_1 to sigma_L for precision-recall (:func:`threshold_sweep`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from dhde import checks

PathLike = Union[str, os.PathLike]



@dataclass(frozen=True)
class SegmentParams:
    """Segmentation parameters (``conf/segment.yaml``; the defaults of :func:`segment_blur`,
    :func:`overlay_mask`, :func:`tau_sweep_figure` and of ``experiments/segment.py``).

    Attributes:
      alpha: Eq. 13's alpha in [0, 1] (the paper's 0.3).
      overlay_opacity: tint opacity in [0, 1] of the blurred pixels (``alpha`` of
        :func:`overlay_mask`).
      color: tint colour, RGB in [0, 1].
      taus: thresholds (px) of the sweep figure; None = the 11 label sigmas 0.5..2.0.
    """

    alpha: float = 0.3
    overlay_opacity: float = 0.5
    color: tuple[float, float, float] = (1.0, 0.0, 0.0)
    taus: tuple[float, ...] | None = None


#: The paper's alpha in Eq. 13 (:attr:`SegmentParams.alpha`).
DEFAULT_ALPHA = SegmentParams.alpha


@jax.jit
def _threshold_impl(defocus: jax.Array, alpha: jax.Array) -> jax.Array:
    return alpha * jnp.max(defocus) + (1.0 - alpha) * jnp.min(defocus)


@jax.jit
def _sweep_impl(defocus: jax.Array, taus: jax.Array) -> jax.Array:
    return defocus[None] > taus[:, None, None]


@jax.jit
def _overlay_impl(image, mask, color, alpha):
    return jnp.where(mask[..., None], (1.0 - alpha) * image + alpha * color, image)


def blur_threshold(defocus, alpha: float = DEFAULT_ALPHA) -> jax.Array:
    """Eq. 13: ``tau = alpha max(defocus) + (1 - alpha) min(defocus)``, float32 scalar (pixels).

    Args:
      defocus: float (H, W) defocus map, sigma in pixels, >= 0, finite.
      alpha: in [0, 1]; 0.3 in the paper.
    """
    fn = "blur_threshold"
    defocus = checks.sigma_map(defocus, fn)
    alpha = checks.scalar(alpha, "alpha", where=fn, lo=0.0, hi=1.0)
    return _threshold_impl(jnp.asarray(defocus), jnp.float32(alpha))


#: Rules of :func:`segment_blur`.
RULES = ("alpha", "absolute", "otsu")
#: Default threshold (px of sigma) of the ``"absolute"`` rule.
DEFAULT_TAU = 1.0
#: Histogram bins of the ``"otsu"`` rule.
OTSU_BINS = 256


@jax.jit
def _otsu_impl(x: jax.Array) -> jax.Array:
    """Otsu threshold of the values of ``x`` (skimage's algorithm: a bin centre)."""
    x = x.ravel()
    lo, hi = jnp.min(x), jnp.max(x)
    width = jnp.where(hi > lo, (hi - lo) / OTSU_BINS, 1.0)
    idx = jnp.clip(jnp.floor((x - lo) / width), 0, OTSU_BINS - 1).astype(jnp.int32)
    counts = jnp.zeros(OTSU_BINS, jnp.float32).at[idx].add(1.0)
    centers = lo + width * (jnp.arange(OTSU_BINS, dtype=jnp.float32) + 0.5)
    w1 = jnp.cumsum(counts)
    w2 = jnp.cumsum(counts[::-1])[::-1]
    m1 = jnp.cumsum(counts * centers) / jnp.maximum(w1, 1e-12)
    m2 = (jnp.cumsum((counts * centers)[::-1]) / jnp.maximum(w2[::-1], 1e-12))[::-1]
    var12 = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
    return jnp.where(hi > lo, centers[jnp.argmax(var12)], hi)


def otsu_threshold(defocus) -> jax.Array:
    """Otsu's threshold of log(defocus), returned in pixels of sigma (float32 scalar).

    Args:
      defocus: float (H, W) defocus map, sigma in pixels, > 0, finite.

    Returns:
      tau such that ``defocus > tau`` is the Otsu split of log(defocus) (256 bins between its
      extremes; tau = exp of the chosen bin centre). A constant map gives its value (no pixel above).
    """
    fn = "otsu_threshold"
    defocus = checks.sigma_map(defocus, fn)
    d = jnp.asarray(defocus)
    if float(jnp.min(d)) <= 0:
        raise ValueError(f"{fn}: the otsu rule works on log(sigma) and needs a map > 0, got min {float(jnp.min(d))}")
    return jnp.exp(_otsu_impl(jnp.log(d)))


def segment_blur(defocus, alpha: float = DEFAULT_ALPHA, *, rule: str = "alpha", tau: float | None = None) -> jax.Array:
    """Binary blur mask: True where ``defocus > tau`` (blurred), False = sharp.

    Args:
      defocus: float (H, W) defocus map, sigma in pixels, >= 0, finite (> 0 for ``"otsu"``).
        A blur-probability map (``dhde.blur_probability``) works too, with ``rule="absolute",
        tau=0.5``.
      alpha: in [0, 1]; the ``"alpha"`` rule's parameter (0.3 in the paper).
      rule: ``"alpha"`` (paper Eq. 13: tau = alpha max + (1 - alpha) min), ``"absolute"``
        (tau in px, default 1.0) or ``"otsu"`` (Otsu on log sigma). See the module docstring.
      tau: the ``"absolute"`` threshold in pixels (> 0 finite); not allowed with other rules.

    Returns:
      bool jax.Array (H, W). A constant map gives an all-False mask under "alpha" and "otsu".
    """
    fn = "segment_blur"
    if rule not in RULES:
        raise ValueError(f"{fn}: rule must be one of {RULES}, got {rule!r}")
    if tau is not None and rule != "absolute":
        raise ValueError(f"{fn}: tau is the 'absolute' rule's threshold; rule={rule!r} does not take one")
    defocus = checks.sigma_map(defocus, fn)
    alpha = checks.scalar(alpha, "alpha", where=fn, lo=0.0, hi=1.0)
    d = jnp.asarray(defocus)
    if rule == "alpha":
        t = _threshold_impl(d, jnp.float32(alpha))
    elif rule == "absolute":
        t = jnp.float32(checks.scalar(DEFAULT_TAU if tau is None else tau, "tau", where=fn, lo=0.0, lo_open=True))
    else:
        t = otsu_threshold(d)
    return _sweep_impl(d, t[None])[0]


def threshold_sweep(defocus, taus) -> jax.Array:
    """Masks for several thresholds (precision-recall sweeps): ``defocus > tau`` per tau.

    Args:
      defocus: float (H, W) defocus map, sigma in pixels, >= 0, finite.
      taus: 1-D sequence of T finite thresholds in pixels (e.g. dhde.labels.SIGMAS).

    Returns:
      bool jax.Array (T, H, W).
    """
    fn = "threshold_sweep"
    defocus = checks.sigma_map(defocus, fn)
    taus = _check_taus(taus, fn)
    return _sweep_impl(jnp.asarray(defocus), jnp.asarray(taus))


def _check_taus(taus, fn: str) -> np.ndarray:
    if isinstance(taus, (str, bytes)) or not hasattr(taus, "__len__") and not isinstance(
        taus, (np.ndarray, jax.Array)
    ):
        raise TypeError(f"{fn}: taus must be a 1-D sequence of numbers, got {type(taus).__name__}")
    t = np.asarray(taus)
    if not (np.issubdtype(t.dtype, np.floating) or np.issubdtype(t.dtype, np.integer)):
        raise TypeError(f"{fn}: taus must be numbers, got dtype {t.dtype}")
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"{fn}: taus must be a non-empty 1-D sequence, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{fn}: taus contains NaN or infinite values")
    return t.astype(np.float32)


def overlay_mask(image, mask, color: Sequence[float] = SegmentParams.color,
                 alpha: float = SegmentParams.overlay_opacity) -> jax.Array:
    """Tints the masked pixels: ``(1 - alpha) image + alpha color`` where mask, else image.

    Args:
      image: float (H, W, 3) RGB in [0, 1].
      mask: bool (H, W) (e.g. :func:`segment_blur`).
      color: RGB triple in [0, 1].
      alpha: tint opacity in [0, 1].

    Returns:
      float32 jax.Array (H, W, 3) in [0, 1].
    """
    fn = "overlay_mask"
    image = checks.image01(image, fn)
    m = mask if isinstance(mask, (np.ndarray, jax.Array)) else None
    if m is None:
        raise TypeError(f"{fn}: mask must be a bool array, got {type(mask).__name__}")
    if m.dtype != np.bool_:
        raise TypeError(f"{fn}: mask must have dtype bool, got {m.dtype}")
    if m.shape != image.shape[:2]:
        raise ValueError(f"{fn}: mask has shape {tuple(m.shape)} but the image is {image.shape[:2]} (H, W)")
    c = np.asarray(color, dtype=np.float64) if not isinstance(color, (str, bytes)) else None
    if c is None or c.shape != (3,) or not np.all(np.isfinite(c)) or c.min() < 0 or c.max() > 1:
        raise ValueError(f"{fn}: color must be an RGB triple in [0, 1], got {color!r}")
    alpha = checks.scalar(alpha, "alpha", where=fn, lo=0.0, hi=1.0)
    return _overlay_impl(
        jnp.asarray(image), jnp.asarray(m), jnp.asarray(c, jnp.float32), jnp.float32(alpha)
    )


def tau_sweep_figure(
    image,
    defocus,
    taus,
    path: PathLike,
    *,
    color: Sequence[float] = SegmentParams.color,
    alpha: float = SegmentParams.overlay_opacity,
    ncols: int = 4,
    dpi: int = 100,
) -> Path:
    """Writes a PNG grid: the image, the defocus map, then one blur-mask overlay per tau.

    Uses matplotlib's Agg canvas directly (no pyplot state, no display needed).

    Args:
      image: float (H, W, 3) RGB in [0, 1].
      defocus: float (H, W) defocus map, sigma in pixels, >= 0, finite.
      taus: 1-D sequence of thresholds in pixels.
      path: output PNG; parent folders are created.
      color, alpha: overlay tint (see :func:`overlay_mask`).
      ncols: panels per row (>= 1).
      dpi: resolution of the figure.

    Returns:
      The path written.
    """
    fn = "tau_sweep_figure"
    image = checks.image01(image, fn)
    defocus = checks.sigma_map(defocus, fn, shape=image.shape[:2])
    taus = _check_taus(taus, fn)
    ncols = checks.integer(ncols, "ncols", where=fn, lo=1)
    dpi = checks.integer(dpi, "dpi", where=fn, lo=10)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    masks = np.asarray(threshold_sweep(defocus, taus))
    n = len(taus) + 2
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    h, w = defocus.shape
    panel = 3.0
    fig = Figure(figsize=(panel * ncols, (panel * h / w + 0.4) * nrows), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    axes.flat[0].imshow(image)
    axes.flat[0].set_title("image", fontsize=9)
    im = axes.flat[1].imshow(defocus, cmap="viridis")
    axes.flat[1].set_title("defocus (sigma, px)", fontsize=9)
    fig.colorbar(im, ax=axes.flat[1], fraction=0.046, pad=0.04)
    for k, (tau, m) in enumerate(zip(taus, masks)):
        ax = axes.flat[k + 2]
        ax.imshow(np.asarray(overlay_mask(image, m, color=color, alpha=alpha)))
        ax.set_title(f"tau = {float(tau):.3g} ({100.0 * m.mean():.0f}% blurred)", fontsize=9)
    from dhde.io import atomic

    return atomic.savefig(path, fig, format="png")
