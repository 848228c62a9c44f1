"""Generalisation and camera robustness on held-out photographs (issue: generalisation).

For every model given, on sharp photographs that no model trained on (the test split of a
screened data set's manifest, or any folder):

1. **tolerance accuracy at the pipeline's own edge points**: each photograph (box-downscaled
   ``--downscale`` x, centre crop of at most ``--crop``) is blurred uniformly with each sigma;
   the share of sparse points whose sigma is within 0.15 px of the truth (the paper's Table 1
   measure), per sigma and over all;
2. **robustness**: the mean sparse sigma at sigma 0.8 and 1.4, clean and under exposure 0.5x,
   0.25x, 0.1x, Gaussian noise of std 2/255 and JPEG quality 75, and its shift from clean.

Prints two tables (models interleaved photo by photo, so a busy machine hurts all alike),
writes ``generalisation.json`` and ``generalisation.png`` to ``--out``.

    python benchmarks/bench_generalisation.py --manifest ~/.cache/dhde/tfds/.../manifest.json \
        --model shipped --model new=outputs/train/.../model
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np

SIGMAS = (0.5, 0.8, 1.1, 1.4, 1.7, 2.0)
ROBUST_SIGMAS = (0.8, 1.4)
PERTURB = ("clean", "exposure 0.5", "exposure 0.25", "exposure 0.1", "noise 2/255", "jpeg 75")


def perturb(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A camera perturbation of a float RGB image in [0, 1], returned 8-bit quantised."""
    x = np.asarray(img, np.float64)
    if kind.startswith("exposure"):
        x = x * float(kind.split()[1])
    elif kind.startswith("noise"):
        x = x + rng.normal(0, 2 / 255, x.shape)
    x = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    if kind.startswith("jpeg"):
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(x).save(buf, format="JPEG", quality=int(kind.split()[1]))
        x = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return x.astype(np.float32) / 255.0


def held_out_photos(manifest: str | None, folder: str | None, downscale: int, crop: tuple[int, int], limit=None):
    from dhde.data.sources import area_downscale
    from dhde.io.image import load_image

    if manifest:
        entries = json.loads(Path(manifest).expanduser().read_text())["files"]
        files = [(e["name"], e["file"]) for e in entries if e.get("split") == "test"]
    else:
        from dhde.data.sources import IMAGE_SUFFIXES

        files = [(p.name, str(p)) for p in sorted(Path(folder).expanduser().rglob("*"))
                 if p.suffix.lower() in IMAGE_SUFFIXES]
    out = []
    for name, f in files[:limit]:
        img = area_downscale(load_image(f), downscale)
        h, w = img.shape[:2]
        ch, cw = min(h, crop[0]), min(w, crop[1])
        y, x = (h - ch) // 2, (w - cw) // 2
        out.append((name, img[y:y + ch, x:x + cw]))
    return out


def load_models(specs):
    import dhde

    models = {}
    for s in specs:
        name, _, path = s.partition("=")
        if s == "shipped" or path == "":
            models[name] = dhde.load_model() if s == "shipped" else dhde.load_model(name)
        elif path.startswith("caffe:"):
            models[name] = dhde.import_caffe_model(path[len("caffe:"):]).to_model()
        else:
            models[name] = dhde.load_model(path)
    return models


def sparse_sigmas(img, model, opts):
    import dhde

    res = dhde.estimate_defocus(img, model, options=opts, size_multiple=64)  # few compilations
    m = np.asarray(res.mask)
    return np.asarray(res.sparse)[m]


def run(models, photos, opts_for, seed=0):
    from dhde.filters.gaussian import gaussian_blur
    from tqdm.auto import tqdm

    acc = {m: {s: [] for s in SIGMAS} for m in models}
    mean = {m: {(s, k): [] for s in ROBUST_SIGMAS for k in PERTURB} for m in models}
    rng = np.random.default_rng(seed)
    for name, img in tqdm(photos, desc="held-out photographs"):
        for s in sorted(set(SIGMAS) | set(ROBUST_SIGMAS)):
            blurred = np.asarray(gaussian_blur(img, s))
            kinds = PERTURB if s in ROBUST_SIGMAS else ("clean",)
            for k in kinds:
                x = perturb(blurred, k, np.random.default_rng([seed, hash(name) % 2**31, int(s * 100)]))
                for m, model in models.items():  # interleaved: the same input for every model
                    try:
                        v = sparse_sigmas(x, model, opts_for(m))
                    except ValueError:  # no edges (e.g. exposure 0.1 on a dark crop)
                        continue
                    if k == "clean" and s in SIGMAS:
                        acc[m][s].append((np.abs(v - s) <= 0.15 + 1e-4).sum() / max(len(v), 1))
                    if s in ROBUST_SIGMAS:
                        mean[m][(s, k)].append(float(v.mean()))
    del rng
    return acc, mean


