"""The work behind ``experiments/evaluate.py``: data sets in, metrics, report and figures out.

Data sets (``name -> example dicts``, see :mod:`dhde.evaluation.datasets`):

* ``cuhk``: blur detection against binary masks, under three protocols (named in the report):

  - *paper* (Park et al. 5.3): accuracy of the Eq. 13 segmentation at alpha = 0.3
    (``accuracy``), best accuracy over a threshold sweep (``best_accuracy``), and the paper's
    precision-recall over absolute sigma thresholds sigma_1 .. sigma_L (``sigma_max_f``: its
    largest F, sigma maps only);
  - *literature* (the recent blur-detection tables, e.g. HiFST): per image, the min-max
    normalised map against the 0/1 mask: ``mae``, and binarised at 0.5: ``f_05`` (F with
    beta^2 = 0.3), ``iou``; means over images;
  - *dataset max F*: the precision-recall curve of the normalised map over 256 thresholds,
    averaged over images, and its largest F (``max_f``, beta^2 = 0.3).
* ``rtf``: MAE in sigma units (px) against the disk-radius maps converted to sigma.
* ``synthetic``: the ``stereo_motorcycle`` rendering with known sigma (0.5-2 px, the labels'
  range): MAE in sigma units. ``synthetic_wide``: the same scene rendered with sigma up to 6 px.

Methods are callables ``image (H, W, 3) float32 in [0, 1] -> map (H, W)`` (larger = more
blurred), or ``-> result`` with a ``.defocus`` map: ``dhde`` (:func:`dhde.estimate_defocus`, its
whole result, sigma in px; on the sigma data sets it also gets the error budget of
:mod:`dhde.evaluation.error_budget`: sparse / filtered / oracle / far-from-edge MAE),
``dhde_prob`` (:func:`dhde.estimation.probability.blur_probability` of the same estimate, P(sigma > tau), a
0-1 map; blur detection only) and ``laplacian``
(:func:`dhde.evaluation.baselines.laplacian_baseline`, a unitless score; for the sigma data sets
it is read as sigma by min-max rescaling onto a fixed range, default the label range 0.5-2.0 px).

Scoring one data set (:func:`evaluate_dataset`, the metric accumulators, the panels) lives in
:mod:`dhde.evaluation.scoring`; this module picks data sets and methods and writes the outputs.

Outputs of :func:`run_evaluation` in ``out_dir``: ``report.md`` (one table row per
``dataset / method``), ``precision_recall.png`` (CUHK curves), ``results.json`` (scalars and
per-image numbers), ``panels/<dataset>/<name>_<method>.png`` (image | map | mask | ground truth).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from dhde import checks
from dhde.io import atomic
from dhde.evaluation import datasets, metrics, pr_curves
from dhde.evaluation.error_budget import FAR
from dhde.evaluation.report import write_report
from dhde.evaluation.scoring import (  # noqa: F401  (re-exported: the run's vocabulary)
    DATASETS,
    DETECTION_ONLY,
    SIGMA_DATASETS,
    SIGMA_METHODS,
    Method,
    evaluate_dataset,
)

METHODS = ("dhde", "dhde_prob", "laplacian")
#: The wide-range synthetic scene's default sigma range (px).
WIDE_RANGE = (0.5, 6.0)
LOADERS = ("tfds", "direct")
#: Repository root (an editable install): the reference data sits at ROOT/../shared/data.
ROOT = Path(__file__).resolve().parents[2]


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
      name: ``"cuhk"``, ``"rtf"``, ``"synthetic"`` or ``"synthetic_wide"`` (the same rendering;
        the range comes from ``sigma_range``).
      root: data folder (cuhk, rtf).
      loader: ``"tfds"`` (the in-place TFDS builders, prepared once into ``data_dir``) or
        ``"direct"`` (read the files).
      data_dir: TFDS output folder (required for ``loader="tfds"``).
      pattern: CUHK image-stem glob (default ``out_of_focus*``).
      focus, downscale, sigma_range, noise: rendering of the synthetic scene (noise: Gaussian
        noise std in grey levels of 255).
      limit: at most this many examples (in name order); None = all.
    """
    checks.choice(name, "data set name", DATASETS, where="load_examples")
    checks.choice(loader, "loader", LOADERS, where="load_examples")
    if limit is not None:
        checks.integer(limit, "limit", lo=1, where="load_examples")
    pattern = pattern or datasets.CUHK_PATTERN
    if name == "synthetic_wide":
        name = "synthetic"
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
                 window: int = 15, blur_tau: float | None = None) -> dict[str, Method]:
    """``{name: image -> map}`` for ``"dhde"`` (the given DefocusModel, or a zero-argument
    callable returning one, resolved on first use), ``"dhde_prob"`` (the blur probability
    P(sigma > ``blur_tau``) of the same estimate; None = ``probability.DEFAULT_BLUR_TAU``) and
    ``"laplacian"`` (window ``window``). ``dhde`` and ``dhde_prob`` share one estimate per image."""
    from dhde.evaluation.baselines import laplacian_baseline
    from dhde.estimation.inference import estimate_defocus
    from dhde.estimation.probability import DEFAULT_BLUR_TAU, blur_probability
    from dhde.model.network import DefocusModel

    last: list = [None, None]  # (image, result) of the latest estimate

    def estimate(image, _m=model):
        if last[0] is not image:
            m = _m if isinstance(_m, DefocusModel) or _m is None else _m()
            last[:] = [image, estimate_defocus(image, m, options=options, size_multiple=size_multiple)]
        return last[1]

    tau = DEFAULT_BLUR_TAU if blur_tau is None else float(blur_tau)
    methods: dict[str, Method] = {}
    for n in names:
        if n == "dhde":
            methods[n] = estimate
        elif n == "dhde_prob":
            methods[n] = lambda image: np.asarray(blur_probability(estimate(image), tau, options=options))
        elif n == "laplacian":
            methods[n] = lambda image: np.asarray(laplacian_baseline(image, window=window))
        else:
            checks.choice(n, "method", METHODS, where="make_methods")
    if not methods:
        raise ValueError("no method to evaluate")
    return methods


