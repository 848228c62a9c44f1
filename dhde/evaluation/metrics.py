"""Evaluation metrics for defocus maps (paper section 5.3) and sigma-unit errors.

Blur detection (CUHK data set, Shi et al. 2014): a defocus map (H, W) is compared with a binary
ground-truth mask (H, W), white / True = blurred.

* :func:`segmentation_accuracy`: the paper's Eq. 13 threshold
  ``tau = alpha v_max + (1 - alpha) v_min`` (alpha = 0.3), predicted blurred = ``defocus > tau``,
  accuracy = fraction of pixels classified correctly.
* Threshold sweeps (:func:`best_threshold_accuracy`, precision-recall) work on the min-max
  normalised map ``(d - v_min) / (v_max - v_min)`` in [0, 1] (a constant map normalises to 0) with
  ``n_thresholds`` evenly spaced thresholds ``t`` in [0, 1] and the same rule, predicted blurred =
  ``normalised > t``, so the sweep at ``t = alpha`` is the Eq. 13 segmentation. One extra
  threshold ``-inf`` (every pixel blurred, recall 1) is put first.
* Precision-recall over a data set: by default precision and recall are computed per image and
  averaged over images at each threshold (``average="images"``, the convention of the CUHK
  benchmark and of salient-object evaluation); ``average="pixels"`` pools TP / FP / FN over all
  pixels of all images instead. Vacuous ratios 0 / 0 are 1 (no prediction = no false alarm,
  no positive = nothing missed).
* :func:`normalized_mae`: mean absolute difference between the normalised map and the 0/1 mask.

Defocus-map error in sigma units (RTF data set, synthetic scenes): :func:`disk_radius_to_sigma`
converts the RTF disk-radius maps with the table of ``convertion.mat`` ([sigma, radius] rows),
:func:`sigma_mae` is the mean absolute error in pixels of Gaussian standard deviation.

Everything here is NumPy (float64 inside, Python floats out): the metrics are cheap, run once per
image and need exact integer counts.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

import numpy as np

#: The paper's segmentation parameter alpha (Eq. 13).
DEFAULT_ALPHA = 0.3
#: Number of thresholds of the precision-recall / best-accuracy sweeps.
DEFAULT_N_THRESHOLDS = 256
#: beta^2 of the F-measure (salient-object convention, weights precision more than recall).
DEFAULT_BETA2 = 0.3
#: The RTF variable names.
RTF_MAP_KEY = "blurMap"
RTF_CONVERSION_KEY = "convertion"

_AVERAGES = ("images", "pixels")


# --------------------------------------------------------------------------- validation


def _as_map(x, name: str = "defocus") -> np.ndarray:
    """(H, W) finite real array -> float64."""
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{name} must be a real (integer or float) array, got dtype {arr.dtype}")
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

    Returns:
      np.ndarray bool (H, W).
    """
    if not hasattr(mask, "shape") or not hasattr(mask, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(mask).__name__}")
    arr = np.asarray(mask)
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
    raise TypeError(f"{name} has unsupported dtype {arr.dtype}")


