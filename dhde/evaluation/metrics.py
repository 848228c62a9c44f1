"""Per-image metrics of defocus maps (paper section 5.3) and sigma-unit errors.

Blur detection (CUHK data set, Shi et al. 2014): a defocus map (H, W) is compared with a binary
ground-truth mask (H, W), white / True = blurred.

* :func:`segmentation_accuracy`: the paper's Eq. 13 threshold
  ``tau = alpha v_max + (1 - alpha) v_min`` (alpha = 0.3), predicted blurred = ``defocus > tau``,
  accuracy = fraction of pixels classified correctly.
* :func:`normalized_mae`: mean absolute difference between the min-max normalised map
  ``(d - v_min) / (v_max - v_min)`` (a constant map normalises to 0) and the 0/1 mask.
* :func:`binary_scores`: the literature protocol (normalised map binarised at 0.5: precision,
  recall, F, IoU, MAE of one image). :func:`f_measure` is F_beta of precision / recall values.

Threshold sweeps, precision-recall curves over a data set, their maximum F and the paper's
precision-recall over absolute sigma thresholds are in :mod:`dhde.evaluation.pr_curves`.

Defocus-map error in sigma units (RTF data set, synthetic scenes): :func:`disk_radius_to_sigma`
converts the RTF disk-radius maps with the table of ``convertion.mat`` ([sigma, radius] rows),
:func:`sigma_mae` is the mean absolute error in pixels of Gaussian standard deviation.

Everything here is NumPy (float64 inside, Python floats out): the metrics are cheap, run once per
image and need exact integer counts. Inputs are checked with :mod:`dhde.checks` (a wrong type
raises :class:`dhde.checks.InputTypeError`, both ``TypeError`` and ``ValueError``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dhde import checks

#: The paper's segmentation parameter alpha (Eq. 13).
DEFAULT_ALPHA = 0.3
#: beta^2 of the F-measure (salient-object convention, weights precision more than recall).
DEFAULT_BETA2 = 0.3
#: The RTF variable names.
RTF_MAP_KEY = "blurMap"
RTF_CONVERSION_KEY = "convertion"
#: Threshold of the recent blur-detection tables on the min-max normalised map.
LITERATURE_THRESHOLD = 0.5


# --------------------------------------------------------------------------- validation


def _real_dtype(dtype) -> bool:
    return dtype != np.bool_ and (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer))


def as_map(x, name: str = "defocus") -> np.ndarray:
    """A checked (H, W) map as float64 NumPy (the metrics' working precision).

    Args:
      x: (H, W) real (integer or float, not bool) array or nested list, finite, non-empty.
      name: the argument's name in error messages.

    Returns:
      np.ndarray float64 (H, W), a copy.

    Raises:
      InputTypeError: not an array, or a bool / non-numeric dtype.
      ValueError: not 2-D, empty, NaN or infinite values.
    """
    arr = np.asarray(checks.as_array(x, name))
    if not _real_dtype(arr.dtype):
        raise checks.InputTypeError(f"{name} must be a real (integer or float) array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (H, W), got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def as_binary_mask(mask, name: str = "gt") -> np.ndarray:
    """A ground-truth mask as (H, W) bool, True = blurred.

    Args:
      mask: (H, W) bool; or integers, where a mask whose maximum is <= 1 is read as 0/1 and any
        other as 8-bit (``> 127`` = blurred, the CUHK PNGs are 0/255); or floats in [0, 1]
        (``>= 0.5`` = blurred). An (H, W, C) mask with equal channels is reduced to its first.
      name: the argument's name in error messages.

    Returns:
      np.ndarray bool (H, W).
    """
    arr = np.asarray(checks.as_array(mask, name, sequences=False))
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
        if arr.shape[-1] > 1 and not np.all(arr[..., :3] == arr[..., :1]):
            raise ValueError(f"{name} has {arr.shape[-1]} channels that differ; expected a grey mask")
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (H, W), got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype == np.bool_:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0:
            raise ValueError(f"{name} has negative values")
        return arr > (0 if arr.max() <= 1 else 127)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(
                f"{name} is a float mask with values in [{arr.min():.4g}, {arr.max():.4g}]; "
                "expected [0, 1]"
            )
        return arr >= 0.5
    raise checks.InputTypeError(f"{name} has unsupported dtype {arr.dtype}")


def map_and_mask(defocus, gt_mask) -> tuple[np.ndarray, np.ndarray]:
    """:func:`as_map` of ``defocus`` and :func:`as_binary_mask` of ``gt_mask``, of one shape (H, W)."""
    d = as_map(defocus, "defocus")
    g = as_binary_mask(gt_mask, "gt")
    if d.shape != g.shape:
        raise ValueError(f"defocus {d.shape} and gt {g.shape} must have the same shape")
    return d, g


def check_alpha(alpha) -> float:
    """The Eq. 13 parameter alpha, a real number in [0, 1] -> float."""
    return checks.scalar(alpha, "alpha", lo=0.0, hi=1.0)


# --------------------------------------------------------------------------- per image


def normalize_map(defocus) -> np.ndarray:
    """Min-max normalisation ``(d - v_min) / (v_max - v_min)`` of a map (H, W) to [0, 1].

    A constant map gives all zeros. Returns float64 (H, W).
    """
    d = as_map(defocus)
    lo, hi = d.min(), d.max()
    if hi <= lo:
        return np.zeros_like(d)
    return np.clip((d - lo) / (hi - lo), 0.0, 1.0)


def segmentation_threshold(defocus, alpha: float = DEFAULT_ALPHA) -> float:
    """The paper's Eq. 13 threshold ``tau = alpha v_max + (1 - alpha) v_min`` in map units."""
    d = as_map(defocus)
    alpha = check_alpha(alpha)
    return float(alpha * d.max() + (1.0 - alpha) * d.min())


def segment(defocus, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Binary blur segmentation (H, W) bool: True (blurred) where ``defocus > tau`` (Eq. 13).

    A constant map has no pixel above tau: everything is predicted sharp.
    """
    d = as_map(defocus)
    alpha = check_alpha(alpha)
    return d > alpha * d.max() + (1.0 - alpha) * d.min()


def segmentation_accuracy(defocus, gt_mask, alpha: float = DEFAULT_ALPHA) -> float:
    """Fraction of pixels whose Eq. 13 segmentation matches the ground truth.

    Args:
      defocus: (H, W) real map, larger = more blurred (sigma in pixels or any monotone score).
      gt_mask: (H, W) mask, True / white = blurred (see :func:`as_binary_mask`).
      alpha: in [0, 1]; tau = alpha v_max + (1 - alpha) v_min; predicted blurred = defocus > tau.

    Returns:
      accuracy in [0, 1] (Python float).
    """
    d, g = map_and_mask(defocus, gt_mask)
    alpha = check_alpha(alpha)
    pred = d > alpha * d.max() + (1.0 - alpha) * d.min()
    return float(np.mean(pred == g))


def normalized_mae(defocus, gt_mask) -> float:
    """Mean absolute error between the min-max normalised map and the 0/1 mask, in [0, 1]."""
    d, g = map_and_mask(defocus, gt_mask)
    return float(np.mean(np.abs(normalize_map(d) - g)))


def vacuous_ratio(num, den) -> np.ndarray:
    """``num / den`` elementwise as float64, 1 where ``den`` is 0 (a vacuous precision or
    recall: no prediction = no false alarm, no positive = nothing missed)."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    return np.where(den > 0, num / np.maximum(den, 1.0), 1.0)


def f_measure(precision, recall, beta2: float = DEFAULT_BETA2) -> np.ndarray:
    """F_beta = (1 + beta2) P R / (beta2 P + R), elementwise; 0 where P = R = 0.

    Args:
      precision, recall: arrays of one shape, finite, in [0, 1].
      beta2: beta^2, a finite number > 0.

    Returns:
      float64 array of that shape, in [0, 1].
    """
    p = np.asarray(precision, np.float64)
    r = np.asarray(recall, np.float64)
    if p.shape != r.shape:
        raise ValueError(f"precision {p.shape} and recall {r.shape} must have the same shape")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(r))):
        raise ValueError("precision and recall must be finite")
    if np.any((p < 0) | (p > 1) | (r < 0) | (r > 1)):
        raise ValueError("precision and recall must lie in [0, 1]")
    beta2 = checks.scalar(beta2, "beta2", lo=0.0, lo_open=True)
    den = beta2 * p + r
    return np.where(den > 0, (1.0 + beta2) * p * r / np.where(den > 0, den, 1.0), 0.0)


