"""The 11 blur levels (paper Eq. 10): labels <-> Gaussian sigma, in one place."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

NUM_LABELS = 11
SIGMA_MIN = 0.5
SIGMA_STEP = 0.15
#: sigma_l = 0.5 + 0.15 l for l = 0..10 (0-based labels), in pixels: 0.5 ... 2.0.
SIGMAS = SIGMA_MIN + SIGMA_STEP * np.arange(NUM_LABELS, dtype=np.float32)
SIGMA_MAX = float(SIGMAS[-1])
#: The paper's classification tolerance in sigma units.
TOLERANCE = 0.15


def label_to_sigma(label: jax.Array) -> jax.Array:
    """0-based integer labels (any shape) -> float32 sigma in pixels."""
    return jnp.asarray(SIGMAS)[jnp.asarray(label, jnp.int32)]


def sigma_to_label(sigma: jax.Array) -> jax.Array:
    """Sigma in pixels (any shape, float) -> the nearest 0-based label (int32, same shape), clipped to 0..10."""
    s = jnp.asarray(sigma, jnp.float32)
    return jnp.clip(jnp.round((s - SIGMA_MIN) / SIGMA_STEP), 0, NUM_LABELS - 1).astype(jnp.int32)