def report(acc, mean, out: Path):
    lines = ["| model | all | " + " | ".join(f"{s}" for s in SIGMAS) + " |",
             "|---|---:|" + "---:|" * len(SIGMAS)]
    res = {"accuracy": {}, "robustness": {}}
    for m, a in acc.items():
        per = {s: float(np.mean(v)) if v else float("nan") for s, v in a.items()}
        allv = float(np.mean([x for v in a.values() for x in v])) if any(a.values()) else float("nan")
        res["accuracy"][m] = {"all": allv, **{str(s): v for s, v in per.items()}}
        lines.append(f"| {m} | {allv:.3f} | " + " | ".join(f"{per[s]:.3f}" for s in SIGMAS) + " |")
    lines += ["", "mean sparse sigma (px) and shift from clean:", "",
              "| model | sigma | " + " | ".join(PERTURB) + " | max shift |",
              "|---|---:|" + "---:|" * (len(PERTURB) + 1)]
    for m, d in mean.items():
        res["robustness"][m] = {}
        for s in ROBUST_SIGMAS:
            clean = np.mean(d[(s, "clean")]) if d[(s, "clean")] else np.nan
            cells, shifts = [], []
            for k in PERTURB:
                v = float(np.mean(d[(s, k)])) if d[(s, k)] else float("nan")
                res["robustness"][m][f"{s}/{k}"] = v
                if k == "clean":
                    cells.append(f"{v:.3f}")
                else:
                    cells.append(f"{v:.3f} ({v - clean:+.3f})")
                    if k != "exposure 0.1":
                        shifts.append(abs(v - clean))
            lines.append(f"| {m} | {s} | " + " | ".join(cells) + f" | {max(shifts):.3f} |")
    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "generalisation.json").write_text(json.dumps(res, indent=2))
    (out / "generalisation.md").write_text(text + "\n")
    _plot(res, out / "generalisation.png")
    return res


def _plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for m, a in res["accuracy"].items():
        ax[0].plot(SIGMAS, [a[str(s)] for s in SIGMAS], "o-", label=f"{m} ({a['all']:.2f})")
    ax[0].set(xlabel="true sigma (px)", ylabel="tolerance accuracy (0.15 px)", ylim=(0, 1),
              title="held-out photographs, uniform blur")
    ax[0].legend()
    gains = [1, 0.5, 0.25, 0.1]
    for m, r in res["robustness"].items():
        for s in ROBUST_SIGMAS:
            vals = [r[f"{s}/clean"]] + [r[f"{s}/exposure {g}"] for g in gains[1:]]
            ax[1].plot(gains, vals, "o-", label=f"{m}, sigma {s}")
    ax[1].set(xscale="log", xlabel="exposure gain", ylabel="mean sparse sigma (px)",
              title="exposure sweep")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", help="manifest.json of a screened data set (its test split)")
    p.add_argument("--folder", help="or: a folder of sharp held-out photographs")
    p.add_argument("--model", action="append", default=None,
                   help="'shipped', NAME=/path/to/model or NAME=caffe:/path/x.caffemodel (repeatable)")
    p.add_argument("--downscale", type=int, default=2)
    p.add_argument("--crop", type=int, nargs=2, default=(256, 320))
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", default="outputs/bench_generalisation")
    a = p.parse_args(argv)
    if not (a.manifest or a.folder):
        p.error("give --manifest or --folder")
    import dhde

    models = load_models(a.model or ["shipped"])
    photos = held_out_photos(a.manifest, a.folder, a.downscale, tuple(a.crop), a.limit)
    if not photos:
        p.error("no held-out photographs found")
    opts = {m: dhde.EstimateOptions(seeds=0) for m in models}
    t0 = time.perf_counter()
    acc, mean = run(models, photos, lambda m: opts[m])
    print(f"{len(photos)} photographs, {time.perf_counter() - t0:.0f} s")
    return report(acc, mean, Path(a.out))


if __name__ == "__main__":
    main()
