"""Sparse-to-full defocus propagation with the matting Laplacian (paper Sec. 4.3, Eq. 8).

Solves ``(L + gamma D) x = gamma D b`` where ``L`` is the matting Laplacian of the guidance
image (:mod:`dhde.propagation.matting`), ``D = diag(mask)`` and ``b`` the sparse defocus map, matrix-free
in float32 with preconditioned conjugate gradients (the authors' code uses a direct sparse
solver).

Preconditioners:
  * ``"multigrid"`` (default): one symmetric geometric-multigrid V-cycle
    (:mod:`dhde.propagation.multigrid`). Bilinear
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

from dhde import checks
from dhde.propagation import matting, multigrid

#: Default data weight (paper Sec. 5.3, the authors' lambda).
GAMMA = 0.005
PRECONDITIONERS = ("multigrid", "jacobi", "none")
SOLVERS = ("jax_cg", "pcg")
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


def make_preconditioner(name: str, coeffs: jax.Array, mass: jax.Array, mg: multigrid.Multigrid | None = None):
    """The preconditioner ``r -> M r`` of (L + diag(mass)) as a callable, for ``name`` in
    :data:`PRECONDITIONERS`: "multigrid" (needs ``mg`` from :func:`multigrid.build_multigrid`),
    "jacobi" (``diag(A)^-1``) or "none" (identity). Jit-safe."""
    if name == "multigrid":
        if mg is None:
            raise ValueError('preconditioner "multigrid" needs the hierarchy mg (multigrid.build_multigrid)')
        return multigrid.preconditioner(mg, coeffs, mass)
    if name == "jacobi":
        dinv = multigrid.safe_inverse(mass + matting.laplacian_diagonal(coeffs))
        return lambda r: dinv * r
    if name == "none":
        return lambda r: r
    raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got {name!r}")


_build_multigrid = jax.jit(multigrid.build_multigrid, static_argnames=("max_coarse",))


@jax.jit
def system_terms(sparse, mask, gamma):
    """mass = gamma * mask and right-hand side b = mass * sparse, (H, W) float32."""
    mass = gamma * mask.astype(jnp.float32)
    return mass, mass * sparse


@partial(jax.jit, static_argnames=("preconditioner", "solver"))
def solve(coeffs, mass, b, x0, tol, maxiter, mg, *, preconditioner, solver):
    """CG on (L + diag(mass)) x = b; returns (x, iterations int32, residual float32).

    coeffs (12, H, W), mass, b, x0 (H, W) float32; tol float32; maxiter int32 (traced).

    ``mg`` is the :class:`Multigrid` for ``preconditioner="multigrid"``, else None; with it,
    CG is followed by one V-cycle correction of the true residual. With b = 0 and x0 = 0
    (empty mask) it returns x = 0, residual 0.
    """
    apply = matting.system_operator(coeffs, mass)
    precond = make_preconditioner(preconditioner, coeffs, mass, mg)
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
    coeffs = matting.stencil_coefficients(guide, lam)
    mass, b = system_terms(sparse, mask, gamma)
    mg = _build_multigrid(coeffs, mass) if preconditioner == "multigrid" else None
    return solve(
        coeffs, mass, b, x0, tol, jnp.asarray(maxiter, jnp.int32), mg,
        preconditioner=preconditioner, solver=solver,
    )





# ----------------------------------------------------------------------------- public API


def _check_map(name: str, x, shape: tuple) -> jax.Array:
    arr = checks.as_array(x, name)
    if tuple(arr.shape) != shape:
        raise ValueError(f"{name} must have shape {shape} (the guide's H, W), got {tuple(arr.shape)}")
    return checks.real_array(arr, name, ndim=2)


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
    checks.choice(preconditioner, "preconditioner", PRECONDITIONERS)
    checks.choice(solver, "solver", SOLVERS)
    maxiter = checks.integer(maxiter, "maxiter", lo=1)
    matting.check_guide(guide)
    lam = matting.regularizer(eps, eps_mode)
    gamma = checks.scalar(gamma, "gamma", lo=0, lo_open=True)
    tol = checks.scalar(tol, "tol", lo=0, lo_open=True)
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
        jnp.float32(lam),
        jnp.float32(tol),
        jnp.int32(maxiter),
        preconditioner=preconditioner,
        solver=solver,
    )
    return PropagationResult(x, int(iterations), float(residual))
