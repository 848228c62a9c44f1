"""Multi-scale (pyramid) defocus estimation: beyond the classifier's 2-pixel label range.

The classifier knows 11 blur levels, sigma 0.5 ... 2.0 px (``dhde.labels``). Real photographs
are often defocused far more; there every edge reads 2.0 (saturated), and strongly blurred
regions often have no Canny edge at all. Downscaling the image by 2^k divides every blur by
2^k, so at level k the same classifier measures full-resolution blurs up to about 2 * 2^k px.

Level k (k = 0 is the input itself): the image is blurred with a Gaussian of std ``s_k``
(full-resolution pixels) and averaged over 2^k x 2^k blocks (replicate padding at the
bottom/right up to a multiple of 2^k). Both are known blurs; in level-k pixels their total
std is the *pre-blur*

    sigma_pre^2 = (s_k^2 + (4^k - 1) / 12) / 4^k              (block average: (f^2 - 1) / 12)

and ``s_k`` is chosen so that ``sigma_pre`` is the same at every level (``pre_blur``, default
0.5 level-k px). An edge blurred by sigma_full (full-resolution px) then has, at level k,

    sigma_k^2 = sigma_full^2 / 4^k + sigma_pre^2,   i.e.   sigma_full^2 = 4^k (sigma_k^2 - sigma_pre^2)

(:func:`to_full_sigma`; verified on synthetic edges in ``tests/test_pyramid.py``).

Everything here is a pure function of static shapes; the estimator that uses it is
``dhde.estimation.inference`` (``EstimateOptions(levels=...)``).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from dhde.filters.gaussian import convolve1d_replicate, gaussian_kernel1d
from dhde.labels import NUM_LABELS, SIGMA_MAX, SIGMA_MIN, SIGMAS
from dhde.filters.patches import LARGE

#: Default pre-blur of every coarse level, in that level's pixels (Gaussian std).
DEFAULT_PRE_BLUR = 0.5
#: The smallest possible pre-blur: the 2^k x 2^k block average alone (k -> inf: 1 / sqrt(12)).
MIN_PRE_BLUR = 1.0 / math.sqrt(12.0)
#: The largest reading (level px) a level is trusted with by the "range" rule of
#: :func:`merge_levels`: below the top labels, where the classifier starts to saturate.
RELIABLE_READING = 1.7
#: A level must be at least this many pixels on each side (one large patch).
MIN_LEVEL_SIDE = LARGE


def _check_level(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"level must be an int >= 0, got {k!r}")
    return int(k)


def _check_pre_blur(pre_blur) -> float:
    if isinstance(pre_blur, bool) or not isinstance(pre_blur, (int, float, np.floating, np.integer)):
        raise TypeError(f"pre_blur must be a number, got {type(pre_blur).__name__}")
    pre_blur = float(pre_blur)
    if not (math.isfinite(pre_blur) and pre_blur > MIN_PRE_BLUR):
        raise ValueError(
            f"pre_blur must be a finite number > {MIN_PRE_BLUR:.4f} (the block average's own blur), got {pre_blur!r}"
        )
    return pre_blur


def gaussian_std(k: int, pre_blur: float = DEFAULT_PRE_BLUR) -> float:
    """Std ``s_k`` (full-resolution px) of the Gaussian applied before the 2^k block average,
    such that the total pre-blur of level k is ``pre_blur`` level-k px. 0.0 for k = 0."""
    k, pre_blur = _check_level(k), _check_pre_blur(pre_blur)
    if k == 0:
        return 0.0
    f = 2**k
    return math.sqrt((pre_blur * f) ** 2 - (f * f - 1) / 12.0)


def level_shape(shape, k: int) -> tuple[int, int]:
    """(H_k, W_k) = (ceil(H / 2^k), ceil(W / 2^k)) of level k of an (H, W) image."""
    k = _check_level(k)
    h, w = (int(s) for s in shape[:2])
    f = 2**k
    return -(-h // f), -(-w // f)


def max_levels(shape) -> int:
    """The most levels an (H, W) image supports: every level at least 27x27 (one large patch)."""
    h, w = (int(s) for s in shape[:2])
    if min(h, w) < MIN_LEVEL_SIDE:
        return 1
    n = 1
    while min(level_shape((h, w), n)) >= MIN_LEVEL_SIDE:
        n += 1
    return n


def sigma_ceiling(levels: int, pre_blur: float = DEFAULT_PRE_BLUR) -> float:
    """The largest full-resolution sigma (px) ``levels`` levels can report: the top label
    (2.0) at the coarsest level, converted. 2.0 for one level, about 2 * 2^(levels - 1) else."""
    levels = _check_level(levels)
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if levels == 1:
        return SIGMA_MAX
    return float(to_full_sigma(np.float64(SIGMA_MAX), levels - 1, pre_blur))


def to_full_sigma(sigma_k, k: int, pre_blur: float = DEFAULT_PRE_BLUR):
    """Full-resolution sigma of a blur read at level k: ``2^k sqrt(max(sigma_k^2 - pre^2, 0))``.

    Args:
      sigma_k: array (any shape) of sigma in level-k pixels (>= 0).
      k: level (static int >= 0); k = 0 returns ``sigma_k`` unchanged.
      pre_blur: the level's pre-blur (level-k px).

    Returns:
      array like ``sigma_k`` (same float dtype), sigma in full-resolution pixels, >= 0. Readings
      at or below the pre-blur (a sharp edge at a coarse level) give 0.
    """
    k = _check_level(k)
    if k == 0:
        return sigma_k
    pre_blur = _check_pre_blur(pre_blur)
    xp = np if isinstance(sigma_k, (np.ndarray, np.generic, float, int)) else jnp
    return (2.0**k) * xp.sqrt(xp.maximum(sigma_k * sigma_k - pre_blur * pre_blur, 0.0))


def to_level_sigma(sigma_full, k: int, pre_blur: float = DEFAULT_PRE_BLUR):
    """Inverse of :func:`to_full_sigma`: ``sqrt(sigma_full^2 / 4^k + pre^2)`` (k = 0: unchanged)."""
    k = _check_level(k)
    if k == 0:
        return sigma_full
    pre_blur = _check_pre_blur(pre_blur)
    xp = np if isinstance(sigma_full, (np.ndarray, np.generic, float, int)) else jnp
    return xp.sqrt(sigma_full * sigma_full / 4.0**k + pre_blur * pre_blur)


@partial(jax.jit, static_argnames=("k", "pre_blur"))
def _downscale(image, *, k, pre_blur):
    f = 2**k
    h, w = image.shape[:2]
    hp, wp = -(-h // f) * f, -(-w // f) * f
    pad = [(0, hp - h), (0, wp - w)] + [(0, 0)] * (image.ndim - 2)
    x = jnp.pad(image, pad, mode="edge")
    s = gaussian_std(k, pre_blur)
    if s > 0:
        g = jnp.asarray(gaussian_kernel1d(s), jnp.float32)
        x = convolve1d_replicate(convolve1d_replicate(x, g, axis=0), g, axis=1)
    x = x.reshape(hp // f, f, wp // f, f, *image.shape[2:])
    return jnp.mean(x, axis=(1, 3))


def downscale(image, k: int, pre_blur: float = DEFAULT_PRE_BLUR) -> jax.Array:
    """Level k of the pyramid: Gaussian blur ``gaussian_std(k, pre_blur)`` then 2^k x 2^k means.

    Args:
      image: float (H, W) or (H, W, C) array (any range; images in [0, 1]).
      k: level, static int >= 0 (0 returns the image as float32).
      pre_blur: total known blur of the level, in level-k px (> 1/sqrt(12)).

    Returns:
      float32 (ceil(H / 2^k), ceil(W / 2^k)[, C]); level pixel (i, j) averages full-resolution
      rows 2^k i ... 2^k i + 2^k - 1 (and columns alike), replicate-padded past the border.
    """
    k, pre_blur = _check_level(k), _check_pre_blur(pre_blur)
    image = jnp.asarray(image)
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise TypeError(f"image must be a float array, got dtype {image.dtype}")
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {tuple(image.shape)}")
    return _downscale(image.astype(jnp.float32), k=k, pre_blur=pre_blur)


# ----------------------------------------------------------------------------- merging levels


def _best_neighbour(avail, conf, attrs):
    """3x3 neighbourhood pick at one level: for every pixel, the attributes of the available
    pixel of highest confidence among it and its 8 neighbours (ties: first in raster order)."""
    h, w = conf.shape
    score = jnp.pad(jnp.where(avail, conf, -1.0), 1, constant_values=-1.0)
    shifts = [(di, dj) for di in range(3) for dj in range(3)]
    stack = jnp.stack([score[di:di + h, dj:dj + w] for di, dj in shifts])
    best = jnp.argmax(stack, axis=0)
    found = jnp.max(stack, axis=0) >= 0
    out = []
    for a in attrs:
        pad = [(1, 1), (1, 1)] + [(0, 0)] * (a.ndim - 2)
        ap = jnp.pad(a, pad)
        st = jnp.stack([ap[di:di + h, dj:dj + w] for di, dj in shifts])
        idx = best.reshape((1, h, w) + (1,) * (a.ndim - 2))
        out.append(jnp.take_along_axis(st, idx, axis=0)[0])
    return found, out


def _upsample(x, k, shape):
    f = 2**k
    h, w = shape
    return jnp.repeat(jnp.repeat(x, f, axis=0), f, axis=1)[:h, :w]


def _representatives(mask_k, k, shape):
    """Full-resolution mask of one pixel per level-k point: the block's pixel (2^k i + 2^(k-1),
    2^k j + 2^(k-1)), clipped into the image."""
    f = 2**k
    h, w = shape
    hk, wk = mask_k.shape
    rows = jnp.minimum(jnp.arange(hk) * f + f // 2, h - 1)
    cols = jnp.minimum(jnp.arange(wk) * f + f // 2, w - 1)
    return jnp.zeros(shape, jnp.bool_).at[rows[:, None], cols[None, :]].max(mask_k)


def coverage(covered, k_next_shape, margin: int = 1):
    """Level-(k+1) pixels whose 2x2 parent block at level k, widened by ``margin`` level-k px,
    holds a covered (unsaturated) level-k estimate. covered: (H_k, W_k) bool."""
    h, w = covered.shape
    hn, wn = k_next_shape
    d = 2 * margin + 1
    dil = jax.lax.reduce_window(covered, False, jax.lax.bitwise_or, (d, d), (1, 1), ((margin, margin),) * 2)
    dil = jnp.pad(dil, ((0, 2 * hn - h), (0, 2 * wn - w)))
    return jnp.any(dil.reshape(hn, 2, wn, 2), axis=(1, 3))


class LevelPoints:
    """One level's classified points (a plain container; all (H_k, W_k)[, 11])."""

    def __init__(self, k, mask, probs, conf):
        self.k, self.mask, self.probs, self.conf = k, mask, probs, conf


