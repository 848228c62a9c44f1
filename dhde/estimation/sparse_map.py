"""Sparse defocus map from classifier output (paper 4.1-4.2) and random seed points (section 6).

* :func:`sparse_defocus_map` scatters per-patch class probabilities into the sparse map I_S (the
  sigma of the arg-max label), the confidence map I_C (the max probability) and the mask of
  sparse points.
* :func:`random_seed_points` picks extra points in large edge-free regions (paper section 6,
  Figure 14: "random addition of classification seed points in large homogeneous regions"); the
  caller classifies patches at them like edge patches, and :func:`add_seed_points` merges them
  with confidence 1/11 (the authors' code, where this is implemented but disabled).

All shapes are static: point lists have a fixed length with a validity mask.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dhde import checks
from dhde.labels import NUM_LABELS, label_to_sigma

#: Confidence given to seed points (the authors' code): 1 / NUM_LABELS, a uniform guess.
SEED_CONFIDENCE = 1.0 / NUM_LABELS
#: Default minimum Chebyshev distance (pixels) from a seed to the nearest sparse point: the
#: side of a large patch, so a seed's 27x27 patch and its neighbourhood hold no edge pixel.
MIN_DISTANCE = 27


def _arr(x):
    return checks.as_array(x, "input")


def _check_points(probabilities, coords, valid, shape, what: str):
    """Validates (N, 11) probabilities, (N, 2) int coords, (N,) bool valid against ``shape``."""
    probabilities, coords, valid = _arr(probabilities), _arr(coords), _arr(valid)
    if probabilities.ndim != 2 or probabilities.shape[1] != NUM_LABELS:
        raise ValueError(
            f"{what}probabilities must have shape (N, {NUM_LABELS}), got {tuple(probabilities.shape)}"
        )
    n = probabilities.shape[0]
    if not jnp.issubdtype(probabilities.dtype, jnp.floating):
        raise TypeError(f"{what}probabilities must be a float array, got dtype {probabilities.dtype}")
    if coords.shape != (n, 2) or not jnp.issubdtype(coords.dtype, jnp.integer):
        raise ValueError(
            f"{what}coords must be an integer array of shape ({n}, 2), got {coords.dtype} {tuple(coords.shape)}"
        )
    if valid.shape != (n,) or valid.dtype != jnp.bool_:
        raise ValueError(
            f"{what}valid must be a bool array of shape ({n},), got {valid.dtype} {tuple(valid.shape)}"
        )
    if checks.is_concrete(probabilities):
        p = np.asarray(probabilities, np.float32)
        if not np.all(np.isfinite(p)):
            raise ValueError(f"{what}probabilities contain NaN or infinite values")
        if p.size and (p.min() < 0 or p.max() > 1):
            raise ValueError(f"{what}probabilities must lie in [0, 1], got range [{p.min()}, {p.max()}]")
    if checks.is_concrete(coords) and checks.is_concrete(valid):
        c = np.asarray(coords)[np.asarray(valid)]
        h, w = shape
        if c.size and ((c < 0).any() or (c[:, 0] >= h).any() or (c[:, 1] >= w).any()):
            raise ValueError(f"valid {what}coords must lie inside the image of shape {shape}")
        if len(np.unique(c[:, 0].astype(np.int64) * w + c[:, 1])) != len(c):
            raise ValueError(f"valid {what}coords must be distinct (one point per pixel)")
    return jnp.asarray(probabilities, jnp.float32), jnp.asarray(coords, jnp.int32), jnp.asarray(valid)


#: How a point's sigma is read from its class probabilities.
VALUES = ("argmax", "mean")


def point_sigma(probabilities: jax.Array, value: str = "argmax") -> jax.Array:
    """Sigma (pixels) of each row of (..., 11) class probabilities.

    ``"argmax"`` (paper): the sigma of the most probable label, one of the 11 label sigmas.
    ``"mean"``: the expected sigma sum_l p_l sigma_l (continuous; less quantisation and less
    label noise, at the price of a pull towards the middle of the range when unsure).
    """
    if value == "argmax":
        return label_to_sigma(jnp.argmax(probabilities, axis=-1))
    if value == "mean":
        return probabilities @ label_to_sigma(jnp.arange(NUM_LABELS))
    raise ValueError(f"value must be one of {VALUES}, got {value!r}")


@partial(jax.jit, static_argnames=("shape", "value"))
def _sparse_map(probabilities, coords, valid, *, shape, value="argmax"):
    h, w = shape
    r, c = coords[:, 0], coords[:, 1]
    keep = valid & (r >= 0) & (r < h) & (c >= 0) & (c < w)
    r = jnp.where(keep, r, h)  # out of bounds: dropped by the scatter
    sigma = point_sigma(probabilities, value)
    conf = jnp.max(probabilities, axis=-1)
    sparse = jnp.zeros(shape, jnp.float32).at[r, c].set(sigma, mode="drop")
    confidence = jnp.zeros(shape, jnp.float32).at[r, c].set(conf, mode="drop")
    mask = jnp.zeros(shape, jnp.bool_).at[r, c].set(True, mode="drop")
    return sparse, confidence, mask


def sparse_defocus_map(probabilities, coords, valid, shape,
                       value: str = "argmax") -> tuple[jax.Array, jax.Array, jax.Array]:
    """Scatters classified patches into the sparse map I_S, the confidence I_C and the mask.

    Args:
      probabilities: (N, 11) float class probabilities in [0, 1] (softmax output), one row per
        patch; label l (0-based) means blur sigma 0.5 + 0.15 l pixels (``dhde.labels``).
      coords: (N, 2) integer [row, col] of each patch centre.
      valid: (N,) bool; False rows (padding of fixed-capacity point lists) are ignored.
      shape: (H, W) of the image (static).
      value: ``"argmax"`` (paper) or ``"mean"`` (expected sigma), see :func:`point_sigma`.

    Returns:
      sparse: (H, W) float32 sigma (pixels) at each valid point (the arg-max label's, or the
        expected sigma for ``value="mean"``), else 0.
      confidence: (H, W) float32 max probability at each valid point, else 0.
      mask: (H, W) bool, True at the valid points.

    Valid coordinates must be inside the image and distinct (checked on concrete input; under
    jax.jit out-of-range points are dropped and duplicates keep an unspecified one).
    """
    shape = checks.shape_pair(shape)
    probabilities, coords, valid = _check_points(probabilities, coords, valid, shape, "")
    return _sparse_map(probabilities, coords, valid, shape=shape, value=value)


@partial(jax.jit, static_argnames=("n_seeds", "min_distance"))
def _seed_points(key, mask, density, *, n_seeds, min_distance):
    h, w = mask.shape
    d = min_distance
    window = (2 * d + 1, 2 * d + 1)
    near = lax.reduce_window(mask, False, lax.bitwise_or, window, (1, 1), ((d, d), (d, d)))  # dilation
    candidate = ~near
    scores = jnp.where(candidate, jax.random.uniform(key, (h, w)), -1.0).ravel()
    best, index = lax.top_k(scores, n_seeds)  # top-k of iid uniforms: a uniform random subset
    valid = best >= 0.0
    if density is not None:
        allowed = jnp.floor(density * jnp.sum(candidate)).astype(jnp.int32)
        valid = valid & (jnp.arange(n_seeds) < allowed)
    coords = jnp.stack([index // w, index % w], axis=-1).astype(jnp.int32)
    return jnp.where(valid[:, None], coords, 0), valid


def random_seed_points(key, mask, n_seeds: int, *, min_distance: int = MIN_DISTANCE, density=None):
    """Random seed points in large edge-free regions (paper section 6, Figure 14).

    Candidates are the pixels whose Chebyshev distance to every sparse point is greater than
    ``min_distance`` (a max-pool dilation of ``mask``; pixels outside the image count as
    edge-free). Up to ``n_seeds`` of them are drawn uniformly without replacement.

    Args:
      key: a jax.random key.
      mask: (H, W) bool sparse-point (edge) mask.
      n_seeds: fixed length of the output (static int, 0 <= n_seeds <= H * W).
      min_distance: static int >= 0, in pixels; default 27 (a large patch side).
      density: optional seeds per candidate pixel (>= 0, traced): at most
        floor(density * number of candidates) points are valid. None: up to ``n_seeds``.

    Returns:
      coords: (n_seeds, 2) int32 [row, col]; (0, 0) in invalid rows.
      valid: (n_seeds,) bool; the valid rows come first. Fewer than ``n_seeds`` are valid when
        there are not enough candidates (or ``density`` limits them).

    Deterministic for a given key. Classify patches at the valid points like edge patches and
    merge them with :func:`add_seed_points`.
    """
    mask = _arr(mask)
    if mask.ndim != 2 or mask.dtype != jnp.bool_:
        raise ValueError(f"mask must be a 2-D bool array, got {mask.dtype} {tuple(mask.shape)}")
    for name, v in (("n_seeds", n_seeds), ("min_distance", min_distance)):
        checks.integer(v, name, lo=0)
    if n_seeds > mask.shape[0] * mask.shape[1]:
        raise ValueError(f"n_seeds ({n_seeds}) exceeds the number of pixels {mask.shape[0] * mask.shape[1]}")
    if density is not None:
        if checks.is_concrete(density):
            dv = np.asarray(density)
            if dv.shape != () or not np.isfinite(dv) or dv < 0:
                raise ValueError(f"density must be a finite scalar >= 0, got {density!r}")
        density = jnp.asarray(density, jnp.float32)
    return _seed_points(key, jnp.asarray(mask), density, n_seeds=int(n_seeds), min_distance=int(min_distance))


@partial(jax.jit, static_argnames=("value",))
def _add_seeds(sparse, confidence, mask, probabilities, coords, valid, seed_confidence, value="argmax"):
    s, _, m = _sparse_map(probabilities, coords, valid, shape=sparse.shape, value=value)
    new = m & ~mask
    return (
        jnp.where(new, s, sparse),
        jnp.where(new, seed_confidence, confidence),
        mask | new,
    )


def add_seed_points(
    sparse, confidence, mask, seed_probabilities, seed_coords, seed_valid, *, seed_confidence: float = SEED_CONFIDENCE,
    value: str = "argmax",
):
    """Merges classified seed points into the sparse maps (existing sparse points are kept).

    Args:
      sparse, confidence, mask: (H, W) float32, float32, bool from :func:`sparse_defocus_map`.
      seed_probabilities: (S, 11) class probabilities of the seed patches, in [0, 1].
      seed_coords: (S, 2) int [row, col]; seed_valid: (S,) bool (from :func:`random_seed_points`).
      seed_confidence: confidence I_C given to every seed, default 1/11 (the authors' code).
      value: a seed's sigma from its probabilities, as :func:`point_sigma` ("argmax" or "mean").

    Returns:
      (sparse, confidence, mask) with the seeds added: sigma of the arg-max label, confidence
      ``seed_confidence``; seeds falling on existing sparse points are ignored.
    """
    sparse, confidence, mask = _arr(sparse), _arr(confidence), _arr(mask)
    if sparse.ndim != 2 or confidence.shape != sparse.shape or mask.shape != sparse.shape:
        raise ValueError(
            f"sparse, confidence and mask must share one (H, W) shape, got "
            f"{tuple(sparse.shape)}, {tuple(confidence.shape)}, {tuple(mask.shape)}"
        )
    if mask.dtype != jnp.bool_:
        raise TypeError(f"mask must be a bool array, got dtype {mask.dtype}")
    shape = checks.shape_pair(sparse.shape)
    probabilities, coords, valid = _check_points(seed_probabilities, seed_coords, seed_valid, shape, "seed_")
    if checks.is_concrete(seed_confidence) and not 0.0 <= float(seed_confidence) <= 1.0:
        raise ValueError(f"seed_confidence must lie in [0, 1], got {seed_confidence!r}")
    return _add_seeds(
        jnp.asarray(sparse, jnp.float32),
        jnp.asarray(confidence, jnp.float32),
        jnp.asarray(mask),
        probabilities,
        coords,
        valid,
        jnp.asarray(seed_confidence, jnp.float32),
        value=value,
    )