def binary_scores(defocus, gt_mask, threshold: float = LITERATURE_THRESHOLD,
                  beta2: float = DEFAULT_BETA2) -> dict[str, float]:
    """Per-image scores of ``normalised map > threshold`` against the mask (literature protocol).

    The protocol of the recent blur-detection tables (e.g. HiFST, BTBNet, DeFusionNet): the map
    is min-max normalised to [0, 1], binarised at 0.5, and scored per image; MAE is
    :func:`normalized_mae` (no binarisation).

    Args:
      defocus: (H, W) real map, larger = more blurred. gt_mask: (H, W), True / white = blurred.
      threshold: on the normalised map, in [0, 1]. beta2: beta^2 of the F-measure (> 0).

    Returns:
      dict of floats in [0, 1]: ``precision``, ``recall``, ``f`` (F_beta of those two; 0 when
      both are 0), ``iou`` (|pred & gt| / |pred | gt|; 1 when both are empty), ``mae``.
      Vacuous precision / recall (0 / 0) count as 1, as in the sweeps.
    """
    d, g = map_and_mask(defocus, gt_mask)
    t = checks.scalar(threshold, "threshold", lo=0.0, hi=1.0)
    checks.scalar(beta2, "beta2", lo=0.0, lo_open=True)
    n = normalize_map(d)
    pred = n > t
    tp = int(np.sum(pred & g))
    fp = int(np.sum(pred & ~g))
    fn = int(np.sum(~pred & g))
    precision = float(vacuous_ratio(tp, tp + fp))
    recall = float(vacuous_ratio(tp, tp + fn))
    f = float(f_measure(np.array([precision]), np.array([recall]), beta2)[0])
    union = tp + fp + fn
    return {"precision": precision, "recall": recall, "f": f,
            "iou": tp / union if union else 1.0, "mae": float(np.mean(np.abs(n - g)))}


