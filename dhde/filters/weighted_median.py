"""Joint weighted median filter: the post-filter of the authors' code after propagation (4.3).

The paper does not mention it; the released MATLAB code runs it on the full defocus map with
radius 5, range sigma 0.25 on the guidance I_G, 3 iterations. Each iteration replaces x(p) by
the weighted median of x over the (2 radius + 1)^2 window around p,

    x'(p) = min { x(q) : sum_{q' in N(p), x(q') <= x(q)} w(p, q') >= W(p) / 2 },
    w(p, q) = exp(-||g(p) - g(q)||^2 / (2 sigma_r^2)),  W(p) = sum_{q in N(p)} w(p, q),

where N(p) holds only pixels inside the image (no padding values take part). It keeps edges of
the guidance sharp and removes isolated outliers that survive the propagation.

Computed by bisection on the value: ``steps`` rounds of "weighted count of neighbours <= t"
bracket the median to (max x - min x) / 2**steps, then the smallest neighbour value above the
lower bracket is returned, so every output value is a value of the input window. Work is
O(steps * (2 radius + 1)^2) per pixel; rows are processed in bands so that memory stays
O(band * W * (2 radius + 1)^2) whatever the image height.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dhde import checks

#: The authors' code: JointWMF(defocus, I_G, 5, 0.25 (on [0, 1]), ..., 3 iterations).
RADIUS = 5
SIGMA_R = 0.25
ITERATIONS = 3
STEPS = 10
BAND = 64


def _band_median(xp, vp, gp, row0, lo0, hi0, *, radius, band, width, sigma_r, steps):
    """Weighted median of rows [row0, row0 + band) from padded arrays (pad = radius)."""
    size = 2 * radius + 1
    xs = lax.dynamic_slice_in_dim(xp, row0, band + 2 * radius, axis=0)
    vs = lax.dynamic_slice_in_dim(vp, row0, band + 2 * radius, axis=0)
    gs = lax.dynamic_slice_in_dim(gp, row0, band + 2 * radius, axis=0)
    gc = gs[radius : radius + band, radius : radius + width]
    inv = -0.5 / (sigma_r * sigma_r)
    offs = [(dy, dx) for dy in range(size) for dx in range(size)]
    # Window on the LAST axis: XLA's CPU reductions over a minor axis are ~6x faster.
    vals = jnp.stack([xs[dy : dy + band, dx : dx + width] for dy, dx in offs], axis=-1)  # (band, W, K)
    wts = jnp.stack(
        [
            jnp.exp(inv * jnp.sum((gs[dy : dy + band, dx : dx + width] - gc) ** 2, axis=-1))
            * vs[dy : dy + band, dx : dx + width]
            for dy, dx in offs
        ],
        axis=-1,
    )
    half = 0.5 * jnp.sum(wts, axis=-1)

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        below = jnp.sum(jnp.where(vals <= mid[..., None], wts, 0.0), axis=-1)
        ok = below >= half
        return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

    lo = jnp.full((band, width), lo0, jnp.float32)
    hi = jnp.full((band, width), hi0, jnp.float32)
    lo, hi = lax.fori_loop(0, steps, body, (lo, hi))
    above = jnp.where((vals > lo[..., None]) & (wts > 0), vals, jnp.inf)
    return jnp.min(above, axis=-1)


@partial(jax.jit, static_argnames=("radius", "iterations", "steps", "band"))
def _weighted_median(x, guide, sigma_r, *, radius, iterations, steps, band):
    h, w = x.shape
    band = min(band, h)
    nb = -(-h // band)
    hp = nb * band
    # Rows past the image are padded invalid; everything outside the image has weight 0.
    valid = jnp.pad(jnp.ones((h, w), jnp.float32), ((radius, radius + hp - h), (radius, radius)))
    gp = jnp.pad(guide, ((radius, radius + hp - h), (radius, radius), (0, 0)), mode="edge")

    def one(_, x):
        lo0 = jnp.min(x) - 1e-3 * (1.0 + jnp.abs(jnp.min(x)))
        hi0 = jnp.max(x)
        xp = jnp.pad(x, ((radius, radius + hp - h), (radius, radius)), mode="edge")
        f = partial(_band_median, xp, valid, gp, lo0=lo0, hi0=hi0, radius=radius, band=band,
                    width=w, sigma_r=sigma_r, steps=steps)
        out = lax.map(lambda i: f(i * band), jnp.arange(nb))
        return out.reshape(hp, w)[:h]

    return lax.fori_loop(0, iterations, one, x)


def joint_weighted_median(
    x,
    guide,
    radius: int = RADIUS,
    sigma_r: float = SIGMA_R,
    iterations: int = ITERATIONS,
    *,
    steps: int = STEPS,
    band: int = BAND,
) -> jax.Array:
    """Joint weighted median filter of a map ``x`` guided by an image (authors' post-filter).

    Args:
      x: (H, W) float map (e.g. the propagated defocus map, sigma in pixels).
      guide: (H, W) or (H, W, C) float guidance (e.g. I_G in [0, 1]); same H, W as ``x``.
      radius: window radius in pixels (window (2 radius + 1)^2); authors' code: 5.
      sigma_r: range sigma of the guidance weights, in guidance units; authors' code: 0.25.
      iterations: number of passes (0 returns ``x``); authors' code: 3.
      steps: bisection rounds; the result is exact up to (max x - min x) / 2**steps.
      band: rows processed together, at most H (memory ~ band * W * (2 radius + 1)^2 * 8 bytes).
    Returns:
      float32 (H, W); every value is a value of ``x`` from the pixel's window.
    """
    x = jnp.asarray(x) if hasattr(x, "shape") else np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (H, W), got shape {tuple(x.shape)}")
    g = guide if hasattr(guide, "shape") else np.asarray(guide)
    if g.ndim == 2:
        g = g[..., None]
    g = checks.real_array(g, "guide", channels=True)
    xf = checks.real_array(x[..., None], "x", channels=True)[..., 0]
    if g.shape[:2] != xf.shape:
        raise ValueError(f"guide has spatial shape {tuple(g.shape[:2])} but x has {tuple(xf.shape)}")
    checks.positive_scalar(sigma_r, "sigma_r")
    for name, v, least in (("radius", radius, 0), ("iterations", iterations, 0), ("steps", steps, 1),
                           ("band", band, 1)):
        checks.integer(v, name, lo=least)
    if iterations == 0 or radius == 0:
        return xf
    return _weighted_median(xf, g, jnp.float32(sigma_r), radius=int(radius), iterations=int(iterations),
                            steps=int(steps), band=int(band))
