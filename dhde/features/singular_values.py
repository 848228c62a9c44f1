"""SVD feature f_S (paper 3.4, Eq. 4): the largest singular values of the grey patch.

Two methods give the singular values:

* ``"svd"`` (default): ``lax.linalg.svd(compute_uv=False)``, one patch after the other. On
  CPU it asks for the QR algorithm, LAPACK's ``gesvd`` (Householder bidiagonalisation, then the
  values alone by dqds) instead of the default ``gesdd``: the same values to float32 rounding
  (the test compares with float64 NumPy) and, on 2,048 normalised 27x27 patches of a photograph
  measured alone, 14 instead of 18 us per patch (2 cores); inside ``classify_edges`` the gain
  is smaller (5-10 % with the shipped model, within noise with the Caffe model). Other backends
  use their default algorithm. Compiles in about a second.
* ``"bidiag"``: the same algorithm written as batched JAX array code: Householder
  bidiagonalisation of all patches at once (batch-first, in blocks of 1024 patches), then the
  top ``n`` singular values of each bidiagonal by bisection with relatively accurate
  (differential stationary qd) Sturm counts, bisecting in log1p(sigma), the variable the feature
  uses. The feature differs from "svd" by at most ~1e-5 (max abs, measured on natural and
  blurred 27x27/15x15 patches against float64 NumPy). On a 2-core CPU it runs about 1.2x (27x27)
  to 1.7x (15x15) faster than "svd" but takes ~10-25 s to compile per input shape, so it only
  pays off for many calls with the same shape.

Forming the Gram matrix P^T P and taking ``eigvalsh`` is *not* offered: it is slower than
LAPACK's SVD on CPU and, in float32, loses the small singular values (errors ~1e-2 in the
normalised feature).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dhde.features.blocks import map_in_blocks
from dhde.features.normalize import log_l1_normalize

METHODS = ("svd", "bidiag")
#: Patches per block in the "bidiag" method (bidiagonalisation; bisection) and bisection steps.
_BIDIAG_BLOCK, _BISECT_BLOCK, _BISECT_STEPS = 1024, 256, 20


def _householder(x: jax.Array):
    """x (B, m) -> (alpha (B,), v (B, m), scale (B,)) with (I - scale v v^T) x = alpha e_0."""
    nrm = jnp.sqrt(jnp.sum(x * x, axis=-1))
    x0 = x[:, 0]
    alpha = jnp.where(x0 >= 0, -nrm, nrm)
    v = jnp.concatenate([(x0 - alpha)[:, None], x[:, 1:]], axis=1)
    vv = 2.0 * nrm * (nrm + jnp.abs(x0))  # = v.v
    scale = jnp.where(vv > 0, 2.0 / jnp.where(vv > 0, vv, 1.0), 0.0)
    return alpha, v, scale


def _bidiagonalize(a: jax.Array):
    """(B, w, w) -> diagonal (B, w) and superdiagonal (B, w - 1) of an upper bidiagonal matrix
    with the same singular values (Golub-Kahan, Householder from both sides; unrolled)."""
    w = a.shape[1]
    if w == 1:
        return a[:, 0, :], jnp.zeros((a.shape[0], 0), a.dtype)
    diag, sup = [], []
    t = a
    for k in range(w - 1):
        alpha, v, s = _householder(t[:, :, 0])  # left reflector: zero column 0 below the diagonal
        diag.append(alpha)
        r = t[:, :, 1:]
        r = r - v[:, :, None] * (jnp.sum(v[:, :, None] * r, axis=1) * s[:, None])[:, None, :]
        if k < w - 2:
            beta, u, s2 = _householder(r[:, 0])  # right reflector: zero row 0 right of the superdiagonal
            sup.append(beta)
            q = r[:, 1:]
            t = q - (jnp.einsum("bij,bj->bi", q, u) * s2[:, None])[:, :, None] * u[:, None, :]
        else:
            sup.append(r[:, 0, 0])
            t = r[:, 1:]
    diag.append(t[:, 0, 0])
    return jnp.stack(diag, axis=1), jnp.stack(sup, axis=1)


def _count_below(q: jax.Array, b2: jax.Array, tau: jax.Array) -> jax.Array:
    """Number of singular values with sigma^2 < tau of the bidiagonal with squared diagonal q
    (w, B) and squared superdiagonal b2 (w - 1, B); tau (m, B). Differential stationary qd
    (the LDL^T of B^T B - tau I), relatively accurate without forming B^T B."""
    tiny = jnp.float32(1e-37)

    def step(i, carry):
        s, count = carry
        d = lax.dynamic_index_in_dim(q, i, 0, True) + s
        d = jnp.where(jnp.abs(d) < tiny, -tiny, d)
        s = lax.dynamic_index_in_dim(b2, i, 0, True) * (s / d) - tau
        return s, count + (d < 0).astype(jnp.int32)

    carry = (-tau, jnp.zeros(tau.shape, jnp.int32))
    s, count = lax.fori_loop(0, q.shape[0] - 1, step, carry) if q.shape[0] > 1 else carry
    return count + ((q[-1:] + s) < 0).astype(jnp.int32)


def _top_singular_values(d: jax.Array, e: jax.Array, n: int) -> jax.Array:
    """d (w, B), e (w - 1, B) of upper bidiagonals -> (n, B) largest singular values, descending,
    by bisection on y = log1p(sigma) (uniform accuracy in the quantity the feature uses)."""
    w = d.shape[0]
    ad, ae = jnp.abs(d), jnp.abs(e)
    norm_inf = jnp.max(jnp.concatenate([ad[:-1] + ae, ad[-1:]], axis=0), axis=0)
    norm_1 = jnp.max(jnp.concatenate([ad[:1], ae + ad[1:]], axis=0), axis=0)
    upper = jnp.sqrt(norm_inf * norm_1) * 1.0001  # sigma_max <= sqrt(|B|_1 |B|_inf); 0: all-zero patch
    q, b2 = d * d, e * e
    most_below = (w - 1 - jnp.arange(n))[:, None]  # sigma_j >= x  <=>  count(x^2) <= w - 1 - j
    lo = jnp.zeros((n,) + d.shape[1:], jnp.float32)
    hi = jnp.broadcast_to(jnp.log1p(upper), lo.shape)

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        x = jnp.expm1(mid)
        above = _count_below(q, b2, x * x) <= most_below
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, hi = lax.fori_loop(0, _BISECT_STEPS, bisect, (lo, hi))
    return jnp.expm1(0.5 * (lo + hi))


def _singular_values_bidiag(p: jax.Array, n: int) -> jax.Array:
    d, e = map_in_blocks(_bidiagonalize, p, _BIDIAG_BLOCK)
    de = jnp.concatenate([d, e], axis=1)
    w = p.shape[1]
    return map_in_blocks(lambda b: _top_singular_values(b[:, :w].T, b[:, w:].T, n).T, de, _BISECT_BLOCK)


def _lapack_singular_values(p: jax.Array) -> jax.Array:
    """(B, w, w) -> (B, w) singular values, descending (gesvd on CPU, the default elsewhere)."""
    cpu = jax.default_backend() == "cpu"
    algorithm = lax.linalg.SvdAlgorithm.QR if cpu else lax.linalg.SvdAlgorithm.DEFAULT
    return lax.linalg.svd(p, full_matrices=False, compute_uv=False, algorithm=algorithm)


@partial(jax.jit, static_argnames=("n", "method"))
def _sv_feature(p: jax.Array, n: int, method: str) -> jax.Array:
    if method == "svd":
        s = _lapack_singular_values(p)[:, :n]
    else:
        s = _singular_values_bidiag(p, n)
    return log_l1_normalize(s)


def singular_value_feature(gray_patches, n: int, method: str = "svd") -> jax.Array:
    """SVD feature f_S: the ``n`` largest singular values, log1p then L1 normalised.

    Works under ``jax.jit`` / ``jax.vmap`` (``n`` and ``method`` static there).

    Args:
      gray_patches: (N, w, w) float grey patches (values in [0, 1]; the unpadded patch, w = 27
        or 15 in the pipeline, any w >= 1 works).
      n: number of singular values kept, 1 <= n <= w (paper: 25 of 27, 13 of 15).
      method: "svd" (LAPACK, exact; default) or "bidiag" (batched JAX code, ~1e-5 from "svd";
        see the module docstring for the speed/compile-time trade-off).

    Returns:
      (N, n) float32 in [0, 1]: log(1 + sigma_k) / sum_k log(1 + sigma_k), sigma_1 >= ... >= sigma_n;
      each row sums to 1, or is all zeros for an all-zero patch.

    Raises:
      ValueError: wrong rank/shape, bad ``n`` or ``method``, NaN/inf values (when concrete).
      TypeError: non-real input.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    p = jnp.asarray(gray_patches)
    if p.ndim != 3 or p.shape[1] != p.shape[2] or p.shape[1] < 1:
        raise ValueError(f"expected square grey patches (N, w, w), got shape {p.shape}")
    if not (jnp.issubdtype(p.dtype, jnp.floating) or jnp.issubdtype(p.dtype, jnp.integer)):
        raise TypeError(f"expected real-valued patches, got dtype {p.dtype}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= p.shape[1]:
        raise ValueError(f"n must be an integer in 1..{p.shape[1]} (the patch side), got {n!r}")
    p = p.astype(jnp.float32)
    if not isinstance(p, jax.core.Tracer) and not bool(jnp.isfinite(p).all()):
        raise ValueError("gray_patches contains NaN or inf")
    if p.shape[0] == 0:
        return jnp.zeros((0, int(n)), jnp.float32)
    return _sv_feature(p, int(n), method)
