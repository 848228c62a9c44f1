"""Defocus blur magnification (paper 5.4): amplify the blur the defocus map reports.

A pixel blurred by a Gaussian of std ``sigma`` becomes one blurred by ``k sigma`` after an
extra Gaussian of std ``sigma sqrt(k^2 - 1)`` (Gaussian variances add). The extra blur varies
per pixel, so it is applied as a layered, edge-aware blur:

1. the extra sigma ``e(x)`` is quantised to ``num_levels`` levels ``e_0 = 0 < ... < e_{L-1} =
   max e``; each pixel gets hat weights ``m_j(x)`` on its two neighbouring levels, linear in
   *variance* (``e^2``), so the blended kernel has exactly the variance ``e(x)^2``;
2. each level is a normalised convolution ``B_j = G_{e_j} * (m_j I) / G_{e_j} * m_j``: only
   pixels of that blur level contribute, so a sharp foreground is not smeared into a blurred
   background and a blurred background does not bleed over the sharp foreground;
3. ``out = sum_j m_j B_j``.

Blurs are done in the DCT domain (half-sample symmetric borders, see ``_spectral``), so the
level sigmas are traced values and one compilation serves every map and factor of a shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from dhde.applications import _spectral
from dhde import checks
from dhde.labels import SIGMAS

_EPS = 1e-6


@dataclass(frozen=True)
class MagnifyParams:
    """Blur-magnification parameters (``conf/magnify.yaml``; the defaults of
    :func:`magnify_blur` and of ``experiments/magnify.py``).

    Attributes:
      factor: blur magnification k >= 1 (the command's default; :func:`magnify_blur` needs it).
      num_levels: quantised extra-blur levels (>= 2).
      in_focus_sigma: blur in pixels that in-focus pixels already have, left as is: 0.5, the
        smallest label sigma (``dhde.labels.SIGMAS[0]``), the floor of every estimated map.
    """

    factor: float = 2.0
    num_levels: int = 10
    in_focus_sigma: float = float(SIGMAS[0])


def hat_weights(v: jax.Array, knots: jax.Array, j: jax.Array) -> jax.Array:
    """Weight of knot ``j`` in the piecewise-linear interpolation of ``v`` on increasing ``knots``.

    Values outside the knot range get the end knot's weight 1; repeated knots are safe.
    """
    n = knots.shape[0]
    if n == 1:
        return jnp.ones_like(v)
    idx = jnp.clip(jnp.searchsorted(knots, v, side="right") - 1, 0, n - 2)
    lo, hi = knots[idx], knots[idx + 1]
    t = jnp.clip((v - lo) / jnp.maximum(hi - lo, 1e-12), 0.0, 1.0)
    return jnp.where(idx == j, 1.0 - t, 0.0) + jnp.where(idx + 1 == j, t, 0.0)


@partial(jax.jit, static_argnames=("num_levels",))
def _magnify_impl(
    image: jax.Array,
    defocus: jax.Array,
    factor: jax.Array,
    in_focus_sigma: jax.Array,
    num_levels: int,
) -> jax.Array:
    image, defocus = jnp.asarray(image), jnp.asarray(defocus)
    var = jnp.maximum(defocus**2 - in_focus_sigma**2, 0.0)
    extra_var = var * (factor**2 - 1.0)  # (H, W)
    e_max = jnp.sqrt(jnp.max(extra_var))
    levels = jnp.linspace(0.0, 1.0, num_levels, dtype=jnp.float32) * e_max
    knots = levels**2

    chw = jnp.moveaxis(image, -1, 0)  # (3, H, W): transforms run over the last two axes

    def level(acc, j):
        m = hat_weights(extra_var, knots, j)
        blurred = _spectral.blur(jnp.concatenate([chw * m, m[None]], axis=0), levels[j])
        b = jnp.clip(blurred[:3] / jnp.maximum(blurred[3], _EPS), 0.0, 1.0)
        return acc + m * b, None

    out, _ = jax.lax.scan(level, jnp.zeros_like(chw), jnp.arange(num_levels))
    return jnp.moveaxis(jnp.clip(out, 0.0, 1.0), 0, -1)


def magnify_blur(
    image,
    defocus,
    factor: float,
    *,
    num_levels: int = MagnifyParams.num_levels,
    in_focus_sigma: float = MagnifyParams.in_focus_sigma,
) -> jax.Array:
    """Amplifies the defocus blur of an image by ``factor`` (paper 5.4, blur magnification).

    Each pixel with defocus ``sigma`` (Gaussian std) is blurred further so that its total blur
    is ``factor * sigma``: an extra Gaussian of std ``sigma sqrt(factor^2 - 1)``, applied as a
    layered edge-aware blur (see the module docstring), borders half-sample symmetric.

    Args:
      image: float (H, W, 3) RGB in [0, 1].
      defocus: float (H, W) defocus map, Gaussian sigma in pixels, >= 0, finite.
      factor: blur magnification k >= 1 (1 returns the image). Reducing blur (k < 1) is
        deconvolution: use :func:`dhde.applications.all_in_focus` instead.
      num_levels: number of quantised extra-blur levels (>= 2); more is closer to a per-pixel
        blur and costs linearly more.
      in_focus_sigma: blur that in-focus pixels already have, in pixels, >= 0. Only the defocus
        beyond it is magnified: total variance ``s0^2 + k^2 max(sigma^2 - s0^2, 0)``, so pixels
        at ``sigma <= s0`` stay untouched. Default 0.5, the smallest label of
        dhde.labels.SIGMAS (estimated maps never go below it); 0 sends every pixel to
        ``k sigma`` (e.g. for a true sigma map).

    Returns:
      float32 jax.Array (H, W, 3) in [0, 1].

    Raises:
      TypeError: non-array inputs, non-float image, non-numeric factor.
      ValueError: wrong ranks or shapes, NaN/inf, negative sigma, image outside [0, 1],
        factor <= 0 or 0 < factor < 1, num_levels < 2.
    """
    fn = "magnify_blur"
    image = checks.image01(image, fn)
    defocus = checks.sigma_map(defocus, fn, shape=image.shape[:2])
    factor = checks.scalar(factor, "factor", where=fn, lo=0.0, lo_open=True)
    if factor < 1.0:
        raise ValueError(
            f"{fn}: factor must be >= 1 (got {factor}); magnification cannot reduce blur. "
            "To remove blur use dhde.applications.all_in_focus (non-blind deconvolution)."
        )
    num_levels = checks.integer(num_levels, "num_levels", where=fn, lo=2)
    in_focus_sigma = checks.scalar(in_focus_sigma, "in_focus_sigma", where=fn, lo=0.0)
    return _magnify_impl(
        jnp.asarray(image),
        jnp.asarray(defocus),
        jnp.float32(factor),
        jnp.float32(in_focus_sigma),
        num_levels,
    )
