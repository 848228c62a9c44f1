"""The work behind ``experiments/evaluate.py``: data sets in, metrics, report and figures out.

Data sets (``name -> example dicts``, see :mod:`dhde.evaluation.datasets`):

* ``cuhk``: blur detection against binary masks: accuracy of the Eq. 13 segmentation at
  alpha = 0.3, best accuracy over a threshold sweep, precision-recall and max F
  (beta^2 = 0.3), MAE of the min-max normalised map against the 0/1 mask.
* ``rtf``: MAE in sigma units (px) against the disk-radius maps converted to sigma.
* ``synthetic``: the ``stereo_motorcycle`` rendering with known sigma: MAE in sigma units.

Methods are callables ``image (H, W, 3) float32 in [0, 1] -> map (H, W)`` (larger = more
blurred), or ``-> result`` with a ``.defocus`` map: ``dhde`` (:func:`dhde.estimate_defocus`, its
whole result, sigma in px; on the sigma data sets it also gets the error budget of
:mod:`dhde.evaluation.error_budget`: sparse / filtered / oracle / far-from-edge MAE) and ``laplacian``
(:func:`dhde.evaluation.baselines.laplacian_baseline`, a unitless score; for the sigma data sets
it is read as sigma by min-max rescaling onto a fixed range, default the label range 0.5-2.0 px).

Outputs of :func:`run_evaluation` in ``out_dir``: ``report.md`` (one table row per
``dataset / method``), ``precision_recall.png`` (CUHK curves), ``results.json`` (scalars and
per-image numbers), ``panels/<dataset>/<name>_<method>.png`` (image | map | mask | ground truth).
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from dhde import atomic
from dhde.evaluation import datasets, metrics
from dhde.evaluation.error_budget import FAR, sigma_error_budget
from dhde.evaluation.report import side_by_side_panel, write_report

DATASETS = ("cuhk", "rtf", "synthetic")
METHODS = ("dhde", "laplacian")
LOADERS = ("tfds", "direct")
#: Repository root (an editable install): the reference data sits at ROOT/../shared/data.
ROOT = Path(__file__).resolve().parents[2]
SIGMA_DATASETS = ("rtf", "synthetic")

Method = Callable[[np.ndarray], object]  # -> (H, W) map, or a result with .defocus
#: Metrics shown in a panel's title.
_TITLE_KEYS = ("accuracy", "best_accuracy", "mae", "sigma_mae", "oracle_mae")


def default_root(name: str) -> Path | None:
    """``<repo>/../shared/data/<name>`` for ``cuhk`` / ``rtf`` when that folder exists, else None."""
    p = ROOT.parent / "shared" / "data" / name
    return p if name in ("cuhk", "rtf") and p.is_dir() else None


def load_examples(name: str, *, root=None, loader: str = "tfds", data_dir=None, pattern: str | None = None,
                  focus: str = "near", downscale: int = 1, sigma_range=(0.5, 2.0), noise: float = 0.0,
                  limit: int | None = None) -> Iterator[dict]:
    """Examples of one data set as the direct loaders' dicts (``image`` float32 (H, W, 3) in
    [0, 1], ``name`` str, and ``mask`` bool (H, W) for cuhk or ``sigma_map`` float32 (H, W)).

    Args:
      name: ``"cuhk"``, ``"rtf"`` or ``"synthetic"``.
      root: data folder (cuhk, rtf).
      loader: ``"tfds"`` (the in-place TFDS builders, prepared once into ``data_dir``) or
        ``"direct"`` (read the files).
      data_dir: TFDS output folder (required for ``loader="tfds"``).
      pattern: CUHK image-stem glob (default ``out_of_focus*``).
      focus, downscale, sigma_range, noise: rendering of the synthetic scene (noise: Gaussian
        noise std in grey levels of 255).
      limit: at most this many examples (in name order); None = all.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {DATASETS}")
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}")
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise ValueError(f"limit must be >= 1 or None, got {limit!r}")
    pattern = pattern or datasets.CUHK_PATTERN
    if loader == "direct":
        if name == "cuhk":
            it = datasets.load_cuhk(root, pattern)
        elif name == "rtf":
            it = datasets.load_rtf(root)
        else:
            it = datasets.load_stereo_motorcycle(focus, tuple(sigma_range), int(downscale),
                                                 noise=float(noise))
        for i, ex in enumerate(it):
            if limit is not None and i >= int(limit):
                return
            yield ex
        return
    if data_dir is None:
        raise ValueError("loader='tfds' needs a data_dir (where the prepared records are written)")
    if name == "synthetic":
        lo, hi = (float(v) for v in sigma_range)
        cfg = datasets.StereoMotorcycleConfig(
            name=f"{focus}_d{int(downscale)}_s{lo:g}-{hi:g}_n{float(noise):g}".replace(".", "p"),
            focus=focus, sigma_min=lo, sigma_max=hi, downscale=int(downscale), noise=float(noise))
        source = datasets.build_data_source("stereo_motorcycle", data_dir, config=cfg)
    elif name == "cuhk":
        source = datasets.build_data_source("cuhk", data_dir, root, pattern=pattern)
    else:
        source = datasets.build_data_source("rtf", data_dir, root)
    n = len(source) if limit is None else min(len(source), int(limit))
    for i in range(n):
        yield datasets.decode_record(source[i])


