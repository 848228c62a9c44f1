"""The normalisation shared by the three hand-crafted features: log(1 + x), then L1."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def log_l1_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
    """Maps x -> log(1 + x) and divides by the sum along ``axis`` (paper Eqs. 1, 2, 4).

    Args:
      x: non-negative float array (..., n).
      axis: the feature axis.

    Returns:
      float32 array of the same shape; each vector sums to 1, or is all zeros when its input
      was all zeros (a flat patch), never NaN.
    """
    y = jnp.log1p(jnp.asarray(x, jnp.float32))
    s = jnp.sum(y, axis=axis, keepdims=True)
    return jnp.where(s > 0, y / jnp.where(s > 0, s, 1.0), 0.0)
