"""Reference float64 matting Laplacian (Levin et al. 2008; paper Eq. 7) as a sparse matrix.

Test-side reference for :mod:`dhde.propagation.matting`, whose float32 stencil
(``matting_laplacian_coefficients`` / ``laplacian_apply``) must match it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from dhde.propagation.matting import EPS, STENCIL_OFFSETS, check_guide, regularizer

_WINDOW = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def assemble_matting_laplacian(guide, eps: float = EPS, *, eps_mode: str = "code") -> sp.csr_matrix:
    """Reference float64 matting Laplacian as a sparse matrix (for tests and small images).

    Written straight from Eq. 7 like Levin's / pymatting's code: explicit covariance and inverse.

    Args:
      guide: (H, W, 3) array, colours nominally in [0, 1]; H, W >= 3.
      eps: regularisation (> 0).
      eps_mode: "code" adds ``eps`` to each window covariance (authors' code, default);
        "paper" adds ``eps / 9`` (Eq. 7, Levin et al.).

    Returns:
      (H*W, H*W) symmetric positive semi-definite ``scipy.sparse.csr_matrix`` (float64), pixels
      in row-major order (index y * W + x).
    """
    check_guide(guide)  # the library's input checks; the arithmetic below is independent
    regularizer(eps, eps_mode)
    g = np.asarray(guide, np.float64)
    h, w, _ = g.shape
    idx = np.arange(h * w).reshape(h, w)
    cols = np.stack([g[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] for dy, dx in _WINDOW], 2)
    ids = np.stack([idx[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] for dy, dx in _WINDOW], 2)
    cols, ids = cols.reshape(-1, 9, 3), ids.reshape(-1, 9)
    mu = cols.mean(1)
    cov = np.einsum("kai,kaj->kij", cols, cols) / 9.0 - np.einsum("ki,kj->kij", mu, mu)
    e = eps if eps_mode == "code" else eps / 9.0
    inv = np.linalg.inv(cov + e * np.eye(3))
    c = cols - mu[:, None]
    vals = (1.0 + np.einsum("kai,kij,kbj->kab", c, inv, c)) / 9.0
    rows = np.repeat(ids, 9, axis=1).ravel()
    colidx = np.tile(ids, (1, 9)).ravel()
    a = sp.csr_matrix((vals.ravel(), (rows, colidx)), shape=(h * w, h * w))
    return (sp.diags(np.asarray(a.sum(axis=1)).ravel()) - a).tocsr()


def coefficients_to_sparse(coeffs) -> sp.csr_matrix:
    """The stencil ``coeffs`` (12, H, W) as a float64 ``scipy.sparse.csr_matrix`` L (to compare with
    :func:`assemble_matting_laplacian`)."""
    assert np.ndim(coeffs) == 3 and np.shape(coeffs)[0] == len(STENCIL_OFFSETS), np.shape(coeffs)
    c = np.asarray(coeffs, np.float64)
    _, h, w = c.shape
    idx = np.arange(h * w).reshape(h, w)
    rows, cols, vals = [], [], []
    for k, (dy, dx) in enumerate(STENCIL_OFFSETS):
        y0, y1 = 0, h - dy
        x0, x1 = max(0, -dx), min(w, w - dx)
        p = idx[y0:y1, x0:x1].ravel()
        q = idx[y0 + dy : y1 + dy, x0 + dx : x1 + dx].ravel()
        v = c[k, y0:y1, x0:x1].ravel()
        rows += [p, q]
        cols += [q, p]
        vals += [-v, -v]
    off = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(h * w, h * w)
    )
    return (off - sp.diags(np.asarray(off.sum(axis=1)).ravel())).tocsr()
