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

import ctypes
import ctypes.util
import dataclasses
import threading
import warnings
from collections import OrderedDict
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from dhde.estimation import pyramid, sparse_map
from dhde.estimation.classify import classify_edges
from dhde.estimation.dense_map import dense_map
from dhde.estimation.options import DefocusResult, EstimateOptions, effective_levels, output_ceiling
from dhde.features.pipeline import scale_features
from dhde.filters.edges import DEFAULT_SIGMA, max_gradient, peak_gradient, scale_map, scale_map_absolute
from dhde.filters.patches import LARGE, extract_patches
from dhde.io.image import load_image
from dhde.labels import NUM_LABELS
from dhde.model.network import DefocusModel

__all__ = ["DefocusResult", "EstimateOptions", "default_model", "effective_levels", "estimate_batch_core",
           "estimate_core", "estimate_defocus", "estimate_defocus_batch", "output_ceiling"]


def _seed_sparse(image, model, sparse, conf, mask, key, opts):
    coords, valid = sparse_map.random_seed_points(key, mask, opts.seeds, min_distance=opts.seed_min_distance)
    f = scale_features(extract_patches(image, coords, LARGE + 2), False, model.config)
    probs = model.probabilities(f.hand, f.cnn)
    return sparse_map.add_seed_points(sparse, conf, mask, probs, coords, valid, value=opts.sparse_value)


def _seed_level(image_k, model, probs, conf, mask, key, n_seeds, opts):
    """Random seed points at one pyramid level: (probs, conf, mask) with the seeds added."""
    coords, valid = sparse_map.random_seed_points(key, mask, n_seeds, min_distance=opts.seed_min_distance)
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
    reference = peak_gradient(gray0, DEFAULT_SIGMA) if opts.level_thresholds == "absolute" else None
    keys = jax.random.split(key, n_levels)
    points, covered, scales0 = [], None, None
    for k in range(n_levels):
        img_k = image if k == 0 else pyramid.downscale(image, k, opts.pre_blur)
        gray = gray0 if k == 0 else jnp.max(img_k, axis=-1)
        if k == 0 or reference is None:
            scales = scale_map(gray, opts.thresholds, DEFAULT_SIGMA, jnp.float32(opts.contrast_floor))
        else:
            scales = scale_map_absolute(gray, thr, DEFAULT_SIGMA, reference)
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
        scales = scale_map(gray, opts.thresholds, DEFAULT_SIGMA, jnp.float32(opts.contrast_floor))
        probs = classify_edges(image, scales, model, opts.chunk)
        mask = scales > 0
        sparse = jnp.where(mask, sparse_map.point_sigma(probs, opts.sparse_value), 0.0)
        conf = jnp.where(mask, jnp.max(probs, -1), 0.0)
        if opts.seeds:
            sparse, conf, mask = _seed_sparse(image, model, sparse, conf, mask, key, opts)
        level = jnp.where(mask, 0, -1).astype(jnp.int32)
    else:
        sparse, conf, mask, probs, level, scales = _multiscale_sparse(image, model, key, opts, n_levels)
    filtered, x, guide, residual = dense_map(image, sparse, conf, mask, opts, pyramid.sigma_ceiling(n_levels, opts.pre_blur))
    return DefocusResult(x, sparse, conf, filtered, mask, scales, guide, probs, residual, level)


@jax.jit
def estimate_core(image: jax.Array, model: DefocusModel, key: jax.Array, opts: EstimateOptions) -> DefocusResult:
    """The jit-compiled estimator for one (H, W, 3) float32 image in [0, 1] (no validation).

    Call this from your own jitted code; ``model.params`` are traced, ``model.config`` static;
    ``opts`` is a pytree whose numbers (``options.TRACED_FIELDS``: gamma, eps, tol, the filter
    sigmas, the contrast floor) are traced, so changing them does not recompile, and whose
    other fields are static. ``opts.levels`` is capped silently to what the image size allows
    (:func:`effective_levels`; :func:`estimate_defocus` warns). Use :func:`estimate_defocus` for validated input and defaults.
    """
    return _estimate_impl(image, model, key, opts)


@jax.jit
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


#: Executables of :func:`estimate_core` compiled by :func:`estimate_defocus`, most recent last.
_COMPILED: OrderedDict = OrderedDict()
#: How many image sizes / option sets :func:`estimate_defocus` keeps compiled at once.
COMPILED_CACHE_SIZE = 8
_COMPILED_LOCK = threading.Lock()


def _release_heap() -> None:
    """Hands the heap that XLA's compiler freed back to the OS (glibc ``malloc_trim``; nothing
    on other C libraries). Compiling ``estimate_core`` leaves ~0.6 GB of freed but resident heap,
    which would otherwise add to the peak memory of every later call (12 MP: 4.8 -> 4.0 GiB)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _leaf_signature(x) -> tuple:
    """What of a pytree leaf a compiled program depends on: shape, dtype (or Python type), weak type."""
    dtype = getattr(x, "dtype", None)
    return np.shape(x), str(dtype) if dtype is not None else type(x).__name__, bool(getattr(x, "weak_type", False))


def _compiled_core(image: jax.Array, model: DefocusModel, key: jax.Array, opts: EstimateOptions):
    """The compiled :func:`estimate_core` for these arguments' shapes and static parts: compiled
    ahead of time on first use (then :func:`_release_heap`), and kept for the
    ``COMPILED_CACHE_SIZE`` most recent signatures."""
    leaves, tree = jax.tree_util.tree_flatten((model, opts))
    sig = (image.shape, str(image.dtype), tree, tuple(_leaf_signature(x) for x in leaves))
    with _COMPILED_LOCK:
        exe = _COMPILED.get(sig)
        if exe is not None:
            _COMPILED.move_to_end(sig)
            return exe
    exe = estimate_core.lower(image, model, key, opts).compile()
    _release_heap()
    with _COMPILED_LOCK:
        _COMPILED[sig] = exe
        while len(_COMPILED) > COMPILED_CACHE_SIZE:
            _COMPILED.popitem(last=False)
    return exe


def _run_core(image: jax.Array, model: DefocusModel, key: jax.Array, opts: EstimateOptions) -> DefocusResult:
    """:func:`estimate_core` through the ahead-of-time cache of :func:`_compiled_core`."""
    return _compiled_core(image, model, key, opts)(image, model, key, opts)


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
    img = load_image(image, copy=False)  # only read (a float32 input is not duplicated)
    if opts.contrast_floor > 0:  # cheap check first: a flat image compiles nothing
        top = max_gradient(img.max(axis=-1))
        if top < opts.contrast_floor:
            raise ValueError(_no_edges(opts, f"its strongest gradient {top:.3g} is below the contrast floor"))
    h, w = img.shape[:2]
    _warn_levels((h, w), opts)
    padded = _pad_to(img, int(size_multiple))
    res = _run_core(jnp.asarray(padded), model, jax.random.key(seed), opts)
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
