"""The matting Laplacian of a guidance image (Levin et al. 2008; paper Eq. 7).

For every 3x3 window w_k lying fully inside the image (as in Levin's ``getLaplacian``; border
pixels belong to fewer windows) with colours I (9x3), mean mu_k and biased covariance Sigma_k,

    A(i, j) = sum_{k: i, j in w_k} (1 + (I_i - mu_k)^T (Sigma_k + e I_3)^-1 (I_j - mu_k)) / 9,
    L = diag(A 1) - A,

which equals Eq. 7 because every window's rows of A sum to exactly 1. ``e`` is ``eps`` in the
authors' code (``eps_mode="code"``, the default) and ``eps / 9`` in the paper
(``eps_mode="paper"``). Levin's option of skipping windows inside known regions is not used.

Float32 representation (:func:`matting_laplacian_coefficients`): the 25-point stencil in
Laplacian form. ``coeffs[k, y, x] = A(p, p + STENCIL_OFFSETS[k])`` for p = (y, x) and the 12
"forward" offsets of the 5x5 neighbourhood, and

    (L x)_p = sum_k coeffs[k, p] (x_p - x_{p+d_k}) + coeffs[k, p-d_k] (x_p - x_{p-d_k}),

which is symmetric and has zero row sums by construction. The per-window terms are computed
without forming Sigma_k = E[I I^T] - mu mu^T (catastrophic cancellation in float32): with the
colours centred per window, C (9x3), lam = 9 e and the Cholesky factor G of C^T C + lam I_3,
(I_i - mu)^T (Sigma + e I)^-1 (I_j - mu) / 9 = z_i . z_j with Z = C G^-T (forward
substitution). Applying the stencil then matches the float64 matrix to ~1e-6..2e-5 relative
with the default eps_mode (up to ~5e-4 for nearly grey edges with ``eps_mode="paper"``, whose
regulariser is 9x smaller), where the guided-filter form with (Sigma + eps I)^-1 in float32
loses ~1e-2 at eps = 1e-5.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from dhde import checks
from dhde.ordering import after

#: Default regularisation (paper Sec. 5.3 and the authors' code).
EPS = 1e-5
#: The 12 forward offsets (dy, dx) of the 5x5 neighbourhood; the other 12 are their negatives.
STENCIL_OFFSETS = tuple(
    (dy, dx) for dy in range(0, 3) for dx in range(-2, 3) if dy > 0 or (dy == 0 and dx > 0)
)
_WINDOW = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
EPS_MODES = ("code", "paper")


def regularizer(eps: float = EPS, eps_mode: str = "code") -> float:
    """The ridge ``lam`` added to C^T C (= 9 Sigma) per window, the ``lam`` argument of
    :func:`stencil_coefficients`: 9 eps ("code", the authors' ``Sigma + eps I``) or eps
    ("paper", ``Sigma + eps / 9 I``). ``eps`` > 0, a number (checked; raises ValueError
    otherwise) or a traced scalar (not checked)."""
    checks.choice(eps_mode, "eps_mode", EPS_MODES)
    if isinstance(eps, jax.core.Tracer):
        return 9.0 * eps if eps_mode == "code" else eps
    if not (isinstance(eps, (int, float, np.floating)) and not isinstance(eps, bool) and np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    return 9.0 * eps if eps_mode == "code" else eps


def check_guide(guide) -> None:
    """A guide of shape (H, W, 3), H, W >= 3, finite (values checked only when concrete)."""
    shape = np.shape(guide)
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"guide must have shape (H, W, 3), got {shape}")
    if shape[0] < 3 or shape[1] < 3:
        raise ValueError(f"guide must be at least 3x3 (one 3x3 window), got {shape[:2]}")
    if not isinstance(guide, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(guide))):
        raise ValueError("guide contains NaN or infinite values")


#: Rows per band of :func:`stencil_coefficients` on large images: the per-window algebra keeps
#: ~37 (H, W) float32 planes of temporaries (1.8 GB at 12 MP), so images of more than
#: ``BAND_PIXELS`` pixels are processed in bands of ``ceil(BAND_PIXELS / W)`` output rows (same
#: numbers bit for bit; each band recomputes 4 halo rows).
BAND_PIXELS = 1_000_000


def _window_terms(g: jax.Array, lam: jax.Array, valid_rows: jax.Array | None = None) -> list:
    """The 12 coefficient planes of a (3, h, w) guide slab, (h, w) each: every 3x3 window lying
    fully inside the slab contributes; ``valid_rows`` (h - 2,) bool drops the windows centred on
    slab rows 1 + i where it is False (None: all)."""
    # Everything is kept as lists of (h-2, w-2) planes so that XLA fuses the per-window algebra.
    h, w = g.shape[1:]
    cols = [g[:, 1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] for dy, dx in _WINDOW]
    mu = sum(cols) / 9.0
    cen = [c - mu for c in cols]  # 9 x (3, h-2, w-2): colours centred per window
    m = {  # lower triangle of M = C^T C + lam I_3, one (h-2, w-2) plane per entry
        (i, j): sum(c[i] * c[j] for c in cen) + (lam if i == j else 0.0)
        for i in range(3)
        for j in range(i + 1)
    }
    # Cholesky M = G G^T of the 3x3 M = C^T C + lam I (formed from centred colours).
    g00 = jnp.sqrt(m[0, 0])
    g10, g20 = m[1, 0] / g00, m[2, 0] / g00
    g11 = jnp.sqrt(m[1, 1] - g10 * g10)
    g21 = (m[2, 1] - g20 * g10) / g11
    g22 = jnp.sqrt(m[2, 2] - g20 * g20 - g21 * g21)
    # Rows of Z = C G^-T by forward substitution. True divisions (not multiplications by
    # reciprocals) mark these planes as expensive, so XLA materialises them once instead of
    # re-computing them inside each of the 12 output fusions (optimization_barrier is dropped
    # by the CPU pipeline before fusion).
    q = [[], [], []]
    for c in cen:
        z0 = c[0] / g00
        z1 = (c[1] - g10 * z0) / g11
        z2 = (c[2] - g20 * z0 - g21 * z1) / g22
        for i, zi in enumerate((z0, z1, z2)):
            q[i].append(zi)
    out = [jnp.zeros((h, w), jnp.float32) for _ in STENCIL_OFFSETS]
    for a, (ay, ax) in enumerate(_WINDOW):
        for b, (by, bx) in enumerate(_WINDOW):
            d = (by - ay, bx - ax)
            if d not in STENCIL_OFFSETS:
                continue
            val = 1.0 / 9.0 + q[0][a] * q[0][b] + q[1][a] * q[1][b] + q[2][a] * q[2][b]
            if valid_rows is not None:
                val = jnp.where(valid_rows[:, None], val, 0.0)
            k = STENCIL_OFFSETS.index(d)
            out[k] = out[k] + jnp.pad(val, ((1 + ay, 1 - ay), (1 + ax, 1 - ax)))
    return out


def _band_rows(h: int, w: int, band_pixels: int) -> int:
    """Output rows per band (static): all ``h`` when the image has at most ``band_pixels``."""
    return h if h * w <= band_pixels else max(8, -(-band_pixels // w))


@partial(jax.jit, static_argnames=("band_pixels",))
def stencil_coefficients(guide: jax.Array, lam: jax.Array, band_pixels: int = BAND_PIXELS) -> jax.Array:
    """The jit-safe stage of :func:`matting_laplacian_coefficients`: guide (H, W, 3) float32,
    H, W >= 3, ``lam`` float32 scalar from :func:`regularizer` (traced); returns (12, H, W) float32.

    Images of more than ``band_pixels`` pixels (static) are computed in row bands inside a
    ``fori_loop``, which bounds the temporaries to ~37 band-sized planes; the result is the same
    bit for bit."""
    g = jnp.moveaxis(guide.astype(jnp.float32), -1, 0)  # (3, H, W)
    h, w = g.shape[1:]
    rows = _band_rows(h, w, band_pixels)
    if rows >= h:
        return jnp.stack(_window_terms(g, lam), 0)
    n_bands = -(-h // rows)
    # The padded guide and the output's zero fill below depend on ``lam`` (through ``zero``, a
    # value-preserving tie): a plain ``jnp.zeros`` has no inputs, and XLA's scheduler placed it at
    # the start of ``estimate_core``, holding 12 planes through the rolling guidance and bilateral
    # filters, and it padded the guide (3 planes) as soon as the guide existed. Temporaries at
    # 3000x4000: 43.3 -> 38.1 planes with the tie on the fill, 35.4 -> 35.3 on the guide.
    zero = after(jnp.float32(0.0), lam)
    gp = jnp.pad(g + zero, ((0, 0), (2, 2), (0, 0)), mode="edge")  # padded row r + 2 = image row r

    def band(i, out):
        r0 = jnp.minimum(i * rows, h - rows)  # the last band overlaps its neighbour (same values)
        slab = jax.lax.dynamic_slice_in_dim(gp, r0, rows + 4, axis=1)  # image rows r0 - 2 .. r0 + rows + 1
        centre = r0 - 1 + jnp.arange(rows + 2)  # image row of each window centre of the slab
        terms = _window_terms(slab, lam, (centre >= 1) & (centre <= h - 2))
        return jax.lax.dynamic_update_slice_in_dim(out, jnp.stack(terms, 0)[:, 2 : rows + 2], r0, axis=1)

    return jax.lax.fori_loop(0, n_bands, band, jnp.full((len(STENCIL_OFFSETS), h, w), zero, jnp.float32))


def matting_laplacian_coefficients(guide, eps: float = EPS, *, eps_mode: str = "code") -> jax.Array:
    """Float32 25-point stencil of the matting Laplacian (see the module docstring).

    Args:
      guide: (H, W, 3) float array, colours nominally in [0, 1]; H, W >= 3.
      eps: regularisation (> 0), default 1e-5.
      eps_mode: "code" (``Sigma + eps I``, default) or "paper" (``Sigma + eps / 9 I``).

    Returns:
      ``coeffs`` (12, H, W) float32: ``coeffs[k, y, x] = -L(p, p + d_k)`` for ``p = (y, x)`` and
      ``d_k = STENCIL_OFFSETS[k]`` (zero where ``p + d_k`` lies outside the image). Entries can be
      negative (the affinities of Eq. 7 are not M-matrix weights); L itself is PSD.
    """
    check_guide(guide)
    return stencil_coefficients(jnp.asarray(guide, jnp.float32), jnp.float32(regularizer(eps, eps_mode)))


def stencil_shift(x: jax.Array, dy: int, dx: int, r: int = 2) -> jax.Array:
    """out[p] = x[p + (dy, dx)], zero outside; works on the last two axes (|dy|, |dx| <= r static)."""
    h, w = x.shape[-2:]
    xp = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(r, r), (r, r)])
    return xp[..., r + dy : r + dy + h, r + dx : r + dx + w]


def _laplacian_apply(coeffs: jax.Array, x: jax.Array) -> jax.Array:
    out = jnp.zeros_like(x)
    for k, (dy, dx) in enumerate(STENCIL_OFFSETS):
        flux = coeffs[k] * (x - stencil_shift(x, dy, dx))  # on edge (p, p + d): +flux to p, -flux to p + d
        out = out + flux - stencil_shift(flux, -dy, -dx)
    return out


def _laplacian_diagonal(coeffs: jax.Array) -> jax.Array:
    return sum(coeffs[k] + stencil_shift(coeffs[k], -dy, -dx) for k, (dy, dx) in enumerate(STENCIL_OFFSETS))


def _check_coeffs(coeffs) -> None:
    shape = np.shape(coeffs)
    if len(shape) != 3 or shape[0] != len(STENCIL_OFFSETS):
        raise ValueError(f"coeffs must have shape (12, H, W), got {shape}")


def laplacian_apply(coeffs, x) -> jax.Array:
    """L x for the stencil ``coeffs`` (12, H, W) and ``x`` (H, W); float32 (H, W). Jit-safe."""
    _check_coeffs(coeffs)
    if np.shape(x) != np.shape(coeffs)[1:]:
        raise ValueError(f"x must have shape {np.shape(coeffs)[1:]}, got {np.shape(x)}")
    return _laplacian_apply(jnp.asarray(coeffs, jnp.float32), jnp.asarray(x, jnp.float32))


def laplacian_diagonal(coeffs) -> jax.Array:
    """diag(L) (H, W) float32 of the stencil ``coeffs`` (12, H, W). Jit-safe."""
    _check_coeffs(coeffs)
    return _laplacian_diagonal(jnp.asarray(coeffs, jnp.float32))


def system_apply(coeffs, mass, x) -> jax.Array:
    """(L + diag(mass)) x: coeffs (12, H, W), mass and x (H, W) float32 -> (H, W). Jit-safe."""
    return laplacian_apply(coeffs, x) + mass * x


def system_operator(coeffs, mass):
    """The propagation operator ``x -> (L + diag(mass)) x`` as a callable (the ``A`` argument of
    ``jax.scipy.sparse.linalg.cg``); coeffs (12, H, W), mass (H, W) float32."""
    return lambda x: system_apply(coeffs, mass, x)
