"""Gaussian blur and Laplacians diagonalised by the DCT-II (half-sample symmetric borders).

With half-sample symmetric ("reflect", ``d c b a | a b c d``) boundary extension, convolving
a signal of length ``N`` with a symmetric kernel ``h`` is diagonal in the DCT-II basis, with
eigenvalue ``sum_n h_n cos(pi k n / N)`` (n over the whole kernel) at index ``k``. The same
holds for the Neumann Laplacian ``D^T D`` of forward differences whose last difference is
zero (eigenvalues ``2 - 2 cos(pi k / N)``). Blur and deconvolution therefore need no padding
or edge tapering and have no wrap-around ringing (reflective boundary conditions, Ng, Chan
and Tang, SIAM J. Sci. Comput. 1999).

Arrays are laid out (..., H, W) (channels first). Everything here is traceable: ``sigma``
may be a traced scalar, so one compilation serves every blur level.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Up to this sigma the eigenvalues come from the sampled kernel truncated at ceil(4 sigma)
#: (exactly :func:`dhde.filters.gaussian.gaussian_kernel1d`); above it from the Poisson-summed
#: spectrum of the untruncated sampled Gaussian (differences below 1e-4).
_TAP_SIGMA_MAX = 2.0
_TAPS = 8  # ceil(4 * _TAP_SIGMA_MAX)


def _dct_last(x: jax.Array) -> jax.Array:
    """Unnormalised DCT-II along the last axis, ``X_k = sum_n x_n cos(pi k (2n + 1) / 2N)``.

    Makhoul's algorithm: one real FFT of the even/odd-reordered signal and a twiddle
    (jax.scipy.fft.dct does the same but is slower on CPU).
    """
    n = x.shape[-1]
    v = jnp.concatenate([x[..., ::2], x[..., 1::2][..., ::-1]], axis=-1)
    k = jnp.arange(n // 2 + 1, dtype=jnp.float32)
    z = jnp.fft.rfft(v, axis=-1) * jnp.exp(-0.5j * jnp.pi * k / n).astype(jnp.complex64)
    # X_k = Re z_k (k <= N/2) and X_{N-k} = -Im z_k (1 <= k < N/2).
    return jnp.concatenate([z.real, -z.imag[..., 1 : (n + 1) // 2][..., ::-1]], axis=-1)


def _idct_last(xk: jax.Array) -> jax.Array:
    """Exact inverse of :func:`_dct_last` (a scaled DCT-III) along the last axis."""
    n = xk.shape[-1]
    m = n // 2 + 1
    k = jnp.arange(m, dtype=jnp.float32)
    x_nk = jnp.concatenate([jnp.zeros_like(xk[..., :1]), xk[..., ::-1][..., : m - 1]], axis=-1)
    z = (xk[..., :m] - 1j * x_nk) * jnp.exp(0.5j * jnp.pi * k / n).astype(jnp.complex64)
    v = jnp.fft.irfft(z, n=n, axis=-1)
    h = (n + 1) // 2
    even, odd = v[..., :h], v[..., h:][..., ::-1]
    if n % 2:
        odd = jnp.concatenate([odd, jnp.zeros(odd.shape[:-1] + (1,), odd.dtype)], axis=-1)
    return jnp.stack([even, odd], axis=-1).reshape(v.shape[:-1] + (2 * h,))[..., :n]


def dct2(x: jax.Array) -> jax.Array:
    """Unnormalised DCT-II over the last two axes (H, W); :func:`idct2` inverts it exactly.

    Operators diagonal in this basis (blur, Laplacian) do not depend on the normalisation.
    """
    y = _dct_last(x)
    return jnp.swapaxes(_dct_last(jnp.swapaxes(y, -1, -2)), -1, -2)


def idct2(x: jax.Array) -> jax.Array:
    """Inverse of :func:`dct2`."""
    y = _idct_last(jnp.swapaxes(x, -1, -2))
    return _idct_last(jnp.swapaxes(y, -1, -2))


def gaussian_eigenvalues(sigma: jax.Array, n: int) -> jax.Array:
    """DCT-II eigenvalues (n,) float32 of the 1-D sampled Gaussian of std ``sigma`` (>= 0).

    ``sigma = 0`` gives the identity (all ones).
    """
    sigma = jnp.asarray(sigma, jnp.float32)
    omega = jnp.pi * jnp.arange(n, dtype=jnp.float32) / n
    # Sampled kernel, radius ceil(4 sigma) <= _TAPS.
    s_small = jnp.clip(sigma, 1e-3, _TAP_SIGMA_MAX)
    taps = jnp.arange(1, _TAPS + 1, dtype=jnp.float32)
    h = jnp.exp(-(taps**2) / (2.0 * s_small**2))
    h = jnp.where(taps <= jnp.ceil(4.0 * s_small - 1e-4), h, 0.0)
    small = (1.0 + 2.0 * jnp.cos(omega[:, None] * taps[None, :]) @ h) / (1.0 + 2.0 * jnp.sum(h))
    # Untruncated sampled Gaussian by Poisson summation (three aliases suffice for sigma > 2).
    s_big = jnp.maximum(sigma, _TAP_SIGMA_MAX)
    m = 2.0 * jnp.pi * jnp.arange(-1, 2, dtype=jnp.float32)
    spec = jnp.exp(-0.5 * s_big**2 * (omega[:, None] - m[None, :]) ** 2).sum(-1)
    big = spec / jnp.exp(-0.5 * s_big**2 * m**2).sum()
    return jnp.where(sigma <= _TAP_SIGMA_MAX, small, big)


def gaussian_transfer(sigma: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """Separable 2-D Gaussian DCT eigenvalues (H, W) float32."""
    return gaussian_eigenvalues(sigma, shape[0])[:, None] * gaussian_eigenvalues(sigma, shape[1])[None, :]


def laplacian_eigenvalues(shape: tuple[int, int]) -> jax.Array:
    """DCT-II eigenvalues (H, W) of ``Dx^T Dx + Dy^T Dy`` (forward differences, Neumann)."""
    h, w = shape
    ly = 2.0 - 2.0 * jnp.cos(jnp.pi * jnp.arange(h, dtype=jnp.float32) / h)
    lx = 2.0 - 2.0 * jnp.cos(jnp.pi * jnp.arange(w, dtype=jnp.float32) / w)
    return ly[:, None] + lx[None, :]


def blur(x: jax.Array, sigma: jax.Array) -> jax.Array:
    """Gaussian blur over the last two axes of (..., H, W), symmetric borders; ``sigma`` may be traced."""
    return idct2(dct2(x) * gaussian_transfer(sigma, x.shape[-2:]))


def grad(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Forward differences of (..., H, W) along W (x) and H (y); the last difference is 0."""
    gx = jnp.concatenate([x[..., 1:] - x[..., :-1], jnp.zeros_like(x[..., :1])], axis=-1)
    gy = jnp.concatenate([x[..., 1:, :] - x[..., :-1, :], jnp.zeros_like(x[..., :1, :])], axis=-2)
    return gx, gy


def grad_adjoint(wx: jax.Array, wy: jax.Array) -> jax.Array:
    """Adjoint of :func:`grad`: ``Dx^T wx + Dy^T wy`` (the last row/column of w is ignored)."""
    wx = wx.at[..., -1].set(0.0)
    wy = wy.at[..., -1, :].set(0.0)
    ax = jnp.concatenate([jnp.zeros_like(wx[..., :1]), wx[..., :-1]], axis=-1) - wx
    ay = jnp.concatenate([jnp.zeros_like(wy[..., :1, :]), wy[..., :-1, :]], axis=-2) - wy
    return ax + ay