def merge_levels(levels: list, shape, *, pre_blur: float, value: str, rule: str = "confidence"):
    """Merges per-level sparse points into one full-resolution sparse map.

    Args:
      levels: list of :class:`LevelPoints`, level 0 first (full resolution) then k = 1, 2, ...
      shape: (H, W) of level 0.
      pre_blur: the coarse levels' pre-blur (level px).
      value: ``"argmax"`` or ``"mean"`` (see ``dhde.estimation.sparse_map.point_sigma``).
      rule: ``"confidence"``: among the unsaturated estimates of a point, the most confident;
        ``"finest"``: the finest unsaturated one; ``"range"``: coarse to fine, start from the
        coarsest estimate and step to the next finer available level while the current estimate
        lies within that level's reliable range (``RELIABLE_READING`` at that level, converted),
        i.e. a fine level is trusted only where the coarser one says the blur is small enough
        for it (saturation is not needed as a signal).

    A point is a level-0 point or the representative pixel of a coarse point. At a point, level
    k offers the estimate of the most confident level-k point in the 3x3 neighbourhood of the
    point's level-k pixel (level 0: the point itself). An estimate is *saturated* when its
    arg-max is the top label (sigma >= 2.0 at that level: only a lower bound), or, at k >= 1,
    the bottom label (a coarse level cannot resolve small blurs). Unsaturated estimates win
    (by ``rule``); else a saturated-high one (the coarsest, the largest lower bound); else the
    finest.

    Returns:
      (sparse float32 full-res sigma px (0 off the points), confidence float32, mask bool,
      probabilities float32 (H, W, 11) of the chosen estimate, level int32 (-1 off the points)).
    """
    from dhde.estimation.sparse_map import point_sigma

    n = len(levels)
    top, bottom = NUM_LABELS - 1, 0
    scores, values, confs, probs_l = [], [], [], []
    points = levels[0].mask
    for lp in levels[1:]:
        points = points | _representatives(lp.mask, lp.k, shape)
    for lp in levels:
        k = lp.k
        label = jnp.argmax(lp.probs, axis=-1)
        sig = point_sigma(lp.probs, value)
        if k == 0:
            avail, p, c, lab, s = lp.mask, lp.probs, lp.conf, label, sig
        else:
            found, (p, c, lab, s) = _best_neighbour(lp.mask, lp.conf, [lp.probs, lp.conf, label, sig])
            avail = _upsample(found, k, shape)
            p, c, lab, s = (_upsample(a, k, shape) for a in (p, c, lab, s))
            s = to_full_sigma(s, k, pre_blur)
        avail = avail & points
        high = lab == top
        low = (lab == bottom) & (k > 0)
        ok = ~high & ~low
        pref = c if rule == "confidence" else jnp.full_like(c, (n - k) / (n + 1.0))
        score = jnp.where(ok, 2.0 + pref, jnp.where(high, 1.0 + (k + 1.0) / (n + 1.0), (n - k) / (n + 1.0)))
        scores.append(jnp.where(avail, score, -1.0))
        values.append(s)
        confs.append(c)
        probs_l.append(p)
    scores = jnp.stack(scores)
    mask = jnp.max(scores, axis=0) >= 0
    if rule == "range":
        avail = scores >= 0
        best = jnp.zeros(shape, jnp.int32)
        for k in range(n):  # the coarsest available level
            best = jnp.where(avail[k], k, best)
        current = jnp.take_along_axis(jnp.stack(values), best[None], axis=0)[0]
        for k in range(n - 2, -1, -1):  # step finer while the estimate is within level k's range
            limit = RELIABLE_READING if k == 0 else float(to_full_sigma(np.float64(RELIABLE_READING), k, pre_blur))
            step = avail[k] & (best > k) & (current <= limit)
            best = jnp.where(step, k, best)
            current = jnp.where(step, values[k], current)
    else:
        best = jnp.argmax(scores, axis=0)
    pick = lambda xs: jnp.take_along_axis(jnp.stack(xs), best[None], axis=0)[0]  # noqa: E731
    sparse = jnp.where(mask, jnp.maximum(pick(values), SIGMA_MIN), 0.0).astype(jnp.float32)
    conf = jnp.where(mask, pick(confs), 0.0).astype(jnp.float32)
    probs = jnp.take_along_axis(jnp.stack(probs_l), best[None, ..., None], axis=0)[0]
    probs = jnp.where(mask[..., None], probs, 0.0).astype(jnp.float32)
    level = jnp.where(mask, best, -1).astype(jnp.int32)
    return sparse, conf, mask, probs, level


def label_edges(k: int, pre_blur: float = DEFAULT_PRE_BLUR) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution sigma interval (lo, hi) that each of the 11 labels stands for at level k:
    the label sigma +- half a label step (the bottom label from 0), converted. float64 (11,) each."""
    lo = np.maximum(SIGMAS.astype(np.float64) - 0.075, 0.0)
    lo[0] = 0.0
    hi = SIGMAS.astype(np.float64) + 0.075
    return np.asarray(to_full_sigma(lo, k, pre_blur)), np.asarray(to_full_sigma(hi, k, pre_blur))
