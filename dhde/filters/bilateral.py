"""Probability-joint bilateral filter of the sparse defocus map (paper Eq. 6, section 4.2).

At every sparse point x (mask True):

    B(x) = sum_p w(x, p) I_S(p) / sum_p w(x, p),
    w(x, p) = G_s(x, p) G_r(I_G(x), I_G(p)) G_c(1, I_C(p)),
    G_s = exp(-|x - p|^2 / (2 sigma_s^2)),  G_r = exp(-||I_G(x) - I_G(p)||^2 / (2 sigma_r^2)),
    G_c = exp(-(1 - I_C(p))^2 / (2 sigma_c^2)),

where p runs over the sparse points (mask True) of the window x + [-r, r]^2 (27x27 by default);
pixels outside the image contribute nothing (zero padding). B is 0 off the mask.

Two exact evaluations:

* ``"direct"``: accumulation over the (2r+1)^2 window offsets (fori_loop over window rows, the
  columns unrolled); exact for any sigma.
* the range-kernel expansion, used by ``"auto"`` when it is exact to float32 rounding: with
  a = (I_G - c) / sigma_r (c = per-channel mid-range of I_G over the sparse points),
  G_r(x, p) = e(x) e(p) exp(a(x).a(p)), e = exp(-||a||^2 / 2), and the factor e(x) cancels in B.
  exp(t) is replaced by its Taylor polynomial of degree K (``expansion_order``), which makes the
  filter a sum of separable Gaussian convolutions of the products a(p)^alpha (|alpha| <= K); the
  truncation error is bounded by T^(K+1) / (K+1)! e^(2T) relative, T = max |a(x).a(p)|, and
  ``"auto"`` takes this path only when that bound is below 2^-25 (about float32 rounding), at run
  time via lax.cond, otherwise the direct loop. For the paper's sigma_r = 100 on guidance in
  [0, 1], T <= 7.5e-5 and the bound is ~1e-13. (Under jax.vmap lax.cond evaluates both branches.)
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from dhde import checks

#: Parameters of paper section 5.3 / the authors' code.
SIGMA_S = 100.0
SIGMA_R = 100.0
SIGMA_C = 1.0
WINDOW = 27
#: Relative truncation error the expansion must stay below to be used by method="auto".
EXPANSION_TOLERANCE = 2.0**-25


def _monomials(channels: int, order: int) -> list[tuple[tuple[int, ...], float]]:
    """Multi-indices alpha (as channel tuples) with |alpha| <= order and their 1/alpha!."""
    out = []
    for k in range(order + 1):
        for combo in itertools.combinations_with_replacement(range(channels), k):
            counts = [combo.count(c) for c in range(channels)]
            out.append((combo, 1.0 / float(np.prod([math.factorial(n) for n in counts]))))
    return out


def _gauss_sum_zero_pad(x: jax.Array, kernel: jax.Array, axis: int) -> jax.Array:
    """Correlates (M, H, W) ``x`` with odd ``kernel`` along ``axis``, zero padding."""
    r = kernel.shape[0] // 2
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = jnp.pad(x, pad)
    out = jnp.zeros_like(x)
    for i in range(kernel.shape[0]):
        out = out + kernel[i] * lax.slice_in_dim(xp, i, i + n, axis=axis)
    return out


def _expansion(value, weight, a, ks, radius: int, order: int):
    """num, den of Eq. 6 via the degree-``order`` expansion of exp(a(x).a(p)); see module doc."""
    terms = _monomials(a.shape[0], order)
    feats = []
    for combo, _ in terms:
        p = weight
        for c in combo:
            p = p * a[c]
        feats.append(p * value)
        feats.append(p)
    d = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    kern = jnp.exp(-ks * d * d)
    # The lax.map boundary materialises the products and the first (row) pass: fused into the
    # second (column) pass they would be recomputed for each of its taps (measured 4x slower).
    rows = lax.map(lambda plane: _gauss_sum_zero_pad(plane[None], kern, 1)[0], jnp.stack(feats))
    conv = _gauss_sum_zero_pad(rows, kern, 2)
    num = jnp.zeros(value.shape, jnp.float32)
    den = jnp.zeros(value.shape, jnp.float32)
    for i, (combo, inv_fact) in enumerate(terms):
        q = jnp.full(value.shape, inv_fact, jnp.float32)
        for c in combo:
            q = q * a[c]
        num = num + q * conv[2 * i]
        den = den + q * conv[2 * i + 1]
    return num, den


def _direct(value, mask_f, log_conf, a, ks, radius: int):
    """num, den of Eq. 6 by accumulation over the window offsets (exact for any sigma).

    ``a`` is the guidance already divided by sigma_r * sqrt(2), so the range weight is
    exp(-||a(x) - a(p)||^2).
    """
    h, w = value.shape
    pad2 = ((radius, radius), (radius, radius))
    vp = jnp.pad(value * mask_f, pad2)
    mp = jnp.pad(mask_f, pad2)
    lp = jnp.pad(log_conf, pad2)
    ap = [jnp.pad(a[c], pad2) for c in range(a.shape[0])]

    vp = lax.complex(vp, jnp.ones_like(vp))  # value + 1j: see below

    def row(dy, acc):
        rows = [lax.dynamic_slice_in_dim(x, dy, h, axis=0) for x in (vp, mp, lp, *ap)]
        sy = ks * jnp.asarray((dy - radius) ** 2, jnp.float32)
        for dx in range(2 * radius + 1):
            v_, m_, l_, *a_ = (x[:, dx : dx + w] for x in rows)
            d2 = sum(((a[c] - a_[c]) ** 2 for c in range(1, len(a_))), (a[0] - a_[0]) ** 2)
            wgt = m_ * jnp.exp(l_ - d2 - (sy + ks * float((dx - radius) ** 2)))
            # num + 1j den in one complex accumulator: wgt (v + 1j) = wgt v + 1j wgt, the same
            # sums (to float32 rounding, 4e-7 on a sigma map), but ``wgt`` has a single reader
            # and is fused into it. With two real sums XLA materialised all 27 weight planes of
            # a row: 40 planes of temporaries, reserved even when lax.cond takes the expansion
            # (now 20), and the loop is 2x faster.
            acc = acc + wgt * v_
        return acc

    acc = lax.fori_loop(0, 2 * radius + 1, row, jnp.zeros((h, w), jnp.complex64))
    return jnp.real(acc), jnp.imag(acc)


@partial(jax.jit, static_argnames=("radius", "range_channels", "method", "order"))
def _pjbf(sparse, mask, confidence, guidance, sigma_s, sigma_r, sigma_c, *, radius, range_channels, method,
          order):
    g = guidance[..., :1] if range_channels == "first" else guidance
    g = jnp.transpose(g, (2, 0, 1))  # (C, H, W)
    mask_f = mask.astype(jnp.float32)
    value = jnp.where(mask, sparse, 0.0)
    log_conf = -((1.0 - confidence) ** 2) / (2.0 * sigma_c * sigma_c)
    ks = 0.5 / (sigma_s * sigma_s)
    # Centre the guidance on its mid-range over the sparse points (only they meet in Eq. 6).
    any_point = jnp.any(mask)
    hi = jnp.max(jnp.where(mask, g, -jnp.inf), axis=(1, 2))
    lo = jnp.min(jnp.where(mask, g, jnp.inf), axis=(1, 2))
    centre = jnp.where(any_point, 0.5 * (hi + lo), 0.0)
    half = jnp.where(any_point, 0.5 * (hi - lo), 0.0)

    def direct(_):
        a = (g - centre[:, None, None]) / (sigma_r * jnp.sqrt(2.0))
        return _direct(value, mask_f, log_conf, a, ks, radius)

    def expansion(_):
        a = (g - centre[:, None, None]) / sigma_r
        weight = mask_f * jnp.exp(log_conf - 0.5 * jnp.sum(a * a, axis=0))
        return _expansion(value, weight, a, ks, radius, order)

    if method == "direct":
        num, den = direct(None)
    elif method == "expansion":  # private: unconditional expansion, for tests
        num, den = expansion(None)
    else:
        t = jnp.sum(half * half) / (sigma_r * sigma_r)
        bound = t ** (order + 1) / math.factorial(order + 1) * jnp.exp(2.0 * t)
        num, den = lax.cond(bound <= EXPANSION_TOLERANCE, expansion, direct, None)
    filtered = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), value)
    return jnp.where(mask, filtered, 0.0)


def probability_joint_bilateral_filter(
    sparse,
    mask,
    confidence,
    guidance,
    *,
    sigma_s: float = SIGMA_S,
    sigma_r: float = SIGMA_R,
    sigma_c: float = SIGMA_C,
    window: int = WINDOW,
    range_channels: str = "rgb",
    method: str = "auto",
    expansion_order: int = 1,
) -> jax.Array:
    """Probability-joint bilateral filter B of the sparse defocus map (paper Eq. 6), I_B.

    Args:
      sparse: (H, W) float sparse defocus map I_S, blur sigma in pixels at the sparse points
        (values off the mask are ignored but must be finite).
      mask: (H, W) bool, True at the sparse points (the filter's support and output positions;
        not inferred from ``sparse != 0``).
      confidence: (H, W) float classification confidence I_C in [0, 1] (max probability).
      guidance: (H, W, C) float guidance image I_G (the rolling-guidance-filtered RGB in [0, 1]).
      sigma_s: spatial standard deviation in pixels (> 0), default 100. Traced.
      sigma_r: range standard deviation in guidance units (> 0), default 100. Traced.
      sigma_c: confidence standard deviation (> 0), default 1. Traced.
      window: odd window side in pixels (static), default 27 (radius 13).
      range_channels: "rgb" (default): range distance over all C channels of I_G (the paper's
        Frobenius norm); "first": only channel 0 (the authors' code).
      method: "auto" (default): the exact-to-float32 separable expansion when its error bound
        allows (see module docstring), else the direct window loop; "direct": always the loop.
      expansion_order: degree K of the expansion (static int, 1..4), default 1: with guidance in
        [0, 1] and "rgb" it is exact (bound < 2^-25) for sigma_r >= ~55; K = 2 for sigma_r >= ~12
        at ~3.5x the cost (both far cheaper than the direct loop, ~10x / ~3x on 640x480).

    Returns:
      (H, W) float32 filtered sparse map I_B, in sigma units at the mask, 0 elsewhere. Where all
      weights of a point underflow to 0 (only for tiny sigma_c or sigma_r) it keeps I_S.
    """
    sparse = checks.real_array(sparse, "sparse", ndim=2)
    confidence = checks.real_array(confidence, "confidence", ndim=2)
    guidance = checks.real_array(guidance, "guidance", ndim=3)
    if not hasattr(mask, "shape"):
        mask = np.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"mask must be a boolean array, got dtype {mask.dtype}")
    shape = tuple(sparse.shape)
    for name, arr in (("mask", mask), ("confidence", confidence)):
        if tuple(arr.shape) != shape:
            raise ValueError(f"{name} shape {tuple(arr.shape)} differs from sparse shape {shape}")
    if tuple(guidance.shape[:2]) != shape or guidance.shape[2] < 1:
        raise ValueError(f"guidance must have shape {shape + (3,)} (H, W, C), got {tuple(guidance.shape)}")
    if checks.is_concrete(confidence):
        c = np.asarray(confidence)
        if c.size and (c.min() < 0 or c.max() > 1):
            raise ValueError(f"confidence must lie in [0, 1], got range [{c.min()}, {c.max()}]")
    for name, val in (("sigma_s", sigma_s), ("sigma_r", sigma_r), ("sigma_c", sigma_c)):
        checks.positive_scalar(val, name)
    window = checks.integer(window, "window", lo=1, odd=True)
    checks.choice(range_channels, "range_channels", ("rgb", "first"))
    checks.choice(method, "method", ("auto", "direct"))
    if expansion_order not in (1, 2, 3, 4):
        raise ValueError(f"expansion_order must be 1, 2, 3 or 4, got {expansion_order!r}")
    return _pjbf(
        sparse,
        jnp.asarray(mask),
        confidence,
        guidance,
        jnp.asarray(sigma_s, jnp.float32),
        jnp.asarray(sigma_r, jnp.float32),
        jnp.asarray(sigma_c, jnp.float32),
        radius=int(window) // 2,
        range_channels=range_channels,
        method=method,
        order=int(expansion_order),
    )