# --------------------------------------------------------------------------- sigma units


def _check_table(conversion_table) -> np.ndarray:
    t = np.asarray(checks.as_array(conversion_table, "conversion_table"))
    if t.ndim != 2 or t.shape[1] != 2 or t.shape[0] < 2:
        raise ValueError(f"conversion_table must have shape (N >= 2, 2) [sigma, radius], got {t.shape}")
    if not (np.issubdtype(t.dtype, np.floating) or np.issubdtype(t.dtype, np.integer)):
        raise checks.InputTypeError(f"conversion_table has unsupported dtype {t.dtype}")
    t = t.astype(np.float64)
    if not np.all(np.isfinite(t)):
        raise ValueError("conversion_table contains NaN or infinite values")
    if np.any(np.diff(t[:, 1]) <= 0) or np.any(np.diff(t[:, 0]) < 0):
        raise ValueError("conversion_table radii must increase strictly and sigmas must not decrease")
    return t


def disk_radius_to_sigma(radius, conversion_table) -> np.ndarray:
    """Disk-blur radius -> equivalent Gaussian sigma by linear interpolation in a table.

    Args:
      radius: array (any shape) of disk radii in pixels (the RTF ``blurMap``).
      conversion_table: (N, 2) rows of [Gaussian sigma, disk radius] (RTF ``convertion.mat``:
        23 rows, radius 0.5 .. 6.0, sigma 0.3 .. 3.275), radii strictly increasing.

    Returns:
      float32 array of the shape of ``radius``: sigma in pixels. Radii outside the table are
      clamped to its first / last row (no extrapolation).
    """
    t = _check_table(conversion_table)
    r = np.asarray(checks.as_array(radius, "radius"))
    if not (np.issubdtype(r.dtype, np.floating) or np.issubdtype(r.dtype, np.integer)):
        raise checks.InputTypeError(f"radius has unsupported dtype {r.dtype}")
    r = r.astype(np.float64)
    if not np.all(np.isfinite(r)):
        raise ValueError("radius contains NaN or infinite values")
    return np.interp(r, t[:, 1], t[:, 0]).astype(np.float32)


def load_conversion_table(path) -> np.ndarray:
    """Reads the RTF ``convertion.mat`` (variable ``convertion``, (N, 2) [sigma, radius]) as float64."""
    import scipy.io

    mat = scipy.io.loadmat(str(path))
    for key in (RTF_CONVERSION_KEY, "conversion"):
        if key in mat:
            return _check_table(mat[key])
    raise ValueError(f"{path}: no variable 'convertion' in {sorted(k for k in mat if not k.startswith('__'))}")


def sigma_mae(pred_sigma, gt_sigma, mask=None) -> float:
    """Mean absolute error in sigma units (pixels) between two maps (H, W).

    Args:
      pred_sigma, gt_sigma: (H, W) finite maps in pixels of Gaussian standard deviation.
      mask: optional (H, W) bool, the pixels to average over (e.g. valid ground truth).

    Returns:
      MAE (Python float).
    """
    p = as_map(pred_sigma, "pred_sigma")
    g = as_map(gt_sigma, "gt_sigma")
    if p.shape != g.shape:
        raise ValueError(f"pred_sigma {p.shape} and gt_sigma {g.shape} must have the same shape")
    err = np.abs(p - g)
    if mask is None:
        return float(err.mean())
    m = np.asarray(mask)
    if m.dtype != np.bool_ or m.shape != p.shape:
        raise ValueError(f"mask must be bool with shape {p.shape}, got {m.dtype} {m.shape}")
    if not m.any():
        raise ValueError("mask selects no pixel")
    return float(err[m].mean())


def rescale_map(defocus, out_range: Sequence[float] = (0.5, 2.0)) -> np.ndarray:
    """Maps a score map linearly onto ``out_range`` by min-max normalisation, float32 (H, W).

    Used to read a relative blur score (e.g. a baseline) as sigma; a constant map gives the
    lower end. ``out_range``: (lo, hi), finite, hi >= lo.
    """
    try:
        lo, hi = out_range
    except (TypeError, ValueError):
        raise ValueError(f"out_range must be a pair (lo, hi), got {out_range!r}") from None
    lo = checks.scalar(lo, "out_range[0]")
    hi = checks.scalar(hi, "out_range[1]", lo=lo)
    return (lo + (hi - lo) * normalize_map(defocus)).astype(np.float32)