#: Issue 12's targets: (row, metric, "<=" or ">=", goal, protocol).
TARGETS = (
    ("synthetic_wide / dhde", "sigma_mae", "<=", 0.6, "sigma MAE (px), built-in scene, sigma 0.5-6 px"),
    ("synthetic / dhde", "sigma_mae", "<=", 0.236, "sigma MAE (px), built-in scene, sigma 0.5-2 px (single level)"),
    ("rtf / dhde", "sigma_mae", "<=", 0.12, "sigma MAE (px), RTF (single level: 0.120)"),
    ("cuhk / dhde", "accuracy", ">=", 0.93, "paper protocol: Eq. 13 accuracy at alpha 0.3"),
    ("cuhk / dhde", "max_f", ">=", 0.96, "dataset max F (beta^2 0.3) of the normalised map"),
    ("cuhk / dhde_prob", "mae", "<=", 0.15, "literature protocol: MAE of the normalised blur probability"),
)


def target_lines(results: Mapping) -> list[str]:
    """One line per issue-12 target present in ``results``: value, goal, met or not, protocol."""
    lines = []
    for row, key, op, goal, what in TARGETS:
        if row in results and key in results[row]:
            v = float(results[row][key])
            ok = v <= goal if op == "<=" else v >= goal
            lines.append(f"target {row} {key} {op} {goal:g}: {v:.4f} -> {'met' if ok else 'NOT met'} ({what})")
    return lines


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
    from dhde.model.spec import LazyModel
    from dhde.estimation.options import EstimateOptions

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(cfg.get("datasets") or DATASETS)
    bad = [n for n in names if n not in DATASETS]
    if bad:
        raise ValueError(f"unknown data sets {bad}; choose from {DATASETS}")
    loader = checks.choice(cfg.get("loader", "tfds"), "loader", LOADERS, where="run_evaluation")
    base = dict(cfg.get("baseline") or {})
    opts = EstimateOptions(**(cfg.get("options") or {}))
    methods = make_methods(cfg.get("methods") or METHODS, LazyModel(cfg.get("model")), opts,
                           size_multiple=int(cfg.get("size_multiple", 32)),
                           window=int(base.get("window", 15)), blur_tau=cfg.get("blur_tau"))
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
        default_hi = WIDE_RANGE[1] if name == "synthetic_wide" else 2.0
        sigma_range = (float(sec.get("sigma_min", 0.5)), float(sec.get("sigma_max", default_hi)))
        examples = load_examples(
            name, root=root, loader=loader, data_dir=data_dir, pattern=sec.get("pattern"),
            focus=sec.get("focus", "near"), downscale=int(sec.get("downscale", 1)),
            sigma_range=sigma_range, noise=float(sec.get("noise", 0.0)), limit=cfg.get("limit"))
        # a score (the baseline) is read as sigma over the rendered range on the synthetic scenes
        b_range = sigma_range if name.startswith("synthetic") else tuple(base.get("sigma_range", (0.5, 2.0)))
        summ, per, fail = evaluate_dataset(
            name, examples, methods, panel_dir=out / "panels" / name, max_panels=cfg.get("max_panels", 8),
            alpha=float(cfg.get("alpha", metrics.DEFAULT_ALPHA)),
            n_thresholds=int(cfg.get("n_thresholds", pr_curves.DEFAULT_N_THRESHOLDS)),
            beta2=float(cfg.get("beta2", metrics.DEFAULT_BETA2)), average=cfg.get("average", "images"),
            baseline_sigma_range=b_range,
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
             "CUHK protocols. Paper (Park et al. 5.3): accuracy = Eq. 13 segmentation at alpha; best accuracy "
             "over a threshold sweep of the normalised map; sigma_max_f = largest F (beta^2 0.3) of the paper's "
             "precision-recall over absolute thresholds sigma_1..sigma_L (0.5..2.0 px; sigma maps only). "
             "Literature (recent blur-detection tables, e.g. HiFST): per image, the min-max normalised map vs "
             "the 0/1 mask: MAE, and binarised at 0.5: f_05 (F, beta^2 0.3) and iou; means over images. "
             "Dataset max F: largest F (beta^2 0.3) of the image-averaged PR curve of the normalised map "
             "(256 thresholds). dhde_prob = the blur probability P(sigma > "
             f"{cfg.get('blur_tau') or 'DEFAULT_BLUR_TAU'} px). "
             "RTF / synthetic / synthetic_wide: MAE in sigma (px); the laplacian score is min-max rescaled onto "
             f"{tuple(base.get('sigma_range', (0.5, 2.0)))} px (RTF) or the rendered range (synthetic) first. "
             "Error budget of dhde on these "
             "(dhde.evaluation.error_budget): sparse_mae / filtered_mae at the sparse points, oracle_mae "
             "= the map propagated from the ground truth at the same points (a perfect classifier), "
             f"far_fraction / far_mae = pixels more than {FAR:g} px from every sparse point.", *notes]
    if failures:
        notes.append(f"{len(failures)} failure(s): " + "; ".join(
            f"{f['dataset']}/{f['name']} ({f['method']}): {f['error']}" for f in failures[:10]))
    notes += target_lines(results)
    write_report(results, out, title="dhde evaluation", notes="\n\n".join(notes))
    atomic.write_text(out / "results.json", json.dumps(
        {"summary": _jsonable(results), "per_image": per_image, "failures": failures}, indent=2, default=str))
    return results
