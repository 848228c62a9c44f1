"""The Galerkin coarse operator P^T A P of the multigrid preconditioner, from the stencil (private
to :mod:`dhde.propagation`; :mod:`dhde.propagation.multigrid` composes it).

P is bilinear interpolation from ceil(n / 2) to n samples per axis (constants preserved at the
borders). The product is computed one axis at a time on 25-point stencils, with strided slices
only: :func:`galerkin_axis` on a stacked (5, 5, h, w) stencil (the small coarse levels), and
:func:`galerkin_line` / :func:`galerkin_fine` on separate planes (the fine level, and the first
coarse level of images above ~4 MP: where memory counts). :func:`fence` is the identity that
makes XLA materialise an array.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dhde.ordering import after
from dhde.propagation.matting import STENCIL_OFFSETS


def fence(x: jax.Array, one: jax.Array) -> jax.Array:
    """Identity (``x / 1.0`` is exact) that makes XLA materialise ``x``.

    ``one`` must be a run-time value (not a constant XLA can fold). XLA's CPU fusion treats a
    division as expensive and does not duplicate it into consumers that read it many times;
    every other elementwise producer is re-computed inside each consumer. A stencil reads its
    input at 24 offsets, so without fences a chain of smoothing steps and grid transfers is
    fused into one kernel that recomputes its inputs 24^k times (minutes of compilation and a
    100x slower V-cycle).
    """
    return x / one


def shifted(x: jax.Array, dy: int, dx: int) -> jax.Array:
    """``stencil_shift(x, dy, dx)`` as one ``lax.pad`` with negative (cropping) edges: the same
    values, but XLA fuses it into its readers instead of materialising an (H + 4, W + 4) padded
    copy (the multigrid setup's temporaries: 15.1 (H, W) planes with ``stencil_shift``, 9.5
    with this). ``stencil_shift`` itself keeps its pad-then-slice: in the Laplacian apply of
    every CG iteration this form is 3x slower (0.98 -> 3.1 ms at 480x640)."""
    return jax.lax.pad(x, jnp.zeros((), x.dtype), [(-dy, dy, 0), (-dx, dx, 0)])


def interp_weights(n: int) -> np.ndarray:
    """(3, ceil(n/2)): weight of fine sample 2 I + a (a = -1, 0, 1) in coarse basis function I."""
    nc = (n + 1) // 2
    wts = np.full((3, nc), 0.5, np.float32)
    wts[1] = 1.0
    if n % 2 == 0:
        wts[2, nc - 1] = 1.0  # the last fine sample copies its left coarse neighbour
    return wts


def axis_weights(n: int):
    """Bilinear transfer weights along an axis of n fine points -> (nc, wts (3, nc), shifted (5, 3, nc)):
    w_a(I) for a = -1, 0, 1 and w_b(I + D) for D = -2..2 (zero outside the coarse grid)."""
    nc = (n + 1) // 2
    wts = interp_weights(n)
    shifted = np.zeros((5, 3, nc), np.float32)
    for d in range(-2, 3):
        lo, hi = max(0, -d), min(nc, nc - d)
        shifted[d + 2, :, lo:hi] = wts[:, lo + d : hi + d]
    return nc, wts, shifted


def galerkin_terms(d: int):
    """(a, b, dd) of the fine couplings A(2 I + a, 2 (I + D) + b) at fine offset dd = 2 D + b - a."""
    return [(a, b, 2 * d + b - a) for a in (-1, 0, 1) for b in (-1, 0, 1) if abs(2 * d + b - a) <= 2]


def galerkin_axis(stencil: jax.Array, axis: int) -> jax.Array:
    """P^T A P for bilinear P acting on one spatial axis (2 = y, 3 = x) of a (5, 5, h, w) stencil.

    Along that axis n -> ceil(n / 2): A_c(I, I + D) = sum_{a, b} w_a(I) w_b(I + D)
    A(2 I + a, 2 (I + D) + b) over fine offsets 2 D + b - a within the 5-point radius, so the
    coarse stencil has radius 2 again. Only strided slices, no transposes."""
    n = stencil.shape[axis]
    nc, wts, shifted = axis_weights(n)
    off_axis = axis - 2  # stencil axis holding the offset along ``axis``
    wshape = (nc, 1) if axis == 2 else (nc,)  # weights broadcast along ``axis``
    pad = [(0, 0)] * 4
    pad[axis] = (1, 2 * nc - n)
    sp = jnp.pad(stencil, pad)  # index 1 + fine index along ``axis``
    taps = {a: jax.lax.slice_in_dim(sp, 1 + a, 1 + a + 2 * nc - 1, 2, axis) for a in (-1, 0, 1)}
    out = []
    for d in range(-2, 3):
        acc = 0.0
        for a, b, dd in galerkin_terms(d):
            wgt = (wts[a + 1] * shifted[d + 2, b + 1]).reshape(wshape)
            tap = jax.lax.index_in_dim(taps[a], dd + 2, off_axis, keepdims=False)
            acc = acc + jnp.asarray(wgt) * tap
        out.append(acc)
    return jnp.stack(out, axis=off_axis)


def galerkin_line(line: list, axis: int, coarse_offsets=(-2, -1, 0, 1, 2)) -> list:
    """:func:`galerkin_axis` of one line of a stencil given as planes: ``line[2 + dd]`` (h, w) is
    the coupling at fine offset dd along ``axis`` (0 = y, 1 = x), at one fixed offset along the
    other axis. Returns the coarse planes for the offsets D in ``coarse_offsets``, with the same
    sums in the same order as the stacked form. The planes stay separate arrays and are padded
    only at half size, so nothing (5, 5, h, w)-sized is formed (used for the fine level only:
    1.2 GB less at 12 MP; it has 25x as many operations to compile, which the small coarse
    levels do not need to pay)."""
    n = line[0].shape[axis]
    nc, wts, shifted = axis_weights(n)
    wshape = (nc, 1) if axis == 0 else (nc,)  # weights broadcast along ``axis``

    def grow(x, front, back):  # zero rows / columns at the ends of a strided (half-size) slice
        pad = [(0, 0), (0, 0)]
        pad[axis] = (front, back)
        return jnp.pad(x, pad)

    def taps(plane):
        """{a: fine samples 2 I + a, I = 0 .. nc - 1 (zero outside)}: strided slices of the plane
        itself, padded only at half size (a padded full-size copy of each plane is what XLA
        would otherwise materialise: 25 of them, 1.2 GB at 12 MP)."""
        return {
            -1: grow(jax.lax.slice_in_dim(plane, 1, max(1, 2 * nc - 2), 2, axis), 1, 0),
            0: jax.lax.slice_in_dim(plane, 0, 2 * nc - 1, 2, axis),
            1: grow(jax.lax.slice_in_dim(plane, 1, n, 2, axis), 0, nc - n // 2),
        }

    tapped = [taps(p) for p in line]
    out = []
    for d in coarse_offsets:
        acc = 0.0
        for a, b, dd in galerkin_terms(d):
            wgt = (wts[a + 1] * shifted[d + 2, b + 1]).reshape(wshape)
            acc = acc + jnp.asarray(wgt) * tapped[dd + 2][a]
        out.append(acc)
    return out


def fine_planes(coeffs: jax.Array, diag: jax.Array):
    """The fine level's planes as a function ``plane(i, j, one)`` (offset (i - 2, j - 2)) for
    :func:`galerkin_fine`: the backward (shifted) planes are formed from ``coeffs[k] * one``, so
    that each call with a new (data-dependent) ``one`` is a distinct, short-lived array."""
    where = {}
    for k, (dy, dx) in enumerate(STENCIL_OFFSETS):
        where[2 + dy, 2 + dx] = (k, 0, 0)
        where[2 - dy, 2 - dx] = (k, -dy, -dx)

    def plane(i, j, one):
        if (i, j) == (2, 2):
            return diag
        k, dy, dx = where[i, j]
        return -coeffs[k] if (dy, dx) == (0, 0) else -shifted(coeffs[k] * one, dy, dx)

    return plane


def galerkin_fine(plane, one) -> list:
    """P^T A P (both axes, not symmetrised) of the fine level (or of a large coarse level given
    as ``lambda i, j, _: stencil[i, j]``), one coarse plane at a time: the
    y pass of coarse row offset i for one fine column offset, ..., then the row's x pass, then
    row i + 1, ordered by data dependencies (:func:`dhde.ordering.after`). ``plane(i, j, one)``
    gives the fine plane of offset (i - 2, j - 2) (:func:`fine_planes`, whose shifted planes a
    step reads are formed for that step alone). XLA therefore holds one row of y-pass planes
    instead of all 25, and at most three shifted coefficient planes instead of twelve: the
    setup's temporaries drop from 25.8 to 9.5 (H, W) planes (0.8 GB less at 12 MP). The same
    sums as :func:`galerkin_line` over whole axes, bit for bit (a test checks it)."""
    rows = []
    for i in range(5):
        yrow = []
        for o in range(5):
            line = [plane(k, o, one) for k in range(5)]
            yrow.append(fence(galerkin_line(line, 0, (i - 2,))[0], one))
            one = after(one, yrow[-1])
        rows.append([fence(p, one) for p in galerkin_line(yrow, 1)])
        one = after(one, *rows[-1])
    return rows
