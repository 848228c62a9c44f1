"""The soft blur map P(sigma > tau), propagated like the sigma map (beyond the paper)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from dhde import checks
from dhde.estimation import pyramid
from dhde.estimation.dense_map import filter_and_solve
from dhde.estimation.options import DefocusResult, EstimateOptions, effective_levels

#: Default threshold of :func:`blur_probability`, full-resolution px of sigma.
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


@partial(jax.jit, static_argnames=("n_levels",))  # opts: a pytree, its numbers traced
def _blur_probability(probabilities, level, confidence, mask, guidance, tau, *, opts, n_levels):
    p = jnp.where(mask, point_exceedance(probabilities, level, tau, n_levels, opts.pre_blur), 0.0)
    _, x, _ = filter_and_solve(p, confidence, mask, guidance, opts, 0.0, 1.0)
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
    tau = checks.scalar(tau, "tau (px)", lo=0, lo_open=True)
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
