"""Speed of ``estimate_defocus`` against another checkout, interleaved in one run. Prints a table.

    python benchmarks/bench_compare.py --base /path/to/old/checkout
    python benchmarks/bench_compare.py --base ../old --model caffe:../shared/data/model --rounds 9

The issue-15 targets are measured this way: one worker process per checkout (``PYTHONPATH`` set
to it, so both import their own ``dhde``), each warmed up on every image (that first call, compile
included, is reported), then timed in alternating rounds: base, this tree, base, this tree, ...
so that the noise of a shared machine falls on both alike. Prints the median and min-max of each
image per checkout, and the largest difference between the two checkouts' defocus maps (and
probabilities), which must stay at float32 rounding.

Images (``--images``): scikit-image photographs resized to 480x640; ``coffee`` (~12k edge
pixels) and ``immunohistochemistry`` (~50k, the edge-rich case) by default.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]


def _photo(name: str, h: int, w: int) -> np.ndarray:
    import skimage.data
    from skimage.color import gray2rgb
    from skimage.transform import resize

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = gray2rgb(img)
    return resize(img[..., :3], (h, w), anti_aliasing=True).astype(np.float32)


def _worker(args) -> None:
    """Reads commands on stdin ("first NAME", "time NAME", "save NAME PATH", "quit"); one JSON line
    per command on stdout."""
    import jax

    from dhde.estimation.inference import estimate_defocus
    from dhde.model.spec import resolve_model

    model = resolve_model(args.model)
    h, w = map(int, args.size.lower().split("x"))
    images = {n: _photo(n, h, w) for n in args.images.split(",")}
    results = {}
    for line in sys.stdin:
        cmd, name, *rest = line.split() + [""]
        if cmd == "quit":
            break
        t0 = time.perf_counter()
        if cmd in ("first", "time"):
            res = estimate_defocus(images[name], model)
            jax.block_until_ready(res.defocus)
            results[name] = res
            out = {"seconds": time.perf_counter() - t0, "edges": int(np.sum(np.asarray(res.scales > 0)))}
            if cmd == "first":
                import dhde

                out["dhde"] = str(Path(dhde.__file__).parent)
        elif cmd == "save":
            r = results[name]
            np.savez(rest[0], defocus=np.asarray(r.defocus), probs=np.asarray(r.probabilities))
            out = {}
        print(json.dumps(out), flush=True)


class _Worker:
    def __init__(self, tree: Path, args):
        env = dict(os.environ, PYTHONPATH=str(tree))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", args.model or "",
               "--size", args.size, "--images", args.images]
        self.proc = subprocess.Popen(cmd, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)

    def ask(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"worker died on {line!r}")
        return json.loads(reply)

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required="--worker" not in (argv or sys.argv), help="the other checkout")
    ap.add_argument("--model", default=None, help="model spec (default: the shipped model)")
    ap.add_argument("--images", default="coffee,immunohistochemistry")
    ap.add_argument("--size", default="480x640")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.model = a.model or None
    if a.worker:
        return _worker(a)

    from tqdm import tqdm

    trees = {"base": Path(a.base).resolve(), "this": HERE}
    workers = {k: _Worker(t, a) for k, t in trees.items()}
    names = a.images.split(",")
    first, times, edges = {}, {(k, n): [] for k in trees for n in names}, {}
    try:
        for k, wk in workers.items():
            for n in names:
                r = wk.ask(f"first {n}")
                first[k, n], edges[n] = r["seconds"], r["edges"]
                if Path(r["dhde"]).parent != trees[k]:
                    raise RuntimeError(f"the {k} worker imported dhde from {r['dhde']}, not {trees[k]}")
        for _ in tqdm(range(a.rounds), desc="rounds"):
            for n in names:
                for k, wk in workers.items():
                    times[k, n].append(wk.ask(f"time {n}")["seconds"])
        diffs = {}
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            for n in names:
                arrs = {}
                for k, wk in workers.items():
                    path = os.path.join(d, f"{k}_{n}.npz")
                    wk.ask(f"save {n} {path}")
                    arrs[k] = np.load(path)
                diffs[n] = {f: float(np.max(np.abs(arrs["this"][f] - arrs["base"][f]))) for f in ("defocus", "probs")}
    finally:
        for wk in workers.values():
            wk.close()
    print(f"\nmodel {a.model or 'shipped'}, {a.size}, {a.rounds} interleaved rounds; base = {trees['base']}\n")
    print("| image | edge px | base median (ms) | base min-max | this median (ms) | this min-max | speed-up "
          "| first call base / this (s) | max abs diff map / probs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in names:
        b, t = np.array(times["base", n]) * 1e3, np.array(times["this", n]) * 1e3
        print(f"| {n} | {edges[n]} | {np.median(b):.0f} | {b.min():.0f}-{b.max():.0f} | {np.median(t):.0f} | "
              f"{t.min():.0f}-{t.max():.0f} | {np.median(b) / np.median(t):.2f}x | "
              f"{first['base', n]:.1f} / {first['this', n]:.1f} | {diffs[n]['defocus']:.2e} / {diffs[n]['probs']:.2e} |")


if __name__ == "__main__":
    main()
