"""Threshold sweeps and precision-recall curves of blur-detection maps (paper section 5.3).

A defocus map (H, W) is compared with a binary ground-truth mask (H, W), True = blurred (see
:func:`dhde.evaluation.metrics.as_binary_mask`).

* Sweeps (:func:`best_threshold_accuracy`, :func:`precision_recall_counts`, the curves) work on
  the min-max normalised map ``(d - v_min) / (v_max - v_min)`` in [0, 1] (a constant map
  normalises to 0) with ``n_thresholds`` evenly spaced thresholds ``t`` in [0, 1] and the rule
  predicted blurred = ``normalised > t``, so the sweep at ``t = alpha`` is the Eq. 13
  segmentation. One extra threshold ``-inf`` (every pixel blurred, recall 1) is put first.
* Precision-recall over a data set: by default precision and recall are computed per image and
  averaged over images at each threshold (``average="images"``, the convention of the CUHK
  benchmark and of salient-object evaluation); ``average="pixels"`` pools TP / FP / FN over all
  pixels of all images instead. Vacuous ratios 0 / 0 are 1 (no prediction = no false alarm,
  no positive = nothing missed). :func:`max_f_measure` is the largest F_beta of a curve.
* :func:`sigma_threshold_counts`: the paper's own precision-recall, over *absolute* sigma
  thresholds (the label sigmas) instead of the normalised map.

NumPy, float64 inside, int64 counts, Python floats out.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np

from dhde import checks
from dhde.evaluation.metrics import (
    DEFAULT_ALPHA,
    DEFAULT_BETA2,
    check_alpha,
    f_measure,
    map_and_mask,
    normalize_map,
    vacuous_ratio,
)

#: Number of thresholds of the precision-recall / best-accuracy sweeps.
DEFAULT_N_THRESHOLDS = 256
#: How a data-set curve averages: per image, or pooled over pixels.
AVERAGES = ("images", "pixels")


def sweep_thresholds(n_thresholds: int = DEFAULT_N_THRESHOLDS) -> np.ndarray:
    """Thresholds of the sweeps on the normalised map: ``[-inf, linspace(0, 1, n)]``, float64
    (n + 1,); ``n_thresholds`` is an int >= 2."""
    n = checks.integer(n_thresholds, "n_thresholds", lo=2)
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


def _counts_above(values: np.ndarray, g: np.ndarray, thresholds: np.ndarray) -> PRCounts:
    """Counts of ``values > t`` among the positives / negatives of ``g`` for every ``t``."""
    pos = np.sort(values[g])
    neg = np.sort(values[~g])
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
    d, g = map_and_mask(defocus, gt_mask)
    return _counts_above(normalize_map(d), g, sweep_thresholds(n_thresholds))


def precision_recall_from_counts(counts: PRCounts) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) float64 (T,) of a :class:`PRCounts`; 0 / 0 counts as 1."""
    precision = vacuous_ratio(counts.tp, counts.tp + counts.fp)
    recall = vacuous_ratio(counts.tp, np.full_like(counts.tp, counts.positives))
    return precision, recall


def best_threshold_accuracy(
    defocus, gt_mask, n_thresholds: int = DEFAULT_N_THRESHOLDS
) -> float:
    """The best pixel accuracy over the threshold sweep of the normalised map.

    The sweep contains every ``t`` in ``linspace(0, 1, n_thresholds)`` (t = 1: all sharp) and
    t = -inf (all blurred), so the result is >= the larger class fraction and >=
    :func:`dhde.evaluation.metrics.segmentation_accuracy` at any ``alpha`` on the grid.

    Returns:
      accuracy in [0, 1] (Python float).
    """
    d, g = map_and_mask(defocus, gt_mask)
    c = _counts_above(normalize_map(d), g, sweep_thresholds(n_thresholds))
    correct = c.tp + c.tn
    return float(correct.max() / g.size)


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
        d, g = map_and_mask(defocus, gt_mask)
        c = _counts_above(normalize_map(d), g, self.thresholds)
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
        checks.choice(average, "average", AVERAGES)
        if not self._precisions:
            raise ValueError("no images were added to the accumulator")
        if average == "images":
            p = np.mean(self._precisions, axis=0)
            r = np.mean(self._recalls, axis=0)
        else:
            p, r = precision_recall_from_counts(self.counts)
        return p, r, self.thresholds.copy()


def _paired_lists(defocus_maps: Iterable, gt_masks: Iterable) -> tuple[list, list]:
    maps, masks = list(defocus_maps), list(gt_masks)
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} defocus maps but {len(masks)} gt masks")
    return maps, masks


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
    maps, masks = _paired_lists(defocus_maps, gt_masks)
    for d, g in zip(maps, masks):
        acc.update(d, g)
    return acc.curve(average)


def max_f_measure(precision, recall, beta2: float = DEFAULT_BETA2) -> float:
    """The largest F_beta (:func:`dhde.evaluation.metrics.f_measure`) over a precision-recall
    curve (arrays (T,) in [0, 1]), in [0, 1]."""
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
      dict with ``accuracy`` (mean over images of
      :func:`~dhde.evaluation.metrics.segmentation_accuracy` at ``alpha``), ``best_accuracy``
      (mean of :func:`best_threshold_accuracy`), ``max_f`` (of the data-set curve), ``mae``
      (mean of :func:`~dhde.evaluation.metrics.normalized_mae`), ``precision``, ``recall``,
      ``thresholds`` (arrays of the curve) and ``n_images``.
    """
    alpha = check_alpha(alpha)
    checks.choice(average, "average", AVERAGES)
    pr = PrecisionRecallAccumulator(n_thresholds)
    accs, best, maes = [], [], []
    maps, masks = _paired_lists(defocus_maps, gt_masks)
    if not maps:
        raise ValueError("no images to evaluate")
    for d, g in zip(maps, masks):
        d, g = map_and_mask(d, g)
        accs.append(np.mean((d > alpha * d.max() + (1.0 - alpha) * d.min()) == g))
        c = pr.update(d, g)
        best.append((c.tp + c.tn).max() / g.size)
        maes.append(np.mean(np.abs(normalize_map(d) - g)))
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


def sigma_threshold_counts(defocus, gt_mask, taus) -> PRCounts:
    """The paper's precision-recall (5.3): counts of ``defocus > tau`` for absolute thresholds.

    Args:
      defocus: (H, W) sigma map in pixels. gt_mask: (H, W), True = blurred.
      taus: 1-D finite thresholds in pixels (the paper: the label sigmas sigma_1 .. sigma_L).

    Returns:
      :class:`PRCounts` whose ``thresholds`` are ``taus`` (float64, pixels, not normalised).
    """
    d, g = map_and_mask(defocus, gt_mask)
    t = np.asarray(checks.as_array(taus, "taus"), np.float64)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
        raise ValueError(f"taus must be a non-empty 1-D array of finite thresholds, got {taus!r}")
    return _counts_above(d, g, t)
