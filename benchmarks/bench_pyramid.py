"""Speed of the multi-scale estimator against the paper's single level. Prints a table; not a test.

    python benchmarks/bench_pyramid.py                        # 480x640 coffee, levels 1 vs 3
    python benchmarks/bench_pyramid.py --levels 1 2 3 4 --rounds 7 --image photo.jpg

The variants are timed interleaved (round r runs every variant once, in turn), after one
warm-up call each (compilation), so that load from other processes hits them alike. Reported:
median, min and max of the steady-state ``estimate_defocus`` wall time, the ratio of medians to
levels=1 and the number of sparse points per pyramid level. Target (issue 12): 3 levels at most
1.5x the single level at 640x480.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np


def _image(spec, h, w):
    from skimage.transform import resize

    if spec:
        from dhde.io.image import load_image

        img = load_image(spec)
    else:
        import skimage.data

        img = skimage.data.coffee()
    return resize(img, (h, w), anti_aliasing=True).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="480x640")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--image", default=None, help="an image file (default: scikit-image's coffee)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--options", default="", help="extra EstimateOptions, field=value,...")
    args = ap.parse_args()

    from dhde.cli.common import resolve_model
    from dhde.estimation.inference import EstimateOptions, estimate_defocus

    extra = {}
    for item in filter(None, args.options.split(",")):
        k, v = item.split("=")
        extra[k] = int(v) if v.isdigit() else v
    h, w = map(int, args.size.lower().split("x"))
    img = _image(args.image, h, w)
    model = resolve_model(args.model)
    variants = {n: EstimateOptions(levels=n, **extra) for n in args.levels}
    first, times, points = {}, {n: [] for n in variants}, {}
    for n, opts in variants.items():
        t = time.perf_counter()
        res = estimate_defocus(img, model, options=opts)
        jax.block_until_ready(res.defocus)
        first[n] = time.perf_counter() - t
        lv = np.asarray(res.level)
        points[n] = [int(np.sum(lv == k)) for k in range(n)]
    for _ in range(args.rounds):
        for n, opts in variants.items():
            t = time.perf_counter()
            jax.block_until_ready(estimate_defocus(img, model, options=opts).defocus)
            times[n].append(time.perf_counter() - t)
    base = float(np.median(times[args.levels[0]]))
    print(f"\n{h}x{w}, {args.rounds} interleaved rounds, {jax.devices()[0].platform}, options {extra or 'default'}")
    print("| levels | first call (s) | median (s) | min-max (s) | ratio to levels=" f"{args.levels[0]} | points per level |")
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    for n in variants:
        t = np.asarray(times[n])
        print(f"| {n} | {first[n]:.1f} | {np.median(t):.2f} | {t.min():.2f}-{t.max():.2f} | "
              f"{np.median(t) / base:.2f} | {' / '.join(map(str, points[n]))} |")
    for n in variants:
        if n == 3 and args.levels[0] == 1:
            r = float(np.median(times[3])) / base
            print(f"target: 3 levels <= 1.5x the single level at {h}x{w}: {r:.2f}x -> {'met' if r <= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
