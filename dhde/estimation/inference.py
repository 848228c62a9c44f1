"""Public inference API: a photograph in, a per-pixel defocus map (sigma, pixels) out.

``estimate_defocus(image)`` runs the whole method in one jit-compiled function:

    value channel -> Canny x2 -> scale map                       (paper 3.1, dhde.filters.edges)
    every edge patch -> features -> classifier, in chunks        (3.2-3.6, 4.1, dhde.estimation.classify)
    sparse map I_S + confidence I_C (+ optional random seeds)    (4.1, section 6, dhde.estimation.sparse_map)
    rolling guidance filter -> I_G                               (4.2, dhde.filters.rolling_guidance)
    probability-joint bilateral filter -> I_B                    (4.2 Eq. 6, dhde.filters.bilateral)
    matting Laplacian + multigrid-preconditioned CG -> I_F       (4.3, dhde.propagation.matting/propagation)
    optional joint weighted median post-filter (authors' code)  (dhde.filters.weighted_median)

A second image of the same size compiles nothing, whatever its edge count. With
``size_multiple > 1`` images are replicate-padded up to a multiple of it (and the results
cropped), so a folder of mixed sizes shares a bounded number of compilations; the padding only
changes the map within a few pixels of the bottom/right border.
"""

from __future__ import annotations

import dataclasses
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dhde.filters import bilateral

from dhde.propagation import matting

from dhde.propagation import solver as propagation

from dhde.estimation import pyramid

from dhde.filters import rolling_guidance

from dhde.estimation import sparse_map

from dhde.filters import weighted_median
from dhde.estimation.classify import classify_edges
from dhde.filters.edges import CONTRAST_FLOOR, DEFAULT_SIGMA, ESTIMATION_THRESHOLDS, _scale_map_jit, max_gradient
from dhde.features.pipeline import scale_features
from dhde.io.image import load_image
from dhde.labels import NUM_LABELS, SIGMA_MAX, SIGMA_MIN
from dhde.model.network import DefocusModel
from dhde.filters.patches import LARGE, extract_patches