def make_methods(names: Iterable[str], model=None, options=None, *, size_multiple: int = 32,
                 window: int = 15) -> dict[str, Method]:
    """``{name: image -> map}`` for ``"dhde"`` (the given DefocusModel, or a zero-argument
    callable returning one, resolved on first use) and ``"laplacian"`` (window ``window``)."""
    from dhde.evaluation.baselines import laplacian_baseline
    from dhde.inference import estimate_defocus
    from dhde.model import DefocusModel

    methods: dict[str, Method] = {}
    for n in names:
        if n == "dhde":
            def dhde_map(image, _m=model):
                m = _m if isinstance(_m, DefocusModel) or _m is None else _m()
                return estimate_defocus(image, m, options=options, size_multiple=size_multiple)
            methods[n] = dhde_map
        elif n == "laplacian":
            methods[n] = lambda image: np.asarray(laplacian_baseline(image, window=window))
        else:
            raise ValueError(f"unknown method {n!r}; choose from {METHODS}")
    if not methods:
        raise ValueError("no method to evaluate")
    return methods


class _BlurDetection:
    """Streaming CUHK metrics of one method (keeps per-image numbers and PR counts only)."""

    def __init__(self, alpha, n_thresholds, beta2, average):
        self.alpha, self.beta2, self.average = alpha, beta2, average
        self.pr = metrics.PrecisionRecallAccumulator(n_thresholds)
        self.per_image: dict[str, dict] = {}

    def update(self, name, d, gt) -> dict:
        d = np.asarray(d, np.float64)
        c = self.pr.update(d, gt)
        r = {"accuracy": metrics.segmentation_accuracy(d, gt, self.alpha),
             "best_accuracy": float((c.tp + c.tn).max() / gt.size),
             "mae": metrics.normalized_mae(d, gt)}
        self.per_image[name] = r
        return r

    def summary(self) -> dict:
        if not self.per_image:
            return {"n_images": 0}
        p, r, t = self.pr.curve(self.average)
        rows = self.per_image.values()
        return {
            "accuracy": float(np.mean([x["accuracy"] for x in rows])),
            "best_accuracy": float(np.mean([x["best_accuracy"] for x in rows])),
            "max_f": metrics.max_f_measure(p, r, self.beta2),
            "mae": float(np.mean([x["mae"] for x in rows])),
            "n_images": len(self.per_image),
            "precision": p, "recall": r, "thresholds": t,
        }


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
                     n_thresholds: int = metrics.DEFAULT_N_THRESHOLDS, beta2: float = metrics.DEFAULT_BETA2,
                     average: str = "images", baseline_sigma_range=(0.5, 2.0),
                     budget_options=None, progress: bool = True) -> tuple[dict, dict, list]:
    """Runs every method on every example and scores it.

    Args:
      name: data set name (``cuhk``: mask metrics; ``rtf`` / ``synthetic``: sigma MAE).
      examples: dicts with ``image``, ``name`` and ``mask`` (cuhk) or ``sigma_map``.
      methods: ``{method: image -> map}``; for sigma data sets every method except ``dhde`` is a
        score and is min-max rescaled onto ``baseline_sigma_range`` before scoring.
      panel_dir: where ``<name>_<method>.png`` side-by-side panels go (None = no panels).
      max_panels: panels for the first this many images (None = all).
      budget_options: the EstimateOptions of the ``dhde`` results; on sigma data sets a method
        that returns a result with sparse points then also gets
        :func:`~dhde.evaluation.error_budget.sigma_error_budget` (None = no budget).

    Returns:
      (``{method: summary metrics}``, ``{method: {image: metrics}}``, failures as a list of
      ``{"name", "method", "error"}``). A method failing on an image is recorded and skipped.
    """
    from tqdm.auto import tqdm

    sigma_units = name in SIGMA_DATASETS
    acc = {m: (_SigmaError() if sigma_units else _BlurDetection(alpha, n_thresholds, beta2, average))
           for m in methods}
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
            except Exception as e:  # report and go on
                failures.append({"name": ex_name, "method": m, "error": f"{type(e).__name__}: {e}"})
                print(f"FAILED {name}/{ex_name} ({m}): {type(e).__name__}: {e}")
                if not isinstance(e, (ValueError, TypeError)):
                    traceback.print_exc()
    return ({m: a.summary() for m, a in acc.items()}, {m: a.per_image for m, a in acc.items()}, failures)


def _jsonable(results: Mapping) -> dict:
    # thresholds start with -inf (not JSON): left out; precision / recall become lists
    return {k: {m: (v.tolist() if isinstance(v, np.ndarray) else v)
                for m, v in r.items() if m != "thresholds"}
            for k, r in results.items()}


