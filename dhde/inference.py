"""Public inference API: a photograph in, a per-pixel defocus map (sigma, pixels) out.

``estimate_defocus(image)`` runs the whole method in one jit-compiled function:

    value channel -> Canny x2 -> scale map                       (paper 3.1, dhde.edges)
    every edge patch -> features -> classifier, in chunks        (3.2-3.6, 4.1, dhde.classify)
    sparse map I_S + confidence I_C (+ optional random seeds)    (4.1, section 6, dhde.sparse_map)
    rolling guidance filter -> I_G                               (4.2, dhde.rolling_guidance)
    probability-joint bilateral filter -> I_B                    (4.2 Eq. 6, dhde.bilateral)
    matting Laplacian + multigrid-preconditioned CG -> I_F       (4.3, dhde.matting/propagation)
    optional joint weighted median post-filter (authors' code)  (dhde.weighted_median)

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

from dhde import bilateral, matting, propagation, rolling_guidance, sparse_map, weighted_median
from dhde.classify import classify_edges
from dhde.edges import CONTRAST_FLOOR, DEFAULT_SIGMA, ESTIMATION_THRESHOLDS, _scale_map_jit, max_gradient
from dhde.features.pipeline import scale_features
from dhde.image import load_image
from dhde.labels import SIGMA_MAX, SIGMA_MIN
from dhde.model import DefocusModel
from dhde.patches import LARGE, extract_patches


@dataclasses.dataclass(frozen=True)
class EstimateOptions:
    """Every knob of the estimator (static: a change recompiles). Defaults follow the paper.

    Attributes:
      thresholds: Canny threshold pairs (fractions of the max gradient), weak then strong.
      contrast_floor: an image whose largest smoothed gradient magnitude (value channel,
        intensity per pixel) is below this has no edges ("no edges" error) instead of a map
        built from its noise; default ``dhde.edges.CONTRAST_FLOOR`` (0.02), 0 = off.
      sparse_value: a point's sigma from its class probabilities: "argmax" (paper) or "mean"
        (expected sigma), see ``dhde.sparse_map.point_sigma``.
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

    def __post_init__(self):
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
      ``clip=False``).
    sparse: float32 sparse map I_S (sigma of the arg-max label at edge pixels, 0 elsewhere).
    confidence: float32 I_C, max class probability at edge pixels (0 elsewhere).
    filtered: float32 I_B, the sparse map after the probability-joint bilateral filter.
    mask: bool, pixels carrying a sparse value (edge pixels, plus seeds if enabled).
    scales: int32 scale map: 0 none, 1 weak edge (27x27 patch), 2 strong edge (15x15 patch).
    guidance: float32 (H, W, 3) rolling-guidance-filtered image I_G in [0, 1].
    probabilities: float32 (H, W, 11) class probabilities at edge pixels (0 elsewhere).
    residual: float32 scalar, true relative residual of the propagation solve.
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


def _seed_sparse(image, model, sparse, conf, mask, key, opts):
    coords, valid = sparse_map._seed_points(
        key, mask, None, n_seeds=opts.seeds, min_distance=opts.seed_min_distance
    )
    f = scale_features(extract_patches(image, coords, LARGE + 2), False, model.config)
    probs = model.probabilities(f.hand, f.cnn)
    return sparse_map._add_seeds(sparse, conf, mask, probs, coords, valid, jnp.float32(sparse_map.SEED_CONFIDENCE),
                                 value=opts.sparse_value)


def _estimate_impl(image, model: DefocusModel, key, opts: EstimateOptions) -> DefocusResult:
    gray = jnp.max(image, axis=-1)
    scales = _scale_map_jit(gray, jnp.asarray(opts.thresholds, jnp.float32), DEFAULT_SIGMA,
                            jnp.float32(opts.contrast_floor))
    probs = classify_edges(image, scales, model, opts.chunk)
    mask = scales > 0
    sparse = jnp.where(mask, sparse_map.point_sigma(probs, opts.sparse_value), 0.0)
    conf = jnp.where(mask, jnp.max(probs, -1), 0.0)
    if opts.seeds:
        sparse, conf, mask = _seed_sparse(image, model, sparse, conf, mask, key, opts)
    guide = rolling_guidance._rolling_guidance(
        image, opts.rgf_sigma_s, opts.rgf_sigma_r, radius=rolling_guidance._resolve_radius(opts.rgf_sigma_s, None),
        iterations=opts.rgf_iterations, per_channel=opts.rgf_per_channel,
    )
    if opts.bilateral:
        filtered = bilateral._pjbf(
            sparse, mask, conf, guide, jnp.float32(opts.bf_sigma_s), jnp.float32(opts.bf_sigma_r),
            jnp.float32(opts.bf_sigma_c), radius=opts.bf_window // 2, range_channels=opts.range_channels,
            method="auto", order=1,
        )
    else:
        filtered = jnp.where(mask, sparse, 0.0)
    n = jnp.maximum(jnp.sum(mask), 1)
    x0 = jnp.full(gray.shape, jnp.sum(filtered) / n, jnp.float32)  # mean sparse value
    x, _, residual = propagation.propagate_arrays(
        filtered, mask, guide, x0, jnp.float32(opts.gamma), jnp.float32(matting._lambda(opts.eps, "code")),
        jnp.float32(opts.tol), maxiter=opts.maxiter, preconditioner=opts.preconditioner, solver="jax_cg",
    )
    if opts.clip:
        x = jnp.clip(x, SIGMA_MIN, SIGMA_MAX)
    if opts.median_iterations:
        x = weighted_median._weighted_median(
            x, guide, jnp.float32(opts.median_sigma_r), radius=opts.median_radius,
            iterations=opts.median_iterations, steps=weighted_median.STEPS, band=weighted_median.BAND,
        )
    return DefocusResult(x, sparse, conf, filtered, mask, scales, guide, probs, residual)


@partial(jax.jit, static_argnames=("opts",))
def estimate_core(image: jax.Array, model: DefocusModel, key: jax.Array, opts: EstimateOptions) -> DefocusResult:
    """The jit-compiled estimator for one (H, W, 3) float32 image in [0, 1] (no validation).

    Call this from your own jitted code; ``model.params`` are traced, ``model.config`` and
    ``opts`` static. Use :func:`estimate_defocus` for validated input and defaults.
    """
    return _estimate_impl(image, model, key, opts)


@partial(jax.jit, static_argnames=("opts",))
def estimate_batch_core(images: jax.Array, model: DefocusModel, key: jax.Array, opts: EstimateOptions) -> DefocusResult:
    """:func:`estimate_core` over a batch (B, H, W, 3) of same-size images (vmapped)."""
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(lambda im, k: _estimate_impl(im, model, k, opts))(images, keys)


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
        from dhde.model_io import load_model

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
        finds no edge at all (nothing to estimate from): a flat image, or one whose strongest
        edge is below ``options.contrast_floor`` (e.g. flat grey with +-1/255 noise).

    Warns:
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
    return estimate_batch_core(jnp.asarray(np.stack(arrs)), model, jax.random.key(seed), opts)
