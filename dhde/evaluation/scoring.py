"""Scoring of methods on one data set's examples: streaming per-image metrics and panels.

:func:`evaluate_dataset` runs every method (``image (H, W, 3) float32 in [0, 1] -> map (H, W)``,
or a result with a ``.defocus`` map) on every example and scores it as it goes:

* ``cuhk`` (blur detection against a binary mask): the paper's Eq. 13 ``accuracy``,
  ``best_accuracy`` over a threshold sweep, the literature protocol's ``mae`` / ``f_05`` /
  ``iou`` (:func:`dhde.evaluation.metrics.binary_scores`), the data-set precision-recall curve
  and its ``max_f`` (:mod:`dhde.evaluation.pr_curves`), and for sigma maps the paper's
  absolute-threshold ``sigma_max_f``;
* ``rtf`` / ``synthetic`` / ``synthetic_wide`` (ground-truth sigma): ``sigma_mae`` in px, plus
  the error budget of :mod:`dhde.evaluation.error_budget` for ``dhde`` results.

Only per-image numbers and precision-recall counts are kept, so data sets of any size stream.
The orchestration (data sets, methods, report files) is :mod:`dhde.evaluation.run`.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from dhde import checks
from dhde.evaluation import metrics, pr_curves
from dhde.evaluation.error_budget import sigma_error_budget
from dhde.evaluation.report import side_by_side_panel

#: Data sets scored in sigma units (px) against a ground-truth sigma map.
SIGMA_DATASETS = ("rtf", "synthetic", "synthetic_wide")
#: Every data set :func:`evaluate_dataset` knows: ``cuhk`` (binary masks) and the sigma ones.
DATASETS = ("cuhk",) + SIGMA_DATASETS
#: Methods whose map is a sigma in px (the paper's absolute-threshold PR applies).
SIGMA_METHODS = ("dhde",)
#: Methods that only make sense for blur detection (not scored on the sigma data sets).
DETECTION_ONLY = ("dhde_prob",)

Method = Callable[[np.ndarray], object]  # -> (H, W) map, or a result with .defocus
#: Metrics shown in a panel's title.
_TITLE_KEYS = ("accuracy", "best_accuracy", "mae", "f_05", "sigma_mae", "oracle_mae")


class _BlurDetection:
    """Streaming CUHK metrics of one method (keeps per-image numbers and PR counts only)."""

    def __init__(self, alpha, n_thresholds, beta2, average, sigma_taus=None):
        self.alpha, self.beta2, self.average = alpha, beta2, average
        self.pr = pr_curves.PrecisionRecallAccumulator(n_thresholds)
        self.sigma_taus = sigma_taus  # the paper's absolute thresholds (px); None: not a sigma map
        self.sigma_pr: list = []
        self.per_image: dict[str, dict] = {}

    def update(self, name, d, gt) -> dict:
        d = np.asarray(d, np.float64)
        c = self.pr.update(d, gt)
        lit = metrics.binary_scores(d, gt, metrics.LITERATURE_THRESHOLD, self.beta2)
        r = {"accuracy": metrics.segmentation_accuracy(d, gt, self.alpha),
             "best_accuracy": float((c.tp + c.tn).max() / gt.size),
             "mae": lit["mae"], "f_05": lit["f"], "iou": lit["iou"]}
        if self.sigma_taus is not None:
            self.sigma_pr.append(pr_curves.precision_recall_from_counts(
                pr_curves.sigma_threshold_counts(d, gt, self.sigma_taus)))
        self.per_image[name] = r
        return r

    def summary(self) -> dict:
        if not self.per_image:
            return {"n_images": 0}
        p, r, t = self.pr.curve(self.average)
        rows = self.per_image.values()
        out = {
            "accuracy": float(np.mean([x["accuracy"] for x in rows])),
            "best_accuracy": float(np.mean([x["best_accuracy"] for x in rows])),
            "max_f": pr_curves.max_f_measure(p, r, self.beta2),
            "mae": float(np.mean([x["mae"] for x in rows])),
            "f_05": float(np.mean([x["f_05"] for x in rows])),
            "iou": float(np.mean([x["iou"] for x in rows])),
        }
        if self.sigma_pr:
            sp = np.mean([x[0] for x in self.sigma_pr], axis=0)
            sr = np.mean([x[1] for x in self.sigma_pr], axis=0)
            out["sigma_max_f"] = pr_curves.max_f_measure(sp, sr, self.beta2)
        return {**out, "n_images": len(self.per_image), "precision": p, "recall": r, "thresholds": t}


class _SigmaError:
    def __init__(self):
        self.per_image: dict[str, dict] = {}

    def update(self, name, d, gt) -> dict:
        r = {"sigma_mae": metrics.sigma_mae(d, gt)}
        self.per_image[name] = r
        return r

    def summary(self) -> dict:
        if not self.per_image:
            return {"n_images": 0}
        rows = list(self.per_image.values())
        out = {}
        for k in dict.fromkeys(k for r in rows for k in r):  # sigma_mae first, then the budget
            v = np.array([r.get(k, np.nan) for r in rows], np.float64)  # far_mae may be NaN
            out[k] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        return {**out, "n_images": len(rows)}


def evaluate_dataset(name: str, examples: Iterable[Mapping], methods: Mapping[str, Method], *,
                     panel_dir=None, max_panels: int | None = 8, alpha: float = metrics.DEFAULT_ALPHA,
                     n_thresholds: int = pr_curves.DEFAULT_N_THRESHOLDS, beta2: float = metrics.DEFAULT_BETA2,
                     average: str = "images", baseline_sigma_range=(0.5, 2.0),
                     budget_options=None, progress: bool = True) -> tuple[dict, dict, list]:
    """Runs every method on every example and scores it.

    Args:
      name: data set name (``cuhk``: mask metrics; ``rtf`` / ``synthetic`` / ``synthetic_wide``:
        sigma MAE; the blur-detection-only methods of :data:`DETECTION_ONLY` are skipped there).
      examples: dicts with ``image``, ``name`` and ``mask`` (cuhk) or ``sigma_map``.
      methods: ``{method: image -> map}``; for sigma data sets every method except ``dhde`` is a
        score and is min-max rescaled onto ``baseline_sigma_range`` before scoring.
      panel_dir: where ``<name>_<method>.png`` side-by-side panels go (None = no panels).
      max_panels: panels for the first this many images (None = all).
      alpha, n_thresholds, beta2, average: the blur-detection metrics' parameters, as in
        :func:`dhde.evaluation.pr_curves.evaluate_blur_detection`.
      baseline_sigma_range: (lo, hi) px, the range a score is rescaled onto.
      budget_options: the EstimateOptions of the ``dhde`` results; on sigma data sets a method
        that returns a result with sparse points then also gets
        :func:`~dhde.evaluation.error_budget.sigma_error_budget` (None = no budget).

    Returns:
      (``{method: summary metrics}``, ``{method: {image: metrics}}``, failures as a list of
      ``{"name", "method", "error"}``). A method failing on an image is recorded and skipped.
    """
    from tqdm.auto import tqdm

    from dhde.labels import SIGMAS

    checks.choice(name, "name", DATASETS, where="evaluate_dataset")
    alpha = metrics.check_alpha(alpha)
    checks.choice(average, "average", pr_curves.AVERAGES, where="evaluate_dataset")
    if max_panels is not None:
        checks.integer(max_panels, "max_panels", lo=0, where="evaluate_dataset")
    sigma_units = name in SIGMA_DATASETS
    if sigma_units:
        methods = {m: f for m, f in methods.items() if m not in DETECTION_ONLY}
    acc = {m: (_SigmaError() if sigma_units else _BlurDetection(
        alpha, n_thresholds, beta2, average, SIGMAS if m in SIGMA_METHODS else None)) for m in methods}
    failures = []
    for i, ex in enumerate(tqdm(examples, desc=name, unit="img", disable=not progress)):
        image, ex_name = np.asarray(ex["image"], np.float32), str(ex["name"])
        gt = ex["sigma_map"] if sigma_units else ex["mask"]
        for m, fn in methods.items():
            try:
                out = fn(image)
                d = np.asarray(getattr(out, "defocus", out), np.float32)
                if d.shape != image.shape[:2]:
                    raise ValueError(f"{m} returned a {d.shape} map for a {image.shape[:2]} image")
                if not np.all(np.isfinite(d)):
                    raise ValueError(f"{m} returned a map with NaN or infinite values")
                if sigma_units and m != "dhde":
                    d = metrics.rescale_map(d, baseline_sigma_range)
                r = acc[m].update(ex_name, d, gt)  # the per-image record, kept by acc[m]
                if sigma_units and budget_options is not None and hasattr(out, "mask"):
                    r.update(sigma_error_budget(out, gt, budget_options))
                if panel_dir is not None and (max_panels is None or i < int(max_panels)):
                    score = ", ".join(f"{k} {v:.3f}" for k, v in r.items() if k in _TITLE_KEYS)
                    kw = {}
                    if sigma_units:
                        kw = {"vmin": float(min(d.min(), gt.min())), "vmax": float(max(d.max(), gt.max()))}
                    side_by_side_panel(image, d, None, gt, Path(panel_dir) / f"{ex_name}_{m}.png",
                                       alpha=alpha, title=f"{name} {ex_name}: {m} ({score})", **kw)
                    if hasattr(out, "level") and int(np.max(np.asarray(out.level))) > 0:
                        _level_panel(image, out, Path(panel_dir) / f"{ex_name}_{m}_levels.png",
                                     f"{name} {ex_name}: pyramid level of each sparse point")
            except Exception as e:  # report and go on
                failures.append({"name": ex_name, "method": m, "error": f"{type(e).__name__}: {e}"})
                print(f"FAILED {name}/{ex_name} ({m}): {type(e).__name__}: {e}")
                if not isinstance(e, (ValueError, TypeError)):
                    traceback.print_exc()
    return ({m: a.summary() for m, a in acc.items()}, {m: a.per_image for m, a in acc.items()}, failures)


def _level_panel(image, result, path: Path, title: str) -> Path:
    """PNG: the image and the pyramid level each sparse point took (dilated for visibility)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy import ndimage

    level = np.asarray(result.level)
    n = int(level.max()) + 1
    shown = ndimage.grey_dilation(level, size=(3, 3))
    shown = np.ma.masked_less(shown, 0)
    fig = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    a, b = fig.subplots(1, 2)
    a.imshow(image)
    a.set_title("image", fontsize=9)
    a.set_axis_off()
    b.imshow(image.mean(-1), cmap="gray", alpha=0.5)
    im = b.imshow(shown, cmap="viridis", vmin=0, vmax=max(n - 1, 1), interpolation="nearest")
    b.set_title(", ".join(f"level {k}: {int(np.sum(level == k))}" for k in range(n)), fontsize=8)
    b.set_axis_off()
    fig.colorbar(im, ax=b, fraction=0.046, pad=0.04, ticks=list(range(n)))
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
