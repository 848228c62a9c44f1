"""Where the sigma error of a defocus map comes from (data sets with a ground-truth sigma map).

The full-map MAE mixes three sources: the classifier's error at the sparse points, the
propagation's error between them, and pixels so far from any sparse point that the
propagation has nothing to go on. :func:`sigma_error_budget` separates them for one
:class:`dhde.estimation.options.DefocusResult`:

* ``sparse_mae``: MAE of the sparse sigma at the points that carry one (the classifier);
* ``filtered_mae``: the same after the probability-joint bilateral filter;
* ``oracle_mae``: the full-map MAE when the *ground truth* replaces the sparse values at the
  same points and is propagated with the same guidance image and solver options (and the same
  clip): the error the propagation itself leaves, i.e. what a perfect classifier would score;
* ``far_fraction`` / ``far_mae``: the share of pixels farther than ``far`` px (Euclidean) from
  every sparse point, and the MAE of the map there.
"""

from __future__ import annotations

import numpy as np

from dhde import checks
from dhde.evaluation.metrics import sigma_mae

#: Pixels farther than this from every sparse point count as "far" (px, Euclidean).
FAR = 30.0


def sigma_error_budget(result, sigma_gt, options, *, far: float = FAR) -> dict[str, float]:
    """Error decomposition of one estimate against a ground-truth sigma map.

    Args:
      result: a :class:`dhde.estimation.options.DefocusResult` (``defocus``, ``sparse``, ``filtered``,
        ``mask``, ``guidance``), of one (H, W) image.
      sigma_gt: (H, W) finite ground-truth sigma in pixels.
      options: the :class:`dhde.estimation.options.EstimateOptions` the result was made with (gamma,
        eps, tol, maxiter, preconditioner and clip, up to ``dhde.estimation.options.output_ceiling``, are
        reused for the oracle solve).
      far: distance in pixels beyond which a pixel counts as far from the sparse points (> 0).

    Returns:
      dict of floats: ``sparse_mae``, ``filtered_mae``, ``oracle_mae``, ``far_fraction`` (in
      [0, 1]) and ``far_mae`` (NaN when no pixel is that far). All MAEs in pixels of sigma.

    Raises:
      ValueError: shapes disagree, the mask is empty, NaN in the ground truth, or far <= 0.
    """
    from scipy import ndimage

    from dhde.propagation import solver as propagation
    from dhde.estimation.options import output_ceiling
    from dhde.labels import SIGMA_MIN

    where = "sigma_error_budget"
    mask = np.asarray(result.mask, bool)
    gt = checks.sigma_map(sigma_gt, where, "sigma_gt", shape=mask.shape, nonnegative=False)
    if not mask.any():
        raise ValueError(f"{where}: the result has no sparse points (empty mask)")
    checks.scalar(far, "far (px)", lo=0.0, lo_open=True, where=where)
    d = np.asarray(result.defocus, np.float32)
    sparse = np.asarray(result.sparse, np.float32)
    filtered = np.asarray(result.filtered, np.float32)
    oracle = propagation.propagate(
        np.where(mask, gt, 0.0).astype(np.float32), mask, np.asarray(result.guidance, np.float32),
        gamma=options.gamma, eps=options.eps, tol=options.tol, maxiter=options.maxiter,
        preconditioner=options.preconditioner, x0=np.full(gt.shape, gt[mask].mean(), np.float32),
    ).defocus
    oracle = np.asarray(oracle)
    if options.clip:
        oracle = np.clip(oracle, SIGMA_MIN, output_ceiling(options, gt.shape))
    dist = ndimage.distance_transform_edt(~mask)
    is_far = dist > far
    return {
        "sparse_mae": float(np.abs(sparse[mask] - gt[mask]).mean()),
        "filtered_mae": float(np.abs(filtered[mask] - gt[mask]).mean()),
        "oracle_mae": sigma_mae(oracle, gt),
        "far_fraction": float(is_far.mean()),
        "far_mae": float(np.abs(d[is_far] - gt[is_far]).mean()) if is_far.any() else float("nan"),
    }
