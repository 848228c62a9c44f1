"""Sparse-to-full defocus propagation with the matting Laplacian (paper Sec. 4.3, Eq. 8).

Solves ``(L + gamma D) x = gamma D b`` where ``L`` is the matting Laplacian of the guidance
image (:mod:`dhde.propagation.matting`), ``D = diag(mask)`` and ``b`` the sparse defocus map, matrix-free
in float32 with preconditioned conjugate gradients (the authors' code uses a direct sparse
solver).

Preconditioners:
  * ``"multigrid"`` (default): one symmetric geometric-multigrid V-cycle. Bilinear
    interpolation P (coarse size ``ceil(n / 2)`` per axis, constants preserved at the borders),
    restriction ``P^T`` (its exact transpose), Galerkin coarse operators ``P^T A P`` stored as
    25-point stencils (the 5x5 structure is closed under this coarsening), computed directly
    from the stencils one axis at a time and symmetrised, Chebyshev smoothing on
    ``D_l1^-1 A`` (``D_l1`` = absolute row sums, so the spectrum lies in (0, 1] and the
    smoother converges in the A-norm: the V-cycle is symmetric positive definite and valid for
    CG; by default degree 1 = one l1-Jacobi step with weight 1.94 before and after), and a
    dense eigen-decomposition solve on the coarsest level (<= 128 unknowns). The level count
    is a static function of the image shape. Iterations do not grow with image size (40-75 at
    tol 1e-4 on 320x240 to 1280x960 natural images with Canny masks).
  * ``"jacobi"``: ``diag(A)^-1`` (cheap; does not help much on this operator).
  * ``"none"``: plain CG (~1000-2000 iterations at 640x480).

Solvers: ``"jax_cg"`` (default) is ``jax.scipy.sparse.linalg.cg``, which does not report its
iteration count (``iterations = -1``); ``"pcg"`` is the same algorithm as a small
``lax.while_loop`` that counts iterations (identical iterates).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dhde.propagation import matting
from dhde.propagation.matting import STENCIL_OFFSETS, _shift

#: Default data weight (paper Sec. 5.3, the authors' lambda).
GAMMA = 0.005
PRECONDITIONERS = ("multigrid", "jacobi", "none")
SOLVERS = ("jax_cg", "pcg")
#: Levels are added while the coarsest grid has more than this many unknowns.
MAX_COARSE = 128
#: Chebyshev smoother: polynomial degree (pre and post) and the interval [1 / ratio, 1].
#: Degree 1 is one l1-Jacobi step with weight 2 / (1 + 1 / ratio) = 1.94; on 640x480 it needs
#: ~1.4x the iterations of degree 2 at 3/5 of the fine-grid work per iteration (~20 % faster).
CHEB_DEGREE = 1
CHEB_RATIO = 30.0
DEFAULT_MAXITER = 4000


class PropagationResult(NamedTuple):
    """Full defocus map and solver diagnostics.

    defocus: (H, W) float32, same units as the sparse map (sigma in pixels).
    iterations: CG iterations (-1 for ``solver="jax_cg"``, which does not report them).
    residual: true final relative residual ``||b - A x|| / ||b||``, computed after the solve in
      float32. Its floor is ~1e-7 ||A|| ||x|| / ||b||: with gamma = 0.005 and 5-10 % sparse
      points even the float64 solution rounded to float32 has ~1e-4, and values of 1e-4..1e-3
      (multigrid) or a few 1e-3 (jacobi / none, whose ~1000+ iterations accumulate more
      rounding) go with relative errors ~1e-5 against a float64 direct solve at tol 1e-4.
    """

    defocus: jax.Array
    iterations: int
    residual: float


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


def _fence(x: jax.Array, one: jax.Array) -> jax.Array:
    """Identity (``x / 1.0`` is exact) that makes XLA materialise ``x``.

    ``one`` must be a run-time value (not a constant XLA can fold). XLA's CPU fusion treats a
    division as expensive and does not duplicate it into consumers that read it many times;
    every other elementwise producer is re-computed inside each consumer. A stencil reads its
    input at 24 offsets, so without fences a chain of smoothing steps and grid transfers is
    fused into one kernel that recomputes its inputs 24^k times (minutes of compilation and a
    100x slower V-cycle).
    """
    return x / one


# ----------------------------------------------------------------------------- operators


def _system_apply(coeffs: jax.Array, mass: jax.Array, x: jax.Array) -> jax.Array:
    """(L + diag(mass)) x with L in exact Laplacian form."""
    return matting._laplacian_apply(coeffs, x) + mass * x


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


def _full_stencil(coeffs: jax.Array, mass: jax.Array) -> jax.Array:
    """(5, 5, H, W) stencil of L + diag(mass) from the Laplacian-form coefficients."""
    rows = [[None] * 5 for _ in range(5)]
    for k, (dy, dx) in enumerate(STENCIL_OFFSETS):
        rows[2 + dy][2 + dx] = -coeffs[k]
        rows[2 - dy][2 - dx] = -_shift(coeffs[k], -dy, -dx)
    rows[2][2] = mass + matting._laplacian_diagonal(coeffs)
    return jnp.stack([jnp.stack(r) for r in rows])


def _abs_row_sum(stencil: jax.Array) -> jax.Array:
    """D_l1 = sum_j |A(p, j)| of a (5, 5, h, w) stencil (explicit plane sum: XLA's CPU reduce
    over the two leading axes is ~15x slower)."""
    return sum(jnp.abs(stencil[i, j]) for i in range(5) for j in range(5))


def _safe_inv(d: jax.Array) -> jax.Array:
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


def _interp_weights(n: int) -> np.ndarray:
    """(3, ceil(n/2)): weight of fine sample 2 I + a (a = -1, 0, 1) in coarse basis function I."""
    nc = (n + 1) // 2
    wts = np.full((3, nc), 0.5, np.float32)
    wts[1] = 1.0
    if n % 2 == 0:
        wts[2, nc - 1] = 1.0  # the last fine sample copies its left coarse neighbour
    return wts


def _galerkin_axis(stencil: jax.Array, axis: int) -> jax.Array:
    """P^T A P for bilinear P acting on one spatial axis (2 = y, 3 = x) of a (5, 5, h, w) stencil.

    Along that axis n -> ceil(n / 2): A_c(I, I + D) = sum_{a, b} w_a(I) w_b(I + D)
    A(2 I + a, 2 (I + D) + b) over fine offsets 2 D + b - a within the 5-point radius, so the
    coarse stencil has radius 2 again. Only strided slices, no transposes."""
    n = stencil.shape[axis]
    nc = (n + 1) // 2
    off_axis = axis - 2  # stencil axis holding the offset along ``axis``
    wts = _interp_weights(n)
    shifted = np.zeros((5, 3, nc), np.float32)  # w_b(I + D), zero outside the coarse grid
    for d in range(-2, 3):
        lo, hi = max(0, -d), min(nc, nc - d)
        shifted[d + 2, :, lo:hi] = wts[:, lo + d : hi + d]
    wshape = (nc, 1) if axis == 2 else (nc,)  # weights broadcast along ``axis``
    pad = [(0, 0)] * 4
    pad[axis] = (1, 2 * nc - n)
    sp = jnp.pad(stencil, pad)  # index 1 + fine index along ``axis``
    taps = {a: jax.lax.slice_in_dim(sp, 1 + a, 1 + a + 2 * nc - 1, 2, axis) for a in (-1, 0, 1)}
    out = []
    for d in range(-2, 3):
        acc = 0.0
        for a in (-1, 0, 1):
            for b in (-1, 0, 1):
                dd = 2 * d + b - a
                if abs(dd) <= 2:
                    wgt = (wts[a + 1] * shifted[d + 2, b + 1]).reshape(wshape)
                    tap = jax.lax.index_in_dim(taps[a], dd + 2, off_axis, keepdims=False)
                    acc = acc + jnp.asarray(wgt) * tap
        out.append(acc)
    return jnp.stack(out, axis=off_axis)


def _galerkin(stencil: jax.Array, one) -> CoarseLevel:
    """Coarse level P^T A P (bilinear P, both axes) of a (5, 5, h, w) stencil, symmetrised."""
    fence = partial(_fence, one=one)
    s = fence(_galerkin_axis(stencil, 2))
    s = fence(_galerkin_axis(s, 3))
    # Exact symmetry A(p, p + d) = A(p + d, p) (rounding differs between the two sums).
    s = fence(jnp.stack([
        jnp.stack([0.5 * (s[i, j] + _shift(s[4 - i, 4 - j], i - 2, j - 2)) for j in range(5)])
        for i in range(5)
    ]))
    return CoarseLevel(s, fence(_safe_inv(_abs_row_sum(s))))


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


def _build_multigrid(coeffs: jax.Array, mass: jax.Array, max_coarse: int = MAX_COARSE) -> Multigrid:
    shapes = level_shapes(*mass.shape, max_coarse=max_coarse)
    one = (mass[0, 0] > -1.0).astype(jnp.float32)  # 1.0, but not foldable by XLA
    stencil = _fence(_full_stencil(coeffs, mass), one)
    fine_dinv = _fence(_safe_inv(_abs_row_sum(stencil)), one)
    levels = []
    for _ in shapes[1:]:
        levels.append(_galerkin(stencil, one))
        stencil = levels[-1].stencil
    coarse_inv = _spd_inverse(_dense(stencil))
    return Multigrid(fine_dinv, tuple(levels), coarse_inv, one)


_build_multigrid_jit = jax.jit(_build_multigrid, static_argnames=("max_coarse",))


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


def _vcycle(mg: Multigrid, coeffs, mass, r, degree: int = CHEB_DEGREE, ratio: float = CHEB_RATIO):
    """One symmetric V-cycle M r (Chebyshev pre- and post-smoothing, Galerkin coarse grids)."""
    fence = partial(_fence, one=mg.one)
    applies = [partial(_system_apply, coeffs, mass)]
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


# ----------------------------------------------------------------------------- solvers


def _vdot(a, b):
    return jnp.sum(a * b)


def _pcg(apply, precond, b, x0, tol, maxiter):
    """Preconditioned CG with jax.scipy.sparse.linalg.cg's recurrences and stopping rule.

    The loop is rotated (preconditioner first, starting from p = 0) so that the V-cycle
    appears once in the compiled program instead of twice. Returns (x, iterations)."""
    atol2 = jnp.square(tol) * _vdot(b, b)
    r0 = b - apply(x0)

    def cond(state):
        _, r, _, _, k = state
        return (_vdot(r, r) > atol2) & (k < maxiter)

    def body(state):
        x, r, gamma_old, p, k = state
        z = precond(r)
        gamma = _vdot(r, z)
        p = z + (gamma / gamma_old) * p  # p = 0 on the first iteration
        ap = apply(p)
        alpha = gamma / _vdot(p, ap)
        return x + alpha * p, r - alpha * ap, gamma, p, k + 1

    init = (x0, r0, jnp.float32(1.0), jnp.zeros_like(b), jnp.int32(0))
    x, *_, k = jax.lax.while_loop(cond, body, init)
    return x, k


@jax.jit
def _system_terms(sparse, mask, gamma):
    """mass = gamma * mask and right-hand side b = mass * sparse, (H, W) float32."""
    mass = gamma * mask.astype(jnp.float32)
    return mass, mass * sparse


@partial(jax.jit, static_argnames=("preconditioner", "solver"))
def _solve_impl(coeffs, mass, b, x0, tol, maxiter, mg, *, preconditioner, solver):
    """CG on (L + diag(mass)) x = b; returns (x, iterations int32, residual float32).

    ``mg`` is the :class:`Multigrid` for ``preconditioner="multigrid"``, else None; with it,
    CG is followed by one V-cycle correction of the true residual. With b = 0 and x0 = 0
    (empty mask) it returns x = 0, residual 0.
    """
    apply = partial(_system_apply, coeffs, mass)
    if preconditioner == "multigrid":
        precond = partial(_vcycle, mg, coeffs, mass)
    elif preconditioner == "jacobi":
        dinv = _safe_inv(mass + matting._laplacian_diagonal(coeffs))
        precond = lambda r: dinv * r  # noqa: E731
    else:
        precond = lambda r: r  # noqa: E731
    if solver == "jax_cg":
        m = None if preconditioner == "none" else precond
        x, _ = jax.scipy.sparse.linalg.cg(apply, b, x0, tol=tol, maxiter=maxiter, M=m)
        iterations = jnp.int32(-1)
    else:
        x, iterations = _pcg(apply, precond, b, x0, tol, maxiter)
    if preconditioner == "multigrid":
        # Residual replacement: one V-cycle on the true residual. CG's recursive residual drifts
        # from the true one in float32 (~7e-4 relative at tol 1e-4 on 640x480); one correction
        # brings the true residual to ~2e-4, near the float32 floor (the float64 solution rounded
        # to float32 has ~1e-4). The V-cycle never increases the A-norm error.
        x = x + precond(b - apply(x))
    bnorm = jnp.sqrt(_vdot(b, b))
    rnorm = jnp.sqrt(jnp.sum(jnp.square(b - apply(x))))
    residual = jnp.where(bnorm > 0, rnorm / jnp.where(bnorm > 0, bnorm, 1.0), rnorm)
    return x, iterations, residual


def propagate_arrays(
    sparse, mask, guide, x0, gamma, lam, tol, maxiter=DEFAULT_MAXITER, *,
    preconditioner="multigrid", solver="jax_cg",
):
    """Unvalidated array core of :func:`propagate`, usable inside ``jax.jit``.

    Args are arrays: sparse, x0 (H, W) float32; mask (H, W) bool; guide (H, W, 3) float32;
    scalars gamma, lam (= 9 eps for the code's convention, eps for the paper's), tol, maxiter
    (int32). Returns (x (H, W) float32, iterations int32, residual float32). Compiled as three
    programs (stencil, multigrid setup, solve) when called outside jit, so that the stencil
    and the hierarchy are compiled once per image shape for all solver choices.
    """
    coeffs = matting._coefficients_impl(guide, lam)
    mass, b = _system_terms(sparse, mask, gamma)
    mg = _build_multigrid_jit(coeffs, mass) if preconditioner == "multigrid" else None
    return _solve_impl(
        coeffs, mass, b, x0, tol, jnp.asarray(maxiter, jnp.int32), mg,
        preconditioner=preconditioner, solver=solver,
    )


#: Former name of :func:`propagate_arrays` (kept for callers written against it).



# ----------------------------------------------------------------------------- public API


def _check_positive(name: str, value) -> float:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_map(name: str, x, shape: tuple) -> np.ndarray:
    arr = np.asarray(x)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (the guide's H, W), got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr.astype(np.float32)


def propagate(
    sparse,
    mask,
    guide,
    gamma: float = GAMMA,
    eps: float = matting.EPS,
    tol: float = 1e-4,
    maxiter: int = DEFAULT_MAXITER,
    preconditioner: str = "multigrid",
    *,
    solver: str = "jax_cg",
    x0=None,
    eps_mode: str = "code",
) -> PropagationResult:
    """Full defocus map from a sparse one (paper Eq. 8): solves (L + gamma D) x = gamma D sparse.

    Args:
      sparse: (H, W) float sparse defocus map (sigma in pixels); only values where ``mask`` is
        True are used, but every value must be finite.
      mask: (H, W) bool, the pixels that carry a sparse value (edge pixels). Must not be empty
        (an empty mask leaves the problem without data: ValueError).
      guide: (H, W, 3) float guidance image, colours nominally in [0, 1]; H, W >= 3.
      gamma: data weight (> 0), default 0.005.
      eps: matting regularisation (> 0), default 1e-5; ``eps_mode`` as in
        :func:`dhde.propagation.matting.matting_laplacian_coefficients` ("code" default, or "paper").
      tol: relative residual tolerance ||b - A x|| <= tol ||b|| of the CG stopping rule.
      maxiter: CG iteration limit.
      preconditioner: "multigrid" (default), "jacobi" or "none".
      solver: "jax_cg" (``jax.scipy.sparse.linalg.cg``, default) or "pcg" (same algorithm,
        reports iterations).
      x0: optional (H, W) initial guess; default zeros.

    Returns:
      :class:`PropagationResult` (defocus (H, W) float32, iterations, true relative residual).
      One compilation per (shape, preconditioner, solver); gamma, eps, tol, maxiter are traced.
    """
    if preconditioner not in PRECONDITIONERS:
        raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got {preconditioner!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if not isinstance(maxiter, (int, np.integer)) or isinstance(maxiter, bool) or maxiter < 1:
        raise ValueError(f"maxiter must be a positive integer, got {maxiter!r}")
    matting._check_guide(guide)
    matting._check_eps(eps, eps_mode)
    gamma = _check_positive("gamma", gamma)
    tol = _check_positive("tol", tol)
    shape = tuple(np.shape(guide)[:2])
    sparse = _check_map("sparse", sparse, shape)
    m = np.asarray(mask)
    if m.shape != shape:
        raise ValueError(f"mask must have shape {shape} (the guide's H, W), got {m.shape}")
    if m.dtype != np.bool_:
        raise TypeError(f"mask must be a boolean array, got dtype {m.dtype}")
    if not m.any():
        raise ValueError("mask is empty: there are no sparse values to propagate")
    x0 = np.zeros(shape, np.float32) if x0 is None else _check_map("x0", x0, shape)
    x, iterations, residual = propagate_arrays(
        jnp.asarray(sparse),
        jnp.asarray(m),
        jnp.asarray(guide, jnp.float32),
        jnp.asarray(x0),
        jnp.float32(gamma),
        jnp.float32(matting._lambda(eps, eps_mode)),
        jnp.float32(tol),
        jnp.int32(maxiter),
        preconditioner=preconditioner,
        solver=solver,
    )
    return PropagationResult(x, int(iterations), float(residual))


# ----------------------------------------------------------------------------- helpers for tests


def system_apply(coeffs, mass, x) -> jax.Array:
    """(L + diag(mass)) x; coeffs (12, H, W) from the matting module, mass and x (H, W)."""
    return jax.jit(_system_apply)(jnp.asarray(coeffs), jnp.asarray(mass), jnp.asarray(x))


def build_multigrid(coeffs, mass, max_coarse: int = MAX_COARSE) -> Multigrid:
    """Multigrid hierarchy for A = L + diag(mass) (see the module docstring). Jitted."""
    matting._check_coeffs(coeffs)
    if np.shape(mass) != np.shape(coeffs)[1:]:
        raise ValueError(f"mass must have shape {np.shape(coeffs)[1:]}, got {np.shape(mass)}")
    return _build_multigrid_jit(jnp.asarray(coeffs), jnp.asarray(mass), max_coarse=max_coarse)



@jax.jit
def multigrid_apply(mg: Multigrid, coeffs, mass, r) -> jax.Array:
    """One V-cycle z = M r (the preconditioner) for a residual r (H, W). Jitted."""
    return _vcycle(mg, coeffs, mass, r)