def run_evaluation(cfg: Mapping, out_dir) -> dict:
    """Evaluates the selected methods on the selected data sets; writes the report.

    Args:
      cfg: dict with (see conf/evaluate.yaml) ``datasets`` (list of :data:`DATASETS`),
        ``methods``, ``model`` (None = shipped, a model dir, ``caffe:/path``, or a DefocusModel),
        ``options`` (EstimateOptions fields), ``size_multiple``, ``loader``, ``data_dir``
        (None = ``out_dir/tfds``), ``limit``, ``max_panels``, ``alpha``, ``n_thresholds``,
        ``beta2``, ``average``, and per data set sections ``cuhk: {root, pattern}``,
        ``rtf: {root}``, ``synthetic: {focus, downscale, sigma_min, sigma_max, noise}``,
        ``baseline: {window, sigma_range}``. A cuhk / rtf data set without a ``root`` uses
        :func:`default_root`, and is skipped (with a message) when that does not exist.
      out_dir: output folder (created).

    Returns:
      ``{"<dataset> / <method>": summary metrics}`` (precision / recall arrays included for
      CUHK), as written to ``report.md``.
    """
    from dhde.apps_cli import LazyModel
    from dhde.inference import EstimateOptions

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(cfg.get("datasets") or DATASETS)
    bad = [n for n in names if n not in DATASETS]
    if bad:
        raise ValueError(f"unknown data sets {bad}; choose from {DATASETS}")
    loader = cfg.get("loader", "tfds")
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}")
    base = dict(cfg.get("baseline") or {})
    opts = EstimateOptions(**(cfg.get("options") or {}))
    methods = make_methods(cfg.get("methods") or METHODS, LazyModel(cfg.get("model")), opts,
                           size_multiple=int(cfg.get("size_multiple", 32)),
                           window=int(base.get("window", 15)))
    data_dir = Path(cfg["data_dir"]) if cfg.get("data_dir") else out / "tfds"
    results, per_image, failures, notes = {}, {}, [], []
    for name in names:
        sec = dict(cfg.get(name) or {})
        root = sec.get("root")
        if name in ("cuhk", "rtf") and root is None:
            root = default_root(name)
            if root is None:
                where = ROOT.parent / "shared" / "data" / name
                msg = f"skipped {name}: no data at {where}; set {name}.root=..."
                print(msg)
                notes.append(msg)
                continue
        t0 = time.perf_counter()
        examples = load_examples(
            name, root=root, loader=loader, data_dir=data_dir, pattern=sec.get("pattern"),
            focus=sec.get("focus", "near"), downscale=int(sec.get("downscale", 1)),
            sigma_range=(sec.get("sigma_min", 0.5), sec.get("sigma_max", 2.0)),
            noise=float(sec.get("noise", 0.0)), limit=cfg.get("limit"))
        summ, per, fail = evaluate_dataset(
            name, examples, methods, panel_dir=out / "panels" / name, max_panels=cfg.get("max_panels", 8),
            alpha=float(cfg.get("alpha", metrics.DEFAULT_ALPHA)),
            n_thresholds=int(cfg.get("n_thresholds", metrics.DEFAULT_N_THRESHOLDS)),
            beta2=float(cfg.get("beta2", metrics.DEFAULT_BETA2)), average=cfg.get("average", "images"),
            baseline_sigma_range=tuple(base.get("sigma_range", (0.5, 2.0))),
            budget_options=opts if cfg.get("error_budget", True) else None)
        for m in summ:
            results[f"{name} / {m}"] = summ[m]
            per_image[f"{name} / {m}"] = per[m]
        failures += [{"dataset": name, **f} for f in fail]
        notes.append(f"{name}: root {root if root is not None else '(rendered)'}, "
                     f"{time.perf_counter() - t0:.1f} s")
    if not results:
        raise ValueError("nothing was evaluated: no data set is available (see the messages above)")
    spec = cfg.get("model")
    spec = spec if isinstance(spec, (str, type(None))) else type(spec).__name__
    notes = [f"model: {spec} (None = shipped); loader: {loader}; options: {opts}",
             "CUHK: accuracy = Eq. 13 segmentation at alpha; best accuracy over a threshold sweep of the "
             "normalised map; max F with beta^2 = 0.3; MAE of the min-max normalised map vs the 0/1 mask. "
             "RTF / synthetic: MAE in sigma (px); the laplacian score is min-max rescaled onto "
             f"{tuple(base.get('sigma_range', (0.5, 2.0)))} px first. Error budget of dhde on these "
             "(dhde.evaluation.error_budget): sparse_mae / filtered_mae at the sparse points, oracle_mae "
             "= the map propagated from the ground truth at the same points (a perfect classifier), "
             f"far_fraction / far_mae = pixels more than {FAR:g} px from every sparse point.", *notes]
    if failures:
        notes.append(f"{len(failures)} failure(s): " + "; ".join(
            f"{f['dataset']}/{f['name']} ({f['method']}): {f['error']}" for f in failures[:10]))
    write_report(results, out, title="dhde evaluation", notes="\n\n".join(notes))
    atomic.write_text(out / "results.json", json.dumps(
        {"summary": _jsonable(results), "per_image": per_image, "failures": failures}, indent=2, default=str))
    return results
