"""A trivial blur score for context: local energy of the Laplacian (no learning, no edges).

``laplacian_baseline`` = ``-log(eps + mean_{15x15}(Laplacian(V)^2))`` with V the HSV value
channel: sharp texture has strong second derivatives, so the inverted log energy is larger where
the image is more blurred. It is a relative score, not sigma; to read it as sigma use
:func:`dhde.evaluation.metrics.rescale_map`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from dhde import checks
from dhde.io.image import value_channel

#: Side of the averaging window in pixels.
DEFAULT_WINDOW = 15
#: Added to the local energy before the log (V in [0, 1]); flat JPEG areas would otherwise
#: dominate the min-max range with -log(0).
DEFAULT_EPS = 1e-6


def _box_sum_1d(x: jax.Array, window: int, axis: int) -> jax.Array:
    r = window // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = jnp.pad(x, pad, mode="symmetric")
    n = x.shape[axis]
    out = jnp.zeros_like(x)
    for i in range(window):
        out = out + jax.lax.slice_in_dim(xp, i, i + n, axis=axis)
    return out


@partial(jax.jit, static_argnames=("window",))
def _laplacian_baseline(image: jax.Array, eps: jax.Array, window: int) -> jax.Array:
    v = value_channel(image)
    vp = jnp.pad(v, 1, mode="symmetric")
    lap = vp[:-2, 1:-1] + vp[2:, 1:-1] + vp[1:-1, :-2] + vp[1:-1, 2:] - 4.0 * v
    energy = _box_sum_1d(_box_sum_1d(lap * lap, window, 0), window, 1) / float(window * window)
    return -jnp.log(energy + eps)


def laplacian_baseline(image, window: int = DEFAULT_WINDOW, eps: float = DEFAULT_EPS) -> jax.Array:
    """Inverted log local energy of the Laplacian of the value channel: higher = more blurred.

    Laplacian = 4-neighbour stencil [[0, 1, 0], [1, -4, 1], [0, 1, 0]]; its square is averaged over
    a ``window`` x ``window`` box; both use symmetric borders (edge pixel repeated, as
    ``scipy.ndimage`` mode ``"reflect"``).

    Args:
      image: (H, W, 3) RGB float in [0, 1] (anything :func:`dhde.io.image.load_image` accepts as an
        array is fine), H, W >= 3.
      window: odd box side in pixels (default 15).
      eps: > 0, added to the energy before the log.

    Returns:
      float32 (H, W), unitless score in about [-log(16 + eps), -log(eps)].
    """
    arr = np.asarray(checks.as_array(image, "image", "laplacian_baseline"))
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"laplacian_baseline expects an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.shape[0] < 3 or arr.shape[1] < 3:
        raise ValueError(f"image is {arr.shape[0]}x{arr.shape[1]}; at least 3x3 is needed")
    window = checks.integer(window, "window", lo=1, odd=True, where="laplacian_baseline")
    checks.scalar(eps, "eps", lo=0.0, lo_open=True, where="laplacian_baseline")
    if not np.issubdtype(arr.dtype, np.floating):
        raise checks.InputTypeError(
            f"laplacian_baseline expects a float image in [0, 1], got dtype {arr.dtype}; use dhde.load_image")
    if not np.all(np.isfinite(arr)):
        raise ValueError("image contains NaN or infinite values")
    if int(window) // 2 >= min(arr.shape[:2]):
        raise ValueError(f"window {window} is too large for a {arr.shape[0]}x{arr.shape[1]} image")
    return _laplacian_baseline(jnp.asarray(arr, jnp.float32), jnp.float32(eps), int(window))
