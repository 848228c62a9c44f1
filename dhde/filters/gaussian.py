"""Gaussian kernels and separable Gaussian blur with replicate borders."""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np


def gaussian_kernel1d(sigma: float, radius: int | None = None) -> np.ndarray:
    """A normalised 1-D Gaussian, float64, length 2 * radius + 1.

    Args:
      sigma: standard deviation in pixels, > 0.
      radius: half-width; default ceil(4 sigma), at least 1.
    """
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a positive finite number, got {sigma}")
    if radius is None:
        radius = max(1, int(math.ceil(4.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


@partial(jax.jit, static_argnames=("axis",))
def convolve1d_replicate(x: jax.Array, kernel: jax.Array, axis: int) -> jax.Array:
    """Correlates ``x`` with a 1-D odd-length ``kernel`` along ``axis``, replicate borders.

    For symmetric kernels correlation equals convolution. ``kernel`` is traced, so kernels of
    the same length share one compilation.
    """
    k = kernel.shape[0]
    r = k // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = jnp.pad(x, pad, mode="edge")
    n = x.shape[axis]
    out = jnp.zeros_like(x)
    for i in range(k):  # k is small; XLA fuses the shifted sum
        out = out + kernel[i] * jax.lax.slice_in_dim(xp, i, i + n, axis=axis)
    return out


def gaussian_blur(image: jax.Array, sigma: float, radius: int | None = None) -> jax.Array:
    """Separable Gaussian blur of the first two axes of (H, W) or (H, W, C), replicate borders.

    Args:
      image: float array (H, W) or (H, W, C).
      sigma: standard deviation in pixels (> 0).
      radius: kernel half-width, default ceil(4 sigma); the authors' training blur uses a
        27x27 kernel, i.e. radius 13.

    Returns:
      float32 array of the same shape.
    """
    image = jnp.asarray(image, jnp.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"gaussian_blur expects (H, W) or (H, W, C), got shape {image.shape}")
    k = jnp.asarray(gaussian_kernel1d(sigma, radius), jnp.float32)
    return convolve1d_replicate(convolve1d_replicate(image, k, axis=0), k, axis=1)