def _pair(defocus, gt) -> tuple[np.ndarray, np.ndarray]:
    d = _as_map(defocus, "defocus")
    g = as_binary_mask(gt, "gt")
    if d.shape != g.shape:
        raise ValueError(f"defocus {d.shape} and gt {g.shape} must have the same shape")
    return d, g


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not (0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha


def _check_n(n_thresholds: int) -> int:
    if isinstance(n_thresholds, bool) or not isinstance(n_thresholds, (int, np.integer)):
        raise TypeError(f"n_thresholds must be an int, got {type(n_thresholds).__name__}")
    if n_thresholds < 2:
        raise ValueError(f"n_thresholds must be >= 2, got {n_thresholds}")
    return int(n_thresholds)


# --------------------------------------------------------------------------- per image


def normalize_map(defocus) -> np.ndarray:
    """Min-max normalisation ``(d - v_min) / (v_max - v_min)`` of a map (H, W) to [0, 1].

    A constant map gives all zeros. Returns float64 (H, W).
    """
    d = _as_map(defocus)
    return _normalize(d)


def _normalize(d: np.ndarray) -> np.ndarray:
    lo, hi = d.min(), d.max()
    if hi <= lo:
        return np.zeros_like(d)
    return np.clip((d - lo) / (hi - lo), 0.0, 1.0)


def segmentation_threshold(defocus, alpha: float = DEFAULT_ALPHA) -> float:
    """The paper's Eq. 13 threshold ``tau = alpha v_max + (1 - alpha) v_min`` in map units."""
    d = _as_map(defocus)
    alpha = _check_alpha(alpha)
    return float(alpha * d.max() + (1.0 - alpha) * d.min())


def segment(defocus, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Binary blur segmentation (H, W) bool: True (blurred) where ``defocus > tau`` (Eq. 13).

    A constant map has no pixel above tau: everything is predicted sharp.
    """
    d = _as_map(defocus)
    alpha = _check_alpha(alpha)
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
    d, g = _pair(defocus, gt_mask)
    alpha = _check_alpha(alpha)
    pred = d > alpha * d.max() + (1.0 - alpha) * d.min()
    return float(np.mean(pred == g))


def sweep_thresholds(n_thresholds: int = DEFAULT_N_THRESHOLDS) -> np.ndarray:
    """Thresholds of the sweeps on the normalised map: ``[-inf, linspace(0, 1, n)]`` (n + 1,)."""
    n = _check_n(n_thresholds)
    return np.concatenate([[-np.inf], np.linspace(0.0, 1.0, n)])


class PRCounts(NamedTuple):
    """Confusion counts of one image (or summed) at each sweep threshold, int64 (T,).

    ``thresholds`` (T,) are on the normalised map (the first is -inf); predicted blurred =
    normalised map > threshold. ``positives`` / ``negatives`` are the gt totals (scalars).
    """

    tp: np.ndarray
    fp: np.ndarray
    thresholds: np.ndarray
    positives: int
    negatives: int

    @property
    def fn(self) -> np.ndarray:
        return self.positives - self.tp

    @property
    def tn(self) -> np.ndarray:
        return self.negatives - self.fp


def _counts(d: np.ndarray, g: np.ndarray, thresholds: np.ndarray) -> PRCounts:
    n = _normalize(d)
    pos = np.sort(n[g])
    neg = np.sort(n[~g])
    # count of values strictly greater than t = len - #(values <= t)
    tp = pos.size - np.searchsorted(pos, thresholds, side="right")
    fp = neg.size - np.searchsorted(neg, thresholds, side="right")
    return PRCounts(tp.astype(np.int64), fp.astype(np.int64), thresholds, int(pos.size), int(neg.size))


def precision_recall_counts(
    defocus, gt_mask, n_thresholds: int = DEFAULT_N_THRESHOLDS
) -> PRCounts:
    """TP / FP (and FN / TN as properties) of one image at every sweep threshold.

    Args:
      defocus: (H, W) real map. gt_mask: (H, W) mask, True = blurred.
      n_thresholds: number of evenly spaced thresholds in [0, 1] (plus -inf first).

    Returns:
      :class:`PRCounts` with arrays of length ``n_thresholds + 1``.
    """
    d, g = _pair(defocus, gt_mask)
    return _counts(d, g, sweep_thresholds(n_thresholds))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    return np.where(den > 0, num / np.maximum(den, 1.0), 1.0)


def precision_recall_from_counts(counts: PRCounts) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) float64 (T,) of a :class:`PRCounts`; 0 / 0 counts as 1."""
    precision = _ratio(counts.tp, counts.tp + counts.fp)
    recall = _ratio(counts.tp, np.full_like(counts.tp, counts.positives))
    return precision, recall


def best_threshold_accuracy(
    defocus, gt_mask, n_thresholds: int = DEFAULT_N_THRESHOLDS
) -> float:
    """The best pixel accuracy over the threshold sweep of the normalised map.

    The sweep contains every ``t`` in ``linspace(0, 1, n_thresholds)`` (t = 1: all sharp) and
    t = -inf (all blurred), so the result is >= the larger class fraction and >=
    :func:`segmentation_accuracy` at any ``alpha`` on the grid.

    Returns:
      accuracy in [0, 1] (Python float).
    """
    d, g = _pair(defocus, gt_mask)
    c = _counts(d, g, sweep_thresholds(n_thresholds))
    correct = c.tp + c.tn
    return float(correct.max() / g.size)


def normalized_mae(defocus, gt_mask) -> float:
    """Mean absolute error between the min-max normalised map and the 0/1 mask, in [0, 1]."""
    d, g = _pair(defocus, gt_mask)
    return float(np.mean(np.abs(_normalize(d) - g)))


# --------------------------------------------------------------------------- data set level


class PrecisionRecallAccumulator:
    """Streams images into a data-set precision-recall curve.

    ``update(defocus, gt)`` adds one image; :meth:`curve` returns (precision, recall, thresholds)
    averaged over images (default) or pooled over pixels. Holds only per-image count arrays of
    length ``n_thresholds + 1``.
    """

    def __init__(self, n_thresholds: int = DEFAULT_N_THRESHOLDS):
        self.thresholds = sweep_thresholds(n_thresholds)
        self._precisions: list[np.ndarray] = []
        self._recalls: list[np.ndarray] = []
        self._tp = np.zeros(self.thresholds.shape, np.int64)
        self._fp = np.zeros(self.thresholds.shape, np.int64)
        self._positives = 0
        self._negatives = 0

    def __len__(self) -> int:
        return len(self._precisions)

    def update(self, defocus, gt_mask) -> PRCounts:
        """Adds one image (defocus (H, W), gt (H, W)); returns its counts."""
        d, g = _pair(defocus, gt_mask)
        c = _counts(d, g, self.thresholds)
        p, r = precision_recall_from_counts(c)
        self._precisions.append(p)
        self._recalls.append(r)
        self._tp += c.tp
        self._fp += c.fp
        self._positives += c.positives
        self._negatives += c.negatives
        return c

    @property
    def counts(self) -> PRCounts:
        """Counts summed over all pixels of all images so far."""
        return PRCounts(self._tp.copy(), self._fp.copy(), self.thresholds, self._positives, self._negatives)

    def curve(self, average: str = "images") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(precision, recall, thresholds), each float64 (n_thresholds + 1,).

        Args:
          average: ``"images"`` = mean over images of the per-image precision and recall;
            ``"pixels"`` = from TP / FP / FN summed over all pixels of all images.
        """
        if average not in _AVERAGES:
            raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
        if not self._precisions:
            raise ValueError("no images were added to the accumulator")
        if average == "images":
            p = np.mean(self._precisions, axis=0)
            r = np.mean(self._recalls, axis=0)
        else:
            p, r = precision_recall_from_counts(self.counts)
        return p, r, self.thresholds.copy()


def precision_recall_curve(
    defocus_maps: Iterable,
    gt_masks: Iterable,
    n_thresholds: int = DEFAULT_N_THRESHOLDS,
    average: str = "images",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Data-set precision-recall curve over lists of maps and masks (see the module docstring).

    Args:
      defocus_maps, gt_masks: equally long sequences of (H_i, W_i) maps and masks.
      n_thresholds: thresholds in [0, 1] on each normalised map (plus -inf first).
      average: ``"images"`` (mean of per-image curves) or ``"pixels"`` (pooled counts).

    Returns:
      (precision, recall, thresholds), float64 arrays of length ``n_thresholds + 1``; recall is
      non-increasing along the thresholds.
    """
    acc = PrecisionRecallAccumulator(n_thresholds)
    maps, masks = list(defocus_maps), list(gt_masks)
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} defocus maps but {len(masks)} gt masks")
    for d, g in zip(maps, masks):
        acc.update(d, g)
    return acc.curve(average)


def f_measure(precision, recall, beta2: float = DEFAULT_BETA2) -> np.ndarray:
    """F_beta = (1 + beta2) P R / (beta2 P + R), elementwise; 0 where P = R = 0. float64."""
    p = np.asarray(precision, np.float64)
    r = np.asarray(recall, np.float64)
    if p.shape != r.shape:
        raise ValueError(f"precision {p.shape} and recall {r.shape} must have the same shape")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(r))):
        raise ValueError("precision and recall must be finite")
    if np.any((p < 0) | (p > 1) | (r < 0) | (r > 1)):
        raise ValueError("precision and recall must lie in [0, 1]")
    beta2 = float(beta2)
    if not beta2 > 0:
        raise ValueError(f"beta2 must be > 0, got {beta2}")
    den = beta2 * p + r
    return np.where(den > 0, (1.0 + beta2) * p * r / np.where(den > 0, den, 1.0), 0.0)


