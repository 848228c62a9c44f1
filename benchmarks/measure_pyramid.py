"""Measures pyramid (multi-scale) variants on every evaluation set; prints one table. Not a test.

    python benchmarks/measure_pyramid.py                               # default variants
    python benchmarks/measure_pyramid.py --variants "L1:levels=1" "L3:levels=3,level_rule=finest"
    python benchmarks/measure_pyramid.py --datasets synth6 --downscale 2

Columns: synthetic scene MAE (px) with sigma 0.5-2 (synth2) and 0.5-6 (synth6), RTF MAE (px),
and on the CUHK images in ../shared/data/cuhk: Eq. 13 accuracy at alpha 0.3 (acc), dataset max F
of the normalised-map sweep (maxF, beta^2 0.3), and the literature protocol (min-max normalised
map, binarised at 0.5): MAE, F, IoU (per-image means). ``--taus`` adds the blur-probability
output P(sigma > tau) under the literature protocol. Results also go to --json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

DEFAULT_VARIANTS = ["L1:levels=1", "L3:levels=3"]


def _parse(spec: str):
    name, _, rest = spec.partition(":")
    kw = {}
    for item in filter(None, rest.split(",")):
        k, v = item.split("=")
        for cast in (int, float):
            try:
                v = cast(v)
                break
            except ValueError:
                pass
        kw[k] = v
    return name, kw


def _datasets(names, downscale):
    from dhde.evaluation import datasets

    out = {}
    for n in names:
        if n in ("synth2", "synth6"):
            hi = 2.0 if n == "synth2" else 6.0
            out[n] = list(datasets.load_stereo_motorcycle("near", (0.5, hi), downscale))
        elif n == "rtf":
            if (DATA / "rtf").is_dir():
                out[n] = list(datasets.load_rtf(DATA / "rtf"))
            else:
                print(f"skipped rtf: no data at {DATA / 'rtf'}")
        elif n == "cuhk":
            if (DATA / "cuhk").is_dir():
                out[n] = list(datasets.load_cuhk(DATA / "cuhk"))
            else:
                print(f"skipped cuhk: no data at {DATA / 'cuhk'}")
    return out


def measure(opts, data, model, taus=(), size_multiple=32):
    from dhde.evaluation import metrics, pr_curves
    from dhde.estimation.inference import estimate_defocus
    from dhde.estimation.probability import blur_probability

    row, per = {}, {}
    for name, exs in data.items():
        if name != "cuhk":
            maes = []
            for ex in exs:
                res = estimate_defocus(ex["image"], model, options=opts, size_multiple=size_multiple)
                maes.append(metrics.sigma_mae(np.asarray(res.defocus), ex["sigma_map"]))
                per[f"{name}/{ex['name']}"] = maes[-1]
            row[name] = float(np.mean(maes))
            continue
        maps, gts, probs = [], [], {t: [] for t in taus}
        for ex in exs:
            res = estimate_defocus(ex["image"], model, options=opts, size_multiple=size_multiple)
            maps.append(np.asarray(res.defocus))
            gts.append(ex["mask"])
            for t in taus:
                probs[t].append(np.asarray(blur_probability(res, t, options=opts)))
        ev = pr_curves.evaluate_blur_detection(maps, gts)
        lit = [metrics.binary_scores(d, g) for d, g in zip(maps, gts)]
        row.update({"acc": ev["accuracy"], "maxF": ev["max_f"], "litMAE": np.mean([x["mae"] for x in lit]),
                    "litF": np.mean([x["f"] for x in lit]), "IoU": np.mean([x["iou"] for x in lit])})
        from dhde.applications.segmentation import segment_blur

        for rule, kw in (("otsu", {}), ("abs1", {"tau": 1.0}), ("abs1.5", {"tau": 1.5})):
            r = "otsu" if rule == "otsu" else "absolute"
            row[f"acc_{rule}"] = float(np.mean([np.mean(np.asarray(segment_blur(d, rule=r, **kw)) == g)
                                                for d, g in zip(maps, gts)]))
        for d, g, ex in zip(maps, gts, exs):
            per[f"cuhk/{ex['name']}"] = metrics.segmentation_accuracy(d, g)
        for t in taus:
            evp = pr_curves.evaluate_blur_detection(probs[t], gts)
            litp = [metrics.binary_scores(d, g) for d, g in zip(probs[t], gts)]
            row[f"P{t:g}:MAE"] = float(np.mean([x["mae"] for x in litp]))
            row[f"P{t:g}:F"] = float(np.mean([x["f"] for x in litp]))
            row[f"P{t:g}:maxF"] = evp["max_f"]
    return row, per


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, help="name:field=value,... (EstimateOptions)")
    ap.add_argument("--datasets", nargs="+", default=["synth2", "synth6", "rtf", "cuhk"])
    ap.add_argument("--downscale", type=int, default=1, help="synthetic scene block size (1 = 500x741)")
    ap.add_argument("--taus", type=float, nargs="*", default=[], help="blur-probability thresholds (px)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from dhde.cli.common import resolve_model, use_compilation_cache
    from dhde.estimation.inference import EstimateOptions

    use_compilation_cache("~/.cache/dhde/jax")
    model = resolve_model(args.model)
    data = _datasets(args.datasets, args.downscale)
    rows = {}
    for spec in args.variants:
        name, kw = _parse(spec)
        opts = EstimateOptions(**kw)
        t = time.perf_counter()
        row, per = measure(opts, data, model, tuple(args.taus))
        row["time_s"] = time.perf_counter() - t
        rows[name] = {"options": kw, "metrics": row, "per_image": per}
        print(f"{name} {kw}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1, default=float))
    keys = list(dict.fromkeys(k for r in rows.values() for k in r["metrics"]))
    print("\n| variant | " + " | ".join(keys) + " |")
    print("| --- |" + " ---: |" * len(keys))
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r['metrics'].get(k, float('nan')):.3f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