@dataclasses.dataclass(frozen=True)
class EstimateOptions:
    """Every knob of the estimator (static: a change recompiles). Defaults follow the paper.

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


def _seed_sparse(image, model, sparse, conf, mask, key, opts):
    coords, valid = sparse_map._seed_points(
        key, mask, None, n_seeds=opts.seeds, min_distance=opts.seed_min_distance
    )
    f = scale_features(extract_patches(image, coords, LARGE + 2), False, model.config)
    probs = model.probabilities(f.hand, f.cnn)
    return sparse_map._add_seeds(sparse, conf, mask, probs, coords, valid, jnp.float32(sparse_map.SEED_CONFIDENCE),
                                 value=opts.sparse_value)


def effective_levels(shape, levels: int) -> int:
    """``levels`` capped so that every level of an (H, W) image is at least 27x27 pixels."""
    return max(1, min(int(levels), pyramid.max_levels(shape)))


def output_ceiling(opts: EstimateOptions, shape=None) -> float:
    """Upper end (px) of the map's range, the ``clip`` bound: 2.0 for one level, else
    :func:`dhde.estimation.pyramid.sigma_ceiling` of the levels used (``shape``: cap them for that image)."""
    n = opts.levels if shape is None else effective_levels(shape, opts.levels)
    return pyramid.sigma_ceiling(n, opts.pre_blur)


def _seed_level(image_k, model, probs, conf, mask, key, n_seeds, opts):
    """Random seed points at one pyramid level: (probs, conf, mask) with the seeds added."""
    coords, valid = sparse_map._seed_points(key, mask, None, n_seeds=n_seeds, min_distance=opts.seed_min_distance)
    f = scale_features(extract_patches(image_k, coords, LARGE + 2), False, model.config)
    p = model.probabilities(f.hand, f.cnn)
    h, w = mask.shape
    r = jnp.where(valid, coords[:, 0], h)
    c = coords[:, 1]
    new = jnp.zeros((h, w), jnp.bool_).at[r, c].set(True, mode="drop") & ~mask
    ps = jnp.zeros(probs.shape, jnp.float32).at[r, c].set(p, mode="drop")
    return (jnp.where(new[..., None], ps, probs), jnp.where(new, jnp.float32(sparse_map.SEED_CONFIDENCE), conf),
            mask | new)


def _multiscale_sparse(image, model, key, opts, n_levels):
    """Per-level edges and classification, merged at full resolution (``dhde.estimation.pyramid``)."""
    thr = jnp.asarray(opts.thresholds, jnp.float32)
    shape = image.shape[:2]
    gray0 = jnp.max(image, axis=-1)
    reference = pyramid.max_gradient(gray0, DEFAULT_SIGMA) if opts.level_thresholds == "absolute" else None
    keys = jax.random.split(key, n_levels)
    points, covered, scales0 = [], None, None
    for k in range(n_levels):
        img_k = image if k == 0 else pyramid._downscale(image, k=k, pre_blur=opts.pre_blur)
        gray = gray0 if k == 0 else jnp.max(img_k, axis=-1)
        if k == 0 or reference is None:
            scales = _scale_map_jit(gray, thr, DEFAULT_SIGMA, jnp.float32(opts.contrast_floor))
        else:
            scales = pyramid.scale_map_absolute(gray, thr, DEFAULT_SIGMA, reference)
        allowed = None
        if k > 0 and opts.coarse_points == "needed":
            allowed = ~pyramid.coverage(covered, gray.shape)
            scales = jnp.where(allowed, scales, 0)
        if k == 0:
            scales0 = scales
        # coarse levels hold few points: smaller chunks, so the one padded chunk per scale is cheap
        probs = classify_edges(img_k, scales, model, opts.chunk if k == 0 else max(64, opts.chunk // 8))
        mask = scales > 0
        conf = jnp.where(mask, jnp.max(probs, -1), 0.0)
        n_seeds = opts.seeds if k == 0 else opts.coarse_seeds
        if n_seeds:
            probs, conf, mask = _seed_level(img_k, model, probs, conf, mask, keys[k], n_seeds, opts)
        points.append(pyramid.LevelPoints(k, mask, probs, conf))
        covered = mask & (jnp.argmax(probs, -1) != NUM_LABELS - 1)
        if allowed is not None:
            covered = covered | ~allowed
    sparse, conf, mask, probs, level = pyramid.merge_levels(
        points, shape, pre_blur=opts.pre_blur, value=opts.sparse_value, rule=opts.level_rule)
    return sparse, conf, mask, probs, level, scales0


def _estimate_impl(image, model: DefocusModel, key, opts: EstimateOptions) -> DefocusResult:
    gray = jnp.max(image, axis=-1)
    n_levels = effective_levels(gray.shape, opts.levels)  # capped silently here; estimate_defocus warns
    if n_levels == 1:  # the paper's single scale, exactly as before
        scales = _scale_map_jit(gray, jnp.asarray(opts.thresholds, jnp.float32), DEFAULT_SIGMA,
                                jnp.float32(opts.contrast_floor))
        probs = classify_edges(image, scales, model, opts.chunk)
        mask = scales > 0
        sparse = jnp.where(mask, sparse_map.point_sigma(probs, opts.sparse_value), 0.0)
        conf = jnp.where(mask, jnp.max(probs, -1), 0.0)
        if opts.seeds:
            sparse, conf, mask = _seed_sparse(image, model, sparse, conf, mask, key, opts)
        level = jnp.where(mask, 0, -1).astype(jnp.int32)
    else:
        sparse, conf, mask, probs, level, scales = _multiscale_sparse(image, model, key, opts, n_levels)
    filtered, x, guide, residual = _propagate(image, sparse, conf, mask, opts, pyramid.sigma_ceiling(n_levels, opts.pre_blur))
    return DefocusResult(x, sparse, conf, filtered, mask, scales, guide, probs, residual, level)


def _guidance(image, opts):
    return rolling_guidance._rolling_guidance(
        image, opts.rgf_sigma_s, opts.rgf_sigma_r, radius=rolling_guidance._resolve_radius(opts.rgf_sigma_s, None),
        iterations=opts.rgf_iterations, per_channel=opts.rgf_per_channel,
    )


def _filter_and_solve(values, conf, mask, guide, opts, lo, hi):
    """Probability-joint bilateral filter of sparse ``values`` then propagation (clip to [lo, hi])."""
    if opts.bilateral:
        filtered = bilateral._pjbf(
            values, mask, conf, guide, jnp.float32(opts.bf_sigma_s), jnp.float32(opts.bf_sigma_r),
            jnp.float32(opts.bf_sigma_c), radius=opts.bf_window // 2, range_channels=opts.range_channels,
            method="auto", order=1,
        )
    else:
        filtered = jnp.where(mask, values, 0.0)
    n = jnp.maximum(jnp.sum(mask), 1)
    x0 = jnp.full(mask.shape, jnp.sum(filtered) / n, jnp.float32)  # mean sparse value
    x, _, residual = propagation.propagate_arrays(
        filtered, mask, guide, x0, jnp.float32(opts.gamma), jnp.float32(matting._lambda(opts.eps, "code")),
        jnp.float32(opts.tol), maxiter=opts.maxiter, preconditioner=opts.preconditioner, solver="jax_cg",
    )
    if opts.clip:
        x = jnp.clip(x, lo, hi)
    return filtered, x, residual


def _propagate(image, sparse, conf, mask, opts, ceiling):
    guide = _guidance(image, opts)
    filtered, x, residual = _filter_and_solve(sparse, conf, mask, guide, opts, SIGMA_MIN, ceiling)
    if opts.median_iterations:
        x = weighted_median._weighted_median(
            x, guide, jnp.float32(opts.median_sigma_r), radius=opts.median_radius,
            iterations=opts.median_iterations, steps=weighted_median.STEPS, band=weighted_median.BAND,
        )
    return filtered, x, guide, residual


@partial(jax.jit, static_argnames=("opts",))
def estimate_core(image: jax.Array, model: DefocusModel, key: jax.Array, opts: EstimateOptions) -> DefocusResult:
    """The jit-compiled estimator for one (H, W, 3) float32 image in [0, 1] (no validation).

    Call this from your own jitted code; ``model.params`` are traced, ``model.config`` and
    ``opts`` static. ``opts.levels`` is capped silently to what the image size allows
    (:func:`effective_levels`; :func:`estimate_defocus` warns). Use :func:`estimate_defocus` for validated input and defaults.
    """
    return _estimate_impl(image, model, key, opts)


@partial(jax.jit, static_argnames=("opts",))
def estimate_batch_core(images: jax.Array, model: DefocusModel, key: jax.Array, opts: EstimateOptions) -> DefocusResult:
    """:func:`estimate_core` over a batch (B, H, W, 3) of same-size images (vmapped)."""
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(lambda im, k: _estimate_impl(im, model, k, opts))(images, keys)


def _warn_levels(shape, opts):
    n = effective_levels(shape, opts.levels)
    if n < opts.levels:
        warnings.warn(
            f"levels={opts.levels} is too many for a {shape[0]}x{shape[1]} image (every pyramid level must be at "
            f"least {pyramid.MIN_LEVEL_SIDE}x{pyramid.MIN_LEVEL_SIDE} px); using levels={n}", stacklevel=3)


def _resolve(model, options, overrides):
    if model is None:
        model = default_model()
    elif not isinstance(model, DefocusModel):
        raise TypeError(f"model must be a dhde DefocusModel (or None for the shipped one), got {type(model).__name__}")
    opts = options if options is not None else EstimateOptions()
    if overrides:
        bad = set(overrides) - {f.name for f in dataclasses.fields(EstimateOptions)}
        if bad:
            raise TypeError(f"unknown estimate_defocus options: {sorted(bad)}")
        opts = dataclasses.replace(opts, **overrides)
    return model, opts


_DEFAULT_MODEL: list = []


def default_model() -> DefocusModel:
    """The model shipped with dhde (loaded once per process)."""
    if not _DEFAULT_MODEL:
        from dhde.model.io import load_model

        _DEFAULT_MODEL.append(load_model())
    return _DEFAULT_MODEL[0]


def _pad_to(img: np.ndarray, multiple: int) -> np.ndarray:
    h, w = img.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return img


def _crop(res: DefocusResult, h: int, w: int) -> DefocusResult:
    return DefocusResult(*(x if x.ndim == 0 else x[:h, :w] for x in res))


def _no_edges(opts: EstimateOptions, why: str) -> str:
    return (f"no edges found in the image ({why}; options.contrast_floor={opts.contrast_floor:g}): defocus "
            "cannot be estimated; lower options.contrast_floor or the Canny thresholds (options.thresholds) "
            "if it has faint structure")


def estimate_defocus(image, model: DefocusModel | None = None, *, options: EstimateOptions | None = None,
                     size_multiple: int = 1, seed: int = 0, **overrides) -> DefocusResult:
    """Per-pixel defocus map of one photograph (the whole method of the paper).

    Args:
      image: a path or an array (see :func:`dhde.load_image`: float RGB in [0, 1] or integer
        images; grey and RGBA accepted); at least 27x27 pixels.
      model: a :class:`DefocusModel` (``dhde.load_model(dir)``, ``dhde.import_caffe_model(path)``,
        or a freshly trained one); None = the model shipped with dhde.
      options: :class:`EstimateOptions`; keyword ``overrides`` replace single fields, e.g.
        ``estimate_defocus(img, seeds=200, range_channels="first")``.
      size_multiple: replicate-pad H and W up to a multiple of this (results are cropped back),
        so that many image sizes share few compilations. 1 = exact size.
      seed: random seed of the optional seed points.

    Returns:
      :class:`DefocusResult`; ``.defocus`` is (H, W) float32 sigma in pixels.

    Raises:
      ValueError: unreadable or invalid image (see ``load_image``), or an image in which Canny
        finds no edge at all, at any pyramid level (nothing to estimate from): a flat image, or
        one whose strongest edge is below ``options.contrast_floor`` (e.g. flat grey with +-1/255
        noise).

    Warns:
      UserWarning: ``levels`` is more than the image size allows; fewer levels are used.
      UserWarning: ``options.seeds > 0`` but fewer seed points than asked could be placed (too
        few pixels at least ``seed_min_distance`` from every edge).
    """
    model, opts = _resolve(model, options, overrides)
    if int(size_multiple) < 1:
        raise ValueError(f"size_multiple must be >= 1, got {size_multiple}")
    img = load_image(image)
    if opts.contrast_floor > 0:  # cheap check first: a flat image compiles nothing
        top = max_gradient(img.max(axis=-1))
        if top < opts.contrast_floor:
            raise ValueError(_no_edges(opts, f"its strongest gradient {top:.3g} is below the contrast floor"))
    h, w = img.shape[:2]
    _warn_levels((h, w), opts)
    padded = _pad_to(img, int(size_multiple))
    res = estimate_core(jnp.asarray(padded), model, jax.random.key(seed), opts)
    if padded.shape[:2] != (h, w):
        res = _crop(res, h, w)
    if not bool(jnp.any(res.scales > 0)):
        raise ValueError(_no_edges(opts, "flat or nearly flat"))
    if opts.seeds:
        placed = int(jnp.sum(res.mask & (res.scales == 0)))
        if placed < opts.seeds:
            warnings.warn(f"options.seeds={opts.seeds} asked but {placed} seed points placed: only that many "
                          f"fit at least {opts.seed_min_distance} px from every edge", stacklevel=2)
    return res


def estimate_defocus_batch(images, model: DefocusModel | None = None, *, options: EstimateOptions | None = None,
                           seed: int = 0, **overrides) -> DefocusResult:
    """:func:`estimate_defocus` for a stack (B, H, W, 3) or a list of same-size images, in one call.

    Returns a :class:`DefocusResult` whose fields have a leading batch axis. Images without edges
    (or none above ``options.contrast_floor``) give a constant map and an all-zero ``scales``;
    check ``(scales > 0).any``.
    """
    model, opts = _resolve(model, options, overrides)
    if isinstance(images, (list, tuple)):
        arrs = [load_image(x) for x in images]
    else:
        a = np.asarray(images)
        if a.ndim != 4:
            raise ValueError(f"images must be (B, H, W, 3) or a list of images, got shape {a.shape}")
        arrs = [load_image(x) for x in a]
    if not arrs:
        raise ValueError("images is empty")
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1:
        raise ValueError(f"all images of a batch must have one size, got {sorted(shapes)}")
    _warn_levels(arrs[0].shape[:2], opts)
    return estimate_batch_core(jnp.asarray(np.stack(arrs)), model, jax.random.key(seed), opts)


# ----------------------------------------------------------------------------- blur probability

#: Default tau (px) of :func:`blur_probability`: see the README (chosen on the evaluation sets).
DEFAULT_BLUR_TAU = 1.0


def point_exceedance(probabilities, level, tau, n_levels: int, pre_blur: float = pyramid.DEFAULT_PRE_BLUR):
    """P(sigma > tau) at each point from its class probabilities.

    Label l of a point read at pyramid level k stands for the full-resolution sigma interval
    ``pyramid.label_edges(k)`` (the label sigma +- half a step, converted); the probability of
    the label is spread uniformly over it, so
    P(sigma > tau) = sum_l p_l clip((hi_l - tau) / (hi_l - lo_l), 0, 1).

    Args:
      probabilities: (..., 11) float class probabilities (rows summing to 1; zero rows give 0).
      level: (...) int pyramid level of each row (0..n_levels-1; negative rows give 0).
      tau: threshold in full-resolution px (float or traced scalar).
      n_levels: static number of levels; pre_blur: their pre-blur (level px).

    Returns:
      float32 (...) in [0, 1].
    """
    edges = [pyramid.label_edges(k, pre_blur) for k in range(n_levels)]
    lo = jnp.asarray(np.stack([e[0] for e in edges]), jnp.float32)
    hi = jnp.asarray(np.stack([e[1] for e in edges]), jnp.float32)
    k = jnp.clip(level, 0, n_levels - 1)
    frac = jnp.clip((hi[k] - tau) / (hi[k] - lo[k]), 0.0, 1.0)
    return jnp.where(level >= 0, jnp.sum(probabilities * frac, axis=-1), 0.0).astype(jnp.float32)


@partial(jax.jit, static_argnames=("opts", "n_levels"))
def _blur_probability(probabilities, level, confidence, mask, guidance, tau, *, opts, n_levels):
    p = jnp.where(mask, point_exceedance(probabilities, level, tau, n_levels, opts.pre_blur), 0.0)
    _, x, _ = _filter_and_solve(p, confidence, mask, guidance, opts, 0.0, 1.0)
    if not opts.clip:  # a probability map is always clipped to [0, 1]
        x = jnp.clip(x, 0.0, 1.0)
    return x


def blur_probability(result: DefocusResult, tau: float = DEFAULT_BLUR_TAU, *,
                     options: EstimateOptions | None = None) -> jax.Array:
    """Soft blur map: the probability that sigma > ``tau`` px, propagated like the sigma map.

    At every sparse point, P(sigma > tau) comes from the point's class probabilities
    (:func:`point_exceedance`, at the pyramid level the point took); that sparse map goes
    through the same probability-joint bilateral filter and matting-Laplacian propagation as
    the defocus map (same confidences, guidance and options) and is clipped to [0, 1].

    Args:
      result: a :class:`DefocusResult` of one image (from :func:`estimate_defocus`).
      tau: threshold in full-resolution pixels of sigma (> 0); default ``DEFAULT_BLUR_TAU``.
      options: the :class:`EstimateOptions` the result was made with (None = defaults).

    Returns:
      float32 (H, W) jax.Array in [0, 1] (1 = surely blurred more than ``tau``).
    """
    opts = options if options is not None else EstimateOptions()
    if not isinstance(opts, EstimateOptions):
        raise TypeError(f"options must be EstimateOptions, got {type(opts).__name__}")
    if not isinstance(result, DefocusResult):
        raise TypeError(f"result must be a DefocusResult, got {type(result).__name__}")
    if isinstance(tau, bool) or not isinstance(tau, (int, float, np.floating, np.integer)):
        raise TypeError(f"tau must be a number (px), got {type(tau).__name__}")
    if not (np.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a positive finite sigma in px, got {tau!r}")
    if result.defocus.ndim != 2:
        raise ValueError(f"result must be of one image ((H, W) maps), got defocus shape {result.defocus.shape}")
    if not bool(jnp.any(result.mask)):
        raise ValueError("the result has no sparse points (empty mask)")
    n_levels = effective_levels(result.defocus.shape, opts.levels)
    if int(jnp.max(result.level)) >= n_levels:
        raise ValueError(f"the result has points at pyramid level {int(jnp.max(result.level))} but options.levels "
                         f"gives {n_levels} level(s): pass the options the result was made with")
    return _blur_probability(result.probabilities, result.level, result.confidence, result.mask, result.guidance,
                             jnp.float32(tau), opts=opts, n_levels=n_levels)
