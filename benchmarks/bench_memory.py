"""Peak memory of one estimate: XLA's temporaries per stage and for the whole ``estimate_core``,
and (``--run``) the measured peak RSS of ``estimate_defocus`` in this process. Prints a table.

    python benchmarks/bench_memory.py                         # 3000x4000 (12 MP), compile only
    python benchmarks/bench_memory.py --size 1500x2000 --stages propagation,whole
    python benchmarks/bench_memory.py --run                    # also run it: peak RSS, seconds

XLA's CPU runtime allocates a program's temporaries as one block whose size is fixed at compile
time (``memory_analysis().temp_size_in_bytes``: the peak of its heap simulation), so the table is
exact and needs no run: ``temp`` is what the stage holds beyond its arguments and outputs. The
``planes`` column divides by one (H, W) float32 plane, which makes sizes comparable. Compiling
``whole`` at 12 MP takes ~20 s; ``--run`` adds two calls of ~20 s each (the first compiles).
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np


def _stages(h: int, w: int):
    from dhde.estimation.classify import classify_edges
    from dhde.estimation.inference import default_model, estimate_core
    from dhde.estimation.options import EstimateOptions
    from dhde.filters.bilateral import probability_joint_bilateral_filter
    from dhde.filters.edges import DEFAULT_SIGMA, scale_map
    from dhde.filters.rolling_guidance import rolling_guidance_filter
    from dhde.propagation import matting, multigrid
    from dhde.propagation import solver as propagation

    model, opts = default_model(), EstimateOptions()
    s = jax.ShapeDtypeStruct
    im, sc, f2, b2 = s((h, w, 3), jnp.float32), s((h, w), jnp.int32), s((h, w), jnp.float32), s((h, w), jnp.bool_)
    c12 = s((12, h, w), jnp.float32)
    lam = jnp.float32(matting.regularizer(opts.eps, "code"))
    return {
        "edges": (lambda im: scale_map(jnp.max(im, -1), opts.thresholds, DEFAULT_SIGMA, jnp.float32(opts.contrast_floor)),
                  (im,)),
        "classify": (lambda im, s_, m: classify_edges(im, s_, m, opts.chunk), (im, sc, model)),
        "rolling guidance": (lambda im: rolling_guidance_filter(im, opts.rgf_sigma_s, opts.rgf_sigma_r, opts.rgf_iterations,
                                                                per_channel=opts.rgf_per_channel), (im,)),
        "bilateral": (lambda v, m, c, g: probability_joint_bilateral_filter(
            v, m, c, g, sigma_s=jnp.float32(opts.bf_sigma_s), sigma_r=jnp.float32(opts.bf_sigma_r),
            sigma_c=jnp.float32(opts.bf_sigma_c), window=opts.bf_window, range_channels=opts.range_channels),
            (f2, b2, f2, im)),
        "matting coefficients": (lambda g: matting.stencil_coefficients(g, lam), (im,)),
        "multigrid setup": (multigrid.build_multigrid, (c12, f2)),
        "propagation": (lambda f, m, g: propagation.propagate_arrays(
            f, m, g, jnp.zeros(m.shape, jnp.float32), jnp.float32(opts.gamma), lam, jnp.float32(opts.tol),
            maxiter=opts.maxiter, preconditioner=opts.preconditioner)[0], (f2, b2, im)),
        "whole": (lambda im, m, k: estimate_core(im, m, k, opts), (im, model, jax.random.key(0))),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="3000x4000")
    ap.add_argument("--stages", default=None, help="comma-separated subset (default: all)")
    ap.add_argument("--run", action="store_true", help="also run estimate_defocus twice: peak RSS and seconds")
    a = ap.parse_args(argv)
    h, w = map(int, a.size.lower().split("x"))
    plane, gib = h * w * 4, 2.0**30
    want = None if a.stages is None else set(a.stages.split(","))
    print(f"\n{h}x{w} ({h * w / 1e6:.1f} MP); one (H, W) float32 plane = {plane / 2**20:.0f} MiB\n")
    print("| stage | temp (GiB) | temp (planes) | arguments (GiB) | outputs (GiB) | compile (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (fn, args) in _stages(h, w).items():
        if want is not None and name not in want:
            continue
        t = time.perf_counter()
        ma = jax.jit(fn).lower(*args).compile().memory_analysis()
        print(f"| {name} | {ma.temp_size_in_bytes / gib:.2f} | {ma.temp_size_in_bytes / plane:.1f} | "
              f"{ma.argument_size_in_bytes / gib:.2f} | {ma.output_size_in_bytes / gib:.2f} | "
              f"{time.perf_counter() - t:.1f} |", flush=True)
    if a.run:
        import skimage.data
        from skimage.transform import resize

        from dhde.estimation.inference import estimate_defocus

        img = resize(skimage.data.coffee(), (h, w), anti_aliasing=True).astype(np.float32)
        for k in range(2):
            t = time.perf_counter()
            jax.block_until_ready(estimate_defocus(img).defocus)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            print(f"\nestimate_defocus call {k + 1} (coffee upscaled): {time.perf_counter() - t:.1f} s, "
                  f"peak RSS so far {rss:.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
