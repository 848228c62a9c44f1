"""From the sparse map to the full one (paper 4.2-4.3), as the estimator runs it: the rolling-guidance
image I_G, the probability-joint bilateral filter I_B and the matting-Laplacian propagation I_F,
with the options of :class:`dhde.estimation.options.EstimateOptions`. Jit-safe (``opts`` a static argument or a pytree with traced numbers, see ``EstimateOptions``)."""

from __future__ import annotations

import jax.numpy as jnp

from dhde.estimation.options import EstimateOptions
from dhde.filters.bilateral import probability_joint_bilateral_filter
from dhde.filters.rolling_guidance import rolling_guidance_filter
from dhde.filters.weighted_median import joint_weighted_median
from dhde.labels import SIGMA_MIN
from dhde.ordering import after
from dhde.propagation import matting
from dhde.propagation import solver as propagation


def guidance(image, opts: EstimateOptions):
    """I_G: (H, W, 3) float32 rolling-guidance-filtered ``image`` (H, W, 3) float32 in [0, 1]."""
    return rolling_guidance_filter(image, opts.rgf_sigma_s, opts.rgf_sigma_r, opts.rgf_iterations,
                                   per_channel=opts.rgf_per_channel)


def filter_and_solve(values, conf, mask, guide, opts: EstimateOptions, lo, hi):
    """(H, W) maps, Probability-joint bilateral filter of sparse ``values`` then propagation (clip to [lo, hi])."""
    if opts.bilateral:
        filtered = probability_joint_bilateral_filter(
            values, mask, conf, guide, sigma_s=jnp.float32(opts.bf_sigma_s), sigma_r=jnp.float32(opts.bf_sigma_r),
            sigma_c=jnp.float32(opts.bf_sigma_c), window=opts.bf_window, range_channels=opts.range_channels)
    else:
        filtered = jnp.where(mask, values, 0.0)
    n = jnp.maximum(jnp.sum(mask), 1)
    x0 = jnp.full(mask.shape, jnp.sum(filtered) / n, jnp.float32)  # mean sparse value
    # The propagation's setup reads only the guide and the mask: without this tie XLA may run it
    # alongside the bilateral filter, and both sets of temporaries then count in the peak.
    lam = after(jnp.float32(matting.regularizer(opts.eps, "code")), filtered)
    x, _, residual = propagation.propagate_arrays(
        filtered, mask, guide, x0, jnp.float32(opts.gamma), lam,
        jnp.float32(opts.tol), maxiter=opts.maxiter, preconditioner=opts.preconditioner, solver="jax_cg",
    )
    if opts.clip:
        x = jnp.clip(x, lo, hi)
    return filtered, x, residual


def dense_map(image, sparse, conf, mask, opts: EstimateOptions, ceiling):
    """(filtered I_B, full map I_F, guidance I_G, relative residual) from the sparse map ``sparse``,
    its confidences ``conf`` and ``mask`` (H, W); I_F clipped to [0.5, ``ceiling``] px if ``opts.clip``."""
    guide = guidance(image, opts)
    filtered, x, residual = filter_and_solve(sparse, conf, mask, guide, opts, SIGMA_MIN, ceiling)
    if opts.median_iterations:
        x = joint_weighted_median(x, guide, opts.median_radius, jnp.float32(opts.median_sigma_r),
                                  opts.median_iterations)
    return filtered, x, guide, residual
