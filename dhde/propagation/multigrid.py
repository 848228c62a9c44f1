"""Geometric multigrid preconditioner for the propagation system ``L + diag(mass)`` (paper 4.3).

One symmetric V-cycle: bilinear interpolation P (coarse size ``ceil(n / 2)`` per axis,
constants preserved at the borders), restriction ``P^T`` (its exact transpose), Galerkin coarse
operators ``P^T A P`` stored as 25-point stencils (the 5x5 structure is closed under this
coarsening), computed from the stencils one axis at a time and symmetrised, Chebyshev smoothing
on ``D_l1^-1 A`` (``D_l1`` = absolute row sums: the smoother converges in the A-norm, so the
V-cycle is symmetric positive definite and valid for CG), and a dense eigen-decomposition solve
on the coarsest level (<= ``MAX_COARSE`` unknowns). The level count is a static function of the
image shape.

Use: ``mg = build_multigrid(coeffs, mass)`` (a pytree), then ``M = preconditioner(mg, coeffs,
mass)`` is the callable ``r -> M r`` that ``jax.scipy.sparse.linalg.cg`` takes as ``M``. All
functions are jit-safe (shapes are static, nothing is jitted here).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dhde.propagation._galerkin import fence as _fence
from dhde.propagation._galerkin import fine_planes, galerkin_axis, galerkin_fine
from dhde.propagation.matting import STENCIL_OFFSETS, laplacian_diagonal, stencil_shift, system_apply

#: Levels are added while the coarsest grid has more than this many unknowns.
MAX_COARSE = 128
#: Coarse levels with more pixels than this (images above ~4 MP) take the next Galerkin product
#: one plane at a time, like the fine level: no padded (5, 5, h, w) copy of the level. At
#: 3000x4000, ``estimate_core``'s temporaries drop from 38.1 to 35.4 (H, W) planes; the
#: hierarchy is the same bit for bit, and the compile time did not move (41 s first call).
PLANE_PASS_PIXELS = 1_000_000
#: Chebyshev smoother: polynomial degree (pre and post) and the interval [1 / ratio, 1].
#: Degree 1 is one l1-Jacobi step with weight 2 / (1 + 1 / ratio) = 1.94; on 640x480 it needs
#: ~1.4x the iterations of degree 2 at 3/5 of the fine-grid work per iteration (~20 % faster).
CHEB_DEGREE = 1
CHEB_RATIO = 30.0


class CoarseLevel(NamedTuple):
    """A coarse operator on an (h, w) grid as a symmetric 25-point stencil.

    stencil: (5, 5, h, w), ``stencil[2 + dy, 2 + dx, y, x] = A((y, x), (y + dy, x + dx))``
    (zero where the neighbour is outside); dinv: (h, w) 1 / D_l1 (inverse absolute row sums).
    """

    stencil: jax.Array
    dinv: jax.Array


class Multigrid(NamedTuple):
    """V-cycle data: fine-level 1 / D_l1 (H, W), coarse levels, coarsest dense inverse (n, n),
    and ``one``, a run-time scalar 1.0 used by :func:`_fence`."""

    fine_dinv: jax.Array
    levels: tuple
    coarse_inv: jax.Array
    one: jax.Array


# ----------------------------------------------------------------------------- operators


def _pad2(x: jax.Array, r: int = 2) -> jax.Array:
    return jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(r, r), (r, r)])


def _stencil_apply(stencil: jax.Array, x: jax.Array) -> jax.Array:
    """A x for a (5, 5, h, w) stencil (see :class:`CoarseLevel`)."""
    h, w = x.shape[-2:]
    xp = _pad2(x)
    out = jnp.zeros_like(x)
    for i in range(5):
        for j in range(5):
            out = out + stencil[i, j] * xp[..., i : i + h, j : j + w]
    return out


def _abs_row_sum(stencil) -> jax.Array:
    """D_l1 = sum_j |A(p, j)| of a (5, 5, h, w) stencil or 5 x 5 planes (explicit plane sum:
    XLA's CPU reduce over the two leading axes is ~15x slower)."""
    return sum(jnp.abs(stencil[i][j]) for i in range(5) for j in range(5))


def safe_inverse(d: jax.Array) -> jax.Array:
    """1 / d where d > 0, else 1 (a Jacobi-style inverse diagonal)."""
    return jnp.where(d > 0, 1.0 / jnp.where(d > 0, d, 1.0), 1.0)


# ----------------------------------------------------------------------------- transfers


def _prolong_axis(xc: jax.Array, n: int, axis: int) -> jax.Array:
    """Linear interpolation along ``axis`` (< 0) from ceil(n / 2) to n samples (fine 2i = coarse i).

    Interleaves by stacking right after ``axis`` and merging, so no transposes are needed."""
    nc = xc.shape[axis]
    last = jax.lax.slice_in_dim(xc, nc - 1, nc, axis=axis)
    ext = jnp.concatenate([xc, last], axis)
    lo = jax.lax.slice_in_dim(ext, 0, nc, axis=axis)
    hi = jax.lax.slice_in_dim(ext, 1, nc + 1, axis=axis)
    odd = 0.5 * (lo + hi)  # the last odd sample copies its left neighbour
    fine = jnp.stack([xc, odd], axis=axis)  # new axis right after ``axis`` (axis < 0)
    shape = list(xc.shape)
    shape[axis] = 2 * nc
    return jax.lax.slice_in_dim(fine.reshape(shape), 0, n, axis=axis)


def _prolong(xc: jax.Array, shape: tuple) -> jax.Array:
    return _prolong_axis(_prolong_axis(xc, shape[0], -2), shape[1], -1)


def _restrict(r: jax.Array, coarse_shape: tuple) -> jax.Array:
    """P^T r, the exact transpose of :func:`_prolong`."""
    fine_shape = r.shape[-2:]
    (out,) = jax.linear_transpose(
        lambda xc: _prolong(xc, fine_shape),
        jax.ShapeDtypeStruct(r.shape[:-2] + tuple(coarse_shape), r.dtype),
    )(r)
    return out


def level_shapes(h: int, w: int, max_coarse: int = MAX_COARSE) -> tuple:
    """Grid shapes of the multigrid hierarchy, finest first (static function of the shape)."""
    shapes = [(h, w)]
    while shapes[-1][0] * shapes[-1][1] > max_coarse:
        hh, ww = shapes[-1]
        shapes.append(((hh + 1) // 2, (ww + 1) // 2))
    return tuple(shapes)


# ----------------------------------------------------------------------------- multigrid setup


def _galerkin(stencil, one) -> CoarseLevel:
    """Coarse level P^T A P (bilinear P, both axes) of a (5, 5, h, w) stencil, or of the fine
    level given as ``_galerkin.fine_planes`` (see ``_galerkin.galerkin_fine``, which also takes
    stencils above ``PLANE_PASS_PIXELS``), symmetrised."""
    fence = partial(_fence, one=one)
    if callable(stencil):
        s = galerkin_fine(stencil, one)
    elif stencil.shape[2] * stencil.shape[3] > PLANE_PASS_PIXELS:
        s = galerkin_fine(lambda i, j, _: stencil[i, j], one)
    else:
        s = fence(galerkin_axis(stencil, 2))
        s = fence(galerkin_axis(s, 3))
    # Exact symmetry A(p, p + d) = A(p + d, p) (rounding differs between the two sums).
    s = fence(jnp.stack([
        jnp.stack([0.5 * (s[i][j] + stencil_shift(s[4 - i][4 - j], i - 2, j - 2)) for j in range(5)])
        for i in range(5)
    ]))
    return CoarseLevel(s, fence(safe_inverse(_abs_row_sum(s))))


def _dense(stencil: jax.Array) -> jax.Array:
    """Dense (n, n) matrix of a (5, 5, h, w) stencil, n = h w (coarsest level only)."""
    h, w = stencil.shape[2:]
    rows, cols, taps = [], [], []
    for i in range(5):
        for j in range(5):
            for y in range(h):
                for x in range(w):
                    if 0 <= y + i - 2 < h and 0 <= x + j - 2 < w:
                        rows.append(y * w + x)
                        cols.append((y + i - 2) * w + x + j - 2)
                        taps.append((i * 5 + j) * h * w + y * w + x)
    vals = stencil.reshape(-1)[np.asarray(taps)]
    a = jnp.zeros((h * w, h * w), stencil.dtype).at[np.asarray(rows), np.asarray(cols)].add(vals)
    return 0.5 * (a + a.T)


def _spd_inverse(a: jax.Array) -> jax.Array:
    lam, vec = jnp.linalg.eigh(a)
    floor = jnp.maximum(jnp.max(jnp.abs(lam)), 1e-30) * 1e-6
    return (vec / jnp.maximum(lam, floor)) @ vec.T


def build_multigrid(coeffs: jax.Array, mass: jax.Array, max_coarse: int = MAX_COARSE) -> Multigrid:
    """The multigrid hierarchy of A = L + diag(mass): coeffs (12, H, W) float32 stencil of
    :func:`dhde.propagation.matting.stencil_coefficients`, mass (H, W) float32 >= 0 (gamma at the
    sparse points); ``max_coarse`` static. Jit-safe (not jitted)."""
    if coeffs.ndim != 3 or coeffs.shape[0] != len(STENCIL_OFFSETS) or mass.shape != coeffs.shape[1:]:
        raise ValueError(f"coeffs must be (12, H, W) and mass (H, W), got {coeffs.shape} and {mass.shape}")
    shapes = level_shapes(*mass.shape, max_coarse=max_coarse)
    one = (mass[0, 0] > -1.0).astype(jnp.float32)  # 1.0, but not foldable by XLA
    # The fine level of L + diag(mass) is never stacked (a (5, 5, H, W) copy is 1.2 GB at 12 MP):
    # its planes are formed where they are read; only the diagonal is materialised.
    stencil = fine_planes(coeffs, _fence(mass + laplacian_diagonal(coeffs), one))
    fine_dinv = _fence(safe_inverse(_abs_row_sum([[stencil(i, j, one) for j in range(5)] for i in range(5)])), one)
    levels = []
    for _ in shapes[1:]:
        levels.append(_galerkin(stencil, one))
        stencil = levels[-1].stencil
    coarse_inv = _spd_inverse(_dense(stencil))
    return Multigrid(fine_dinv, tuple(levels), coarse_inv, one)




# ----------------------------------------------------------------------------- V-cycle


def _chebyshev(apply, dinv, x, b, degree: int, ratio: float, fence, residual: bool):
    """Chebyshev smoothing of A x = b on D^-1 A over [1 / ratio, 1]; x=None means x = 0.

    The error is multiplied by the degree-``degree`` Chebyshev polynomial p(D^-1 A) with
    p(0) = 1, |p| < 1 on (0, 1]: a symmetric, A-norm convergent smoother. ``x`` (if given)
    must be fenced. Returns x, or (x, b - A x) if ``residual``."""
    hi, lo = 1.0, 1.0 / ratio
    theta, delta = 0.5 * (hi + lo), 0.5 * (hi - lo)
    sigma = theta / delta
    rho = 1.0 / sigma
    r = b if x is None else fence(b - apply(x))
    d = fence(dinv * r / theta)
    x = d if x is None else x + d
    for _ in range(1, degree):
        r = fence(r - apply(d))
        rho_new = 1.0 / (2.0 * sigma - rho)
        d = fence(rho_new * rho * d + (2.0 * rho_new / delta) * dinv * r)
        rho = rho_new
        x = x + d
    return (fence(x), fence(r - apply(d))) if residual else fence(x)


def vcycle(mg: Multigrid, coeffs, mass, r, degree: int = CHEB_DEGREE, ratio: float = CHEB_RATIO):
    """One symmetric V-cycle z = M r of an (H, W) residual r (Chebyshev pre- and post-smoothing, Galerkin coarse grids)."""
    fence = partial(_fence, one=mg.one)
    applies = [partial(system_apply, coeffs, mass)]
    applies += [partial(_stencil_apply, lv.stencil) for lv in mg.levels]
    dinvs = [mg.fine_dinv] + [lv.dinv for lv in mg.levels]

    def cycle(level, b):
        if level == len(applies) - 1:
            return fence((mg.coarse_inv @ b.ravel()).reshape(b.shape))
        x, res = _chebyshev(applies[level], dinvs[level], None, b, degree, ratio, fence, True)
        bc = fence(_restrict(res, dinvs[level + 1].shape))
        x = fence(x + _prolong(cycle(level + 1, bc), b.shape))
        return _chebyshev(applies[level], dinvs[level], x, b, degree, ratio, fence, False)

    return cycle(0, fence(r))


def preconditioner(mg: Multigrid, coeffs: jax.Array, mass: jax.Array):
    """The V-cycle as a callable ``r -> M r`` ((H, W) float32 -> (H, W) float32), the ``M``
    argument of ``jax.scipy.sparse.linalg.cg``; ``mg`` from :func:`build_multigrid` of the same
    ``coeffs`` (12, H, W) and ``mass`` (H, W)."""
    return partial(vcycle, mg, coeffs, mass)
