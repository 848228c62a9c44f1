"""One short accelerator check (issue 15, item 6): prints a table, not a test.

    bash benchmarks/device_check.sh            # on a GPU / TPU machine: at most ~8 minutes
    python benchmarks/device_check.py --tiny   # the same code path on CPU with tiny sizes (a test runs it)

Measures, on whatever device JAX picks (all devices form the training mesh):
  * ``estimate_defocus`` at 640x480 (``coffee``): the first call (compilation + run) and the
    steady state (median and spread of ``--repeats`` calls);
  * the propagation alone on that image's sparse map (median);
  * one 12 MP (3000x4000) photograph: its first call, and the process's peak RSS;
  * training throughput (patches/s) of the real sharded step, model B / separate, at batch 1024
    and 4096 (``benchmarks/bench_train.py``'s loop path: host gather + transfer every step).
The goals on one H100/H200 are printed beside the numbers (<= 20 ms per 640x480 image,
>= 1M training patches/s); on a CPU they are not expected to hold.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_train, next to this file

GOAL_IMAGE_MS = 20.0
GOAL_TRAIN_PPS = 1_000_000


def _photo(h: int, w: int) -> np.ndarray:
    import skimage.data
    from skimage.transform import resize

    return resize(skimage.data.coffee(), (h, w), anti_aliasing=True).astype(np.float32)


def _timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def estimate_rows(size: tuple[int, int], large: tuple[int, int] | None, repeats: int) -> list[tuple]:
    from dhde.estimation.inference import estimate_defocus
    from dhde.model.io import load_model
    from dhde.propagation.solver import propagate

    model = load_model()
    img = _photo(*size)
    t0 = time.perf_counter()
    res = estimate_defocus(img, model)
    jax.block_until_ready(res.defocus)
    first = time.perf_counter() - t0
    ts = _timed(lambda: jax.block_until_ready(estimate_defocus(img, model).defocus), repeats)
    mask, b, guide = np.asarray(res.mask), np.asarray(res.filtered), np.asarray(res.guidance)
    jax.block_until_ready(propagate(b, mask, guide).defocus)
    ps = _timed(lambda: jax.block_until_ready(propagate(b, mask, guide).defocus), repeats)
    label = f"{size[1]}x{size[0]}"
    rows = [
        (f"estimate {label}, first call (s)", f"{first:.2f}", ""),
        (f"estimate {label}, steady (ms, median [min-max])",
         f"{1e3 * np.median(ts):.1f} [{1e3 * min(ts):.1f}-{1e3 * max(ts):.1f}]", f"<= {GOAL_IMAGE_MS:.0f}"),
        (f"propagation {label} (ms, median)", f"{1e3 * np.median(ps):.1f}", ""),
    ]
    if large is not None:
        big = _photo(*large)
        t0 = time.perf_counter()
        jax.block_until_ready(estimate_defocus(big, model).defocus)
        t_big = time.perf_counter() - t0
        mp = large[0] * large[1] / 1e6
        rows.append((f"estimate {large[1]}x{large[0]} ({mp:.2f} MP), one call (s)", f"{t_big:.2f}", ""))
    rows.append(("peak RSS after the estimates (MiB)", f"{_peak_rss_mib():.0f}", ""))
    return rows


def training_rows(batches: list[int], steps: int, warmup: int) -> list[tuple]:
    from bench_train import bench_train

    from dhde.model.network import ModelConfig

    mcfg = ModelConfig(feature_set="B", encoding="separate")
    rows = []
    for batch in batches:
        r = bench_train(mcfg, batch, steps, warmup)
        rows.append((f"training B/separate, batch {batch} (patches/s)", f"{r['loop_pps']:.0f}",
                     f">= {GOAL_TRAIN_PPS:,}"))
        rows.append(("  same, batch already on device (patches/s)", f"{r['resident_pps']:.0f}", ""))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (CPU smoke run of the same code)")
    ap.add_argument("--repeats", type=int, default=None)
    a = ap.parse_args(argv)
    if a.tiny:
        # the 'large' image has the small one's size: the same code path without a second compilation
        size, large, batches, steps, warmup, repeats = (64, 80), (64, 80), [16], 2, 1, 1
    else:
        size, large, batches, steps, warmup, repeats = (480, 640), (3000, 4000), [1024, 4096], 30, 3, 10
    repeats = a.repeats or repeats
    dev = jax.devices()
    t_start = time.perf_counter()
    print(f"devices: {len(dev)} x {dev[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}",
          flush=True)
    rows = estimate_rows(size, large, repeats)
    rows += training_rows(batches, steps, warmup)
    print("\n| measure | value | goal on one H100/H200 |")
    print("|---|---:|---|")
    for name, value, goal in rows:
        print(f"| {name} | {value} | {goal} |")
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
