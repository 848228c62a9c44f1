"""Error budget of a defocus result: against NumPy / SciPy references, and its errors."""

from typing import NamedTuple

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from dhde.evaluation.error_budget import sigma_error_budget
from dhde.estimation.inference import EstimateOptions
from reference.matting_laplacian import assemble_matting_laplacian


class _Result(NamedTuple):
    defocus: np.ndarray
    sparse: np.ndarray
    filtered: np.ndarray
    mask: np.ndarray
    guidance: np.ndarray


def _case(h=24, w=30, seed=0):
    rng = np.random.default_rng(seed)
    guide = rng.random((h, w, 3)).astype(np.float32)
    mask = np.zeros((h, w), bool)
    mask[3:6, 2:9] = True
    mask[15, 4:20] = True
    gt = (0.5 + 1.5 * rng.random((h, w))).astype(np.float32)
    sparse = np.where(mask, gt + rng.normal(0, 0.2, (h, w)), 0).astype(np.float32)
    filtered = np.where(mask, gt + rng.normal(0, 0.1, (h, w)), 0).astype(np.float32)
    defocus = (gt + rng.normal(0, 0.3, (h, w))).astype(np.float32)
    return _Result(defocus, sparse, filtered, mask, guide), gt


def test_matches_references():
    res, gt = _case()
    # a smooth truth partly outside the label range (so the clip matters), sampled densely, with
    # sparse values far from it (so an oracle built from them would be far off)
    gt = np.tile(np.linspace(0.2, 2.5, gt.shape[1], dtype=np.float32), (gt.shape[0], 1))
    mask = np.zeros(gt.shape, bool)
    mask[:, :12:3] = True  # the right part is far from every sparse point
    res = res._replace(mask=mask, sparse=np.where(mask, 2.0, 0).astype(np.float32))
    opts = EstimateOptions(tol=1e-6, maxiter=2000, gamma=0.5)  # follows the data: the clip acts
    far = 6.0
    b = sigma_error_budget(res, gt, opts, far=far)
    m = res.mask
    assert b["sparse_mae"] == pytest.approx(np.abs(res.sparse - gt)[m].mean(), rel=1e-6)
    assert b["filtered_mae"] == pytest.approx(np.abs(res.filtered - gt)[m].mean(), rel=1e-6)
    # brute-force distance to the nearest sparse point
    pts = np.argwhere(m)
    yy, xx = np.mgrid[: gt.shape[0], : gt.shape[1]]
    dist = np.sqrt(((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2).min(-1))
    is_far = dist > far
    assert b["far_fraction"] == pytest.approx(is_far.mean())
    assert b["far_mae"] == pytest.approx(np.abs(res.defocus - gt)[is_far].mean(), rel=1e-6)
    # oracle: (L + gamma D) x = gamma D gt solved directly in float64, then clipped
    L = assemble_matting_laplacian(res.guidance.astype(np.float64), opts.eps)
    D = sp.diags(m.ravel().astype(np.float64))
    x = spla.spsolve((L + opts.gamma * D).tocsc(), opts.gamma * (D @ gt.ravel().astype(np.float64)))
    ref = np.abs(np.clip(x.reshape(gt.shape), 0.5, 2.0) - gt).mean()
    assert b["oracle_mae"] == pytest.approx(ref, abs=1e-3)


def test_constant_truth_has_no_propagation_error():
    res, gt = _case(seed=1)
    b = sigma_error_budget(res, np.full_like(gt, 1.3), EstimateOptions())
    assert b["oracle_mae"] < 1e-4


def test_no_far_pixels_gives_nan_and_errors():
    res, gt = _case()
    assert np.isnan(sigma_error_budget(res, gt, EstimateOptions(), far=1e3)["far_mae"])
    with pytest.raises(ValueError, match="sigma_gt has shape"):
        sigma_error_budget(res, gt[:-1], EstimateOptions())
    with pytest.raises(ValueError, match="NaN"):
        sigma_error_budget(res, np.where(res.mask, np.nan, gt), EstimateOptions())
    with pytest.raises(ValueError, match="empty mask"):
        sigma_error_budget(res._replace(mask=np.zeros_like(res.mask)), gt, EstimateOptions())
    with pytest.raises(ValueError, match="far"):
        sigma_error_budget(res, gt, EstimateOptions(), far=0)