def max_f_measure(precision, recall, beta2: float = DEFAULT_BETA2) -> float:
    """The largest F_beta over a precision-recall curve (arrays (T,)), in [0, 1]."""
    f = f_measure(precision, recall, beta2)
    if f.size == 0:
        raise ValueError("empty precision-recall curve")
    return float(f.max())


def evaluate_blur_detection(
    defocus_maps: Iterable,
    gt_masks: Iterable,
    alpha: float = DEFAULT_ALPHA,
    n_thresholds: int = DEFAULT_N_THRESHOLDS,
    beta2: float = DEFAULT_BETA2,
    average: str = "images",
) -> dict:
    """All CUHK blur-detection metrics of a set of maps in one pass.

    Returns:
      dict with ``accuracy`` (mean over images of :func:`segmentation_accuracy` at ``alpha``),
      ``best_accuracy`` (mean of :func:`best_threshold_accuracy`), ``max_f`` (of the data-set
      curve), ``mae`` (mean of :func:`normalized_mae`), ``precision``, ``recall``,
      ``thresholds`` (arrays of the curve) and ``n_images``.
    """
    alpha = _check_alpha(alpha)
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    pr = PrecisionRecallAccumulator(n_thresholds)
    accs, best, maes = [], [], []
    maps, masks = list(defocus_maps), list(gt_masks)
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} defocus maps but {len(masks)} gt masks")
    if not maps:
        raise ValueError("no images to evaluate")
    for d, g in zip(maps, masks):
        d, g = _pair(d, g)
        accs.append(np.mean((d > alpha * d.max() + (1.0 - alpha) * d.min()) == g))
        c = pr.update(d, g)
        best.append((c.tp + c.tn).max() / g.size)
        maes.append(np.mean(np.abs(_normalize(d) - g)))
    p, r, t = pr.curve(average)
    return {
        "accuracy": float(np.mean(accs)),
        "best_accuracy": float(np.mean(best)),
        "max_f": max_f_measure(p, r, beta2),
        "mae": float(np.mean(maes)),
        "precision": p,
        "recall": r,
        "thresholds": t,
        "n_images": len(maps),
    }


