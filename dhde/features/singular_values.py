"""SVD feature f_S (paper 3.4): the largest singular values of the grey patch."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from dhde.features.normalize import log_l1_normalize


@partial(jax.jit, static_argnames=("n",))
def _sv_feature(p, n: int):
    s = jnp.linalg.svd(p, compute_uv=False)[:, :n]
    return log_l1_normalize(s)


def singular_value_feature(gray_patches, n: int) -> jax.Array:
    """(N, w, w) grey patches in [0, 1] -> (N, n) log1p + L1 normalised top-n singular values."""
    p = jnp.asarray(gray_patches, jnp.float32)
    if p.ndim != 3 or p.shape[1] != p.shape[2]:
        raise ValueError(f"expected (N, w, w) patches, got {p.shape}")
    if not 1 <= n <= p.shape[1]:
        raise ValueError(f"n must be in 1..{p.shape[1]}, got {n}")
    return _sv_feature(p, int(n))
