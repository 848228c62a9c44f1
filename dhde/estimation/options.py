"""``EstimateOptions`` (every knob of the estimator) and ``DefocusResult`` (everything it returns)."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import numpy as np

from dhde.estimation import pyramid, sparse_map
from dhde.filters.edges import CONTRAST_FLOOR, ESTIMATION_THRESHOLDS
from dhde.propagation import solver as propagation


#: The numbers of :class:`EstimateOptions` that are traced under ``jax.jit`` (pytree leaves):
#: changing them does not recompile. Everything else (shapes, iteration counts, choices, the
#: Canny thresholds and the Gaussian widths that set kernel sizes) is static.
TRACED_FIELDS = ("contrast_floor", "rgf_sigma_r", "bf_sigma_s", "bf_sigma_r", "bf_sigma_c", "gamma", "eps",
                 "tol", "median_sigma_r")


@dataclasses.dataclass(frozen=True)
class EstimateOptions:
    """Every knob of the estimator. Defaults follow the paper.

    A pytree: the numbers in :data:`TRACED_FIELDS` (contrast floor, range sigmas, bilateral
    sigmas, gamma, eps, tol) are its leaves, traced when the options are passed to a jitted
    function (:func:`dhde.estimation.inference.estimate_core`), so changing them reuses the
    compiled program; every other field is static (part of the tree structure), and changing it
    recompiles. Also hashable, so it still works as a static argument.

    Attributes:
      thresholds: Canny threshold pairs (fractions of the max gradient), weak then strong.
      contrast_floor: an image whose largest smoothed gradient magnitude (value channel,
        intensity per pixel) is below this has no edges ("no edges" error) instead of a map
        built from its noise; default ``dhde.filters.edges.CONTRAST_FLOOR`` (0.02), 0 = off.
      sparse_value: a point's sigma from its class probabilities: "argmax" (paper) or "mean"
        (expected sigma), see ``dhde.estimation.sparse_map.point_sigma``.
      chunk: patches classified per loop step (memory ~ chunk * 30 kB).
      rgf_sigma_s, rgf_sigma_r, rgf_iterations: rolling guidance filter (4.2).
      rgf_per_channel: filter each channel with its own guidance (authors' code).
      bilateral: apply the probability-joint bilateral filter (Eq. 6).
      bf_sigma_s, bf_sigma_r, bf_sigma_c, bf_window: its parameters (paper: 100, 100, 1, 27).
      range_channels: "rgb" (paper: all channels of I_G) or "first" (authors' code).
      gamma, eps: propagation data weight and matting regulariser (paper: 0.005, 1e-5).
      tol, maxiter: CG relative-residual tolerance and iteration cap.
      preconditioner: "multigrid" (default), "jacobi" or "none".
      seeds: number of random seed points in large edge-free regions (0 = off, paper default).
      seed_min_distance: a seed is at least this far (pixels, Chebyshev) from every edge pixel.
      clip: clip the propagated map to the label range [0.5, 2.0] (default; beyond the paper).
        The matting-Laplacian solve is not a convex combination of the sparse values and can
        over- or undershoot near strong colour edges (seen: 0.15 on a CUHK photograph), which
        no classifier output supports and which skews any min-max normalised use of the map.
      median_iterations: passes of the joint weighted median post-filter on the full map
        (authors' code: 3; the paper has none, so 0 = off is the default).
      median_radius, median_sigma_r: its window radius and range sigma on I_G (code: 5, 0.25).
      levels: pyramid levels (beyond the paper; ``dhde.estimation.pyramid``). 1 = the paper: edges and
        patches at full resolution only, sigma in [0.5, 2.0]. L > 1: also at the image
        downscaled by 2, 4, ... 2^(L-1), each estimate converted to full-resolution sigma, so
        the map reaches about 2 * 2^(L-1) px (``pyramid.sigma_ceiling``). Levels that would be
        smaller than a 27x27 patch are dropped with a warning (``pyramid.max_levels``).
      pre_blur: known anti-aliasing blur of every coarse level (Gaussian std, level px, > 0.289).
      level_thresholds: Canny thresholds of a coarse level relative to "relative" its own maximum
        gradient (as the paper at full resolution) or "absolute" level 0's maximum gradient.
      level_rule: which level a point takes among its unsaturated estimates: "confidence" (the
        most confident), "finest", or "range" (coarse to fine: a finer level only where the
        coarser estimate lies in its reliable range; see ``pyramid.merge_levels``).
      coarse_points: "needed": classify a coarse level only where no finer level has an
        unsaturated estimate nearby (faster); "all": at every edge of every level.
      coarse_seeds: random seed points (section 6) per coarse level, in that level's edge-free
        regions (at least ``seed_min_distance`` level px from its edges); 0 = off.
    """

    thresholds: tuple[tuple[float, float], ...] = ESTIMATION_THRESHOLDS
    contrast_floor: float = CONTRAST_FLOOR
    sparse_value: str = "argmax"
    chunk: int = 2048
    rgf_sigma_s: float = 1.5
    rgf_sigma_r: float = 1.5
    rgf_iterations: int = 3
    rgf_per_channel: bool = True
    bilateral: bool = True
    bf_sigma_s: float = 100.0
    bf_sigma_r: float = 100.0
    bf_sigma_c: float = 1.0
    bf_window: int = 27
    range_channels: str = "rgb"
    gamma: float = 0.005
    eps: float = 1e-5
    tol: float = 1e-4
    maxiter: int = 1000
    preconditioner: str = "multigrid"
    seeds: int = 0
    seed_min_distance: int = 27
    clip: bool = True
    median_iterations: int = 0
    median_radius: int = 5
    median_sigma_r: float = 0.25
    levels: int = 1
    pre_blur: float = pyramid.DEFAULT_PRE_BLUR
    level_thresholds: str = "relative"
    level_rule: str = "confidence"
    coarse_points: str = "needed"
    coarse_seeds: int = 0

    def __post_init__(self):
        for name in ("levels", "coarse_seeds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
        if not 1 <= self.levels <= 8:
            raise ValueError(f"levels must be an int in 1..8 (1 = the paper's single scale), got {self.levels}")
        if self.coarse_seeds < 0:
            raise ValueError(f"coarse_seeds must be >= 0, got {self.coarse_seeds}")
        if isinstance(self.pre_blur, bool) or not isinstance(self.pre_blur, (int, float, np.floating)):
            raise TypeError(f"pre_blur must be a number, got {type(self.pre_blur).__name__}")
        if not (np.isfinite(self.pre_blur) and pyramid.MIN_PRE_BLUR < self.pre_blur <= 2.0):
            raise ValueError(f"pre_blur must lie in ({pyramid.MIN_PRE_BLUR:.3f}, 2.0] level px, got {self.pre_blur!r}")
        for name, allowed in (("level_thresholds", ("relative", "absolute")), ("level_rule", ("confidence", "finest", "range")),
                              ("coarse_points", ("needed", "all"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        object.__setattr__(self, "thresholds", tuple(tuple(float(v) for v in p) for p in self.thresholds))
        for lo, hi in self.thresholds:
            if not 0 <= lo < hi < 1:
                raise ValueError(f"Canny thresholds need 0 <= low < high < 1, got ({lo}, {hi})")
        if not (np.isfinite(self.contrast_floor) and self.contrast_floor >= 0):
            raise ValueError(f"contrast_floor must be a finite number >= 0, got {self.contrast_floor!r}")
        if self.sparse_value not in sparse_map.VALUES:
            raise ValueError(f"sparse_value must be one of {sparse_map.VALUES}, got {self.sparse_value!r}")
        if self.range_channels not in ("rgb", "first"):
            raise ValueError(f"range_channels must be 'rgb' or 'first', got {self.range_channels!r}")
        if self.preconditioner not in propagation.PRECONDITIONERS:
            raise ValueError(f"preconditioner must be one of {propagation.PRECONDITIONERS}")
        for name in ("rgf_sigma_s", "rgf_sigma_r", "bf_sigma_s", "bf_sigma_r", "bf_sigma_c", "gamma", "eps", "tol",
                     "median_sigma_r"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        for name in ("chunk", "rgf_iterations", "maxiter", "bf_window"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.bf_window % 2 == 0:
            raise ValueError(f"bf_window must be odd, got {self.bf_window}")
        if self.seeds < 0 or self.seed_min_distance < 0:
            raise ValueError("seeds and seed_min_distance must be >= 0")
        if self.median_iterations < 0 or self.median_radius < 1:
            raise ValueError("median_iterations must be >= 0 and median_radius >= 1")


def _flatten_options(o: EstimateOptions):
    children = tuple(getattr(o, f) for f in TRACED_FIELDS)
    aux = tuple((f.name, getattr(o, f.name)) for f in dataclasses.fields(o) if f.name not in TRACED_FIELDS)
    return children, aux


def _unflatten_options(aux, children) -> EstimateOptions:
    # No __init__: the leaves may be tracers (or placeholders jax puts in a tree), which the
    # host-side checks of __post_init__ must not see. They were checked when the options were made.
    o = object.__new__(EstimateOptions)
    for name, value in aux:
        object.__setattr__(o, name, value)
    for name, value in zip(TRACED_FIELDS, children):
        object.__setattr__(o, name, value)
    return o


jax.tree_util.register_pytree_node(EstimateOptions, _flatten_options, _unflatten_options)


class DefocusResult(NamedTuple):
    """Output of :func:`estimate_defocus`; all maps (H, W) unless noted.

    defocus: float32 full defocus map I_F, Gaussian sigma in pixels (in [0.5, 2.0] unless
      ``clip=False``; with ``levels > 1`` in [0.5, :func:`output_ceiling`]).
    sparse: float32 sparse map I_S (sigma of the arg-max label at edge pixels, 0 elsewhere;
      with ``levels > 1`` the full-resolution sigma of the level each point took).
    confidence: float32 I_C, max class probability at edge pixels (0 elsewhere).
    filtered: float32 I_B, the sparse map after the probability-joint bilateral filter.
    mask: bool, pixels carrying a sparse value (edge pixels, plus seeds if enabled).
    scales: int32 scale map: 0 none, 1 weak edge (27x27 patch), 2 strong edge (15x15 patch).
    guidance: float32 (H, W, 3) rolling-guidance-filtered image I_G in [0, 1].
    probabilities: float32 (H, W, 11) class probabilities at sparse points (0 elsewhere); with
      ``levels > 1`` those of the level the point took (labels in that level's pixels).
    residual: float32 scalar, true relative residual of the propagation solve.
    level: int32 pyramid level each sparse point took (0 = full resolution), -1 elsewhere.
    """

    defocus: jax.Array
    sparse: jax.Array
    confidence: jax.Array
    filtered: jax.Array
    mask: jax.Array
    scales: jax.Array
    guidance: jax.Array
    probabilities: jax.Array
    residual: jax.Array
    level: jax.Array


def effective_levels(shape, levels: int) -> int:
    """``levels`` capped so that every level of an (H, W) image is at least 27x27 pixels."""
    return max(1, min(int(levels), pyramid.max_levels(shape)))


def output_ceiling(opts: EstimateOptions, shape=None) -> float:
    """Upper end (px) of the map's range, the ``clip`` bound: 2.0 for one level, else
    :func:`dhde.estimation.pyramid.sigma_ceiling` of the levels used (``shape``: cap them for that image)."""
    n = opts.levels if shape is None else effective_levels(shape, opts.levels)
    return pyramid.sigma_ceiling(n, opts.pre_blur)