# --------------------------------------------------------------------------- sigma units


def _check_table(conversion_table) -> np.ndarray:
    t = np.asarray(conversion_table)
    if t.ndim != 2 or t.shape[1] != 2 or t.shape[0] < 2:
        raise ValueError(f"conversion_table must have shape (N >= 2, 2) [sigma, radius], got {t.shape}")
    if not (np.issubdtype(t.dtype, np.floating) or np.issubdtype(t.dtype, np.integer)):
        raise TypeError(f"conversion_table has unsupported dtype {t.dtype}")
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
    r = np.asarray(radius)
    if not (np.issubdtype(r.dtype, np.floating) or np.issubdtype(r.dtype, np.integer)):
        raise TypeError(f"radius has unsupported dtype {r.dtype}")
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
    p = _as_map(pred_sigma, "pred_sigma")
    g = _as_map(gt_sigma, "gt_sigma")
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
    lower end.
    """
    lo, hi = (float(v) for v in out_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi >= lo):
        raise ValueError(f"out_range must be finite (lo, hi) with hi >= lo, got {out_range}")
    return (lo + (hi - lo) * normalize_map(defocus)).astype(np.float32)


# --------------------------------------------------------------------------- literature protocols

#: Threshold of the recent blur-detection tables on the min-max normalised map.
LITERATURE_THRESHOLD = 0.5


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
    d, g = _pair(defocus, gt_mask)
    t = float(threshold)
    if not (np.isfinite(t) and 0.0 <= t <= 1.0):
        raise ValueError(f"threshold must lie in [0, 1], got {threshold!r}")
    if not (np.isfinite(beta2) and beta2 > 0):
        raise ValueError(f"beta2 must be a positive finite number, got {beta2!r}")
    n = _normalize(d)
    pred = n > t
    tp = int(np.sum(pred & g))
    fp = int(np.sum(pred & ~g))
    fn = int(np.sum(~pred & g))
    precision = float(_ratio(tp, tp + fp))
    recall = float(_ratio(tp, tp + fn))
    f = float(f_measure(np.array([precision]), np.array([recall]), beta2)[0])
    union = tp + fp + fn
    return {"precision": precision, "recall": recall, "f": f,
            "iou": tp / union if union else 1.0, "mae": float(np.mean(np.abs(n - g)))}


def sigma_threshold_counts(defocus, gt_mask, taus) -> PRCounts:
    """The paper's precision-recall (5.3): counts of ``defocus > tau`` for absolute thresholds.

    Args:
      defocus: (H, W) sigma map in pixels. gt_mask: (H, W), True = blurred.
      taus: 1-D finite thresholds in pixels (the paper: the label sigmas sigma_1 .. sigma_L).

    Returns:
      :class:`PRCounts` whose ``thresholds`` are ``taus`` (pixels, not normalised).
    """
    d, g = _pair(defocus, gt_mask)
    t = np.asarray(taus, np.float64)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
        raise ValueError(f"taus must be a non-empty 1-D array of finite thresholds, got {taus!r}")
    pos, neg = np.sort(d[g]), np.sort(d[~g])
    tp = pos.size - np.searchsorted(pos, t, side="right")
    fp = neg.size - np.searchsorted(neg, t, side="right")
    return PRCounts(tp.astype(np.int64), fp.astype(np.int64), t, int(pos.size), int(neg.size))
