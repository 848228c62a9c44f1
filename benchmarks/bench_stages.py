"""Where the time of one estimate goes: each stage of ``estimate_core`` jitted alone. Prints a table.

    python benchmarks/bench_stages.py                       # coffee, 480x640, shipped model
    python benchmarks/bench_stages.py --image astronaut --size 480x640 --repeats 7

The stages are the public functions ``estimate_core`` composes (issue 14), each compiled on its
own and timed on the same image (median and spread over ``--repeats`` interleaved rounds, after
one warm-up), beside the whole ``estimate_core``. The sum of the stages exceeds the whole a
little (each stage pays its own dispatch and cannot fuse with its neighbours).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np


def _photo(name: str, h: int, w: int) -> np.ndarray:
    import skimage.data
    from skimage.color import gray2rgb
    from skimage.transform import resize

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = gray2rgb(img)
    return resize(img[..., :3], (h, w), anti_aliasing=True).astype(np.float32)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="coffee", help="a scikit-image data function name")
    ap.add_argument("--size", default="480x640")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)

    from dhde.estimation.classify import classify_edges
    from dhde.estimation.inference import estimate_core
    from dhde.estimation.options import EstimateOptions
    from dhde.estimation.sparse_map import point_sigma
    from dhde.filters.bilateral import probability_joint_bilateral_filter
    from dhde.filters.edges import DEFAULT_SIGMA, scale_map
    from dhde.filters.rolling_guidance import rolling_guidance_filter
    from dhde.model.io import load_model
    from dhde.propagation import matting
    from dhde.propagation import solver as propagation

    h, w = map(int, a.size.lower().split("x"))
    image = jnp.asarray(_photo(a.image, h, w))
    model, opts = load_model(), EstimateOptions()
    key = jax.random.key(0)

    f_edges = jax.jit(lambda im: scale_map(jnp.max(im, -1), opts.thresholds, DEFAULT_SIGMA,
                                           jnp.float32(opts.contrast_floor)))
    f_classify = jax.jit(lambda im, s, m: classify_edges(im, s, m, opts.chunk))
    f_guide = jax.jit(lambda im: rolling_guidance_filter(im, opts.rgf_sigma_s, opts.rgf_sigma_r, opts.rgf_iterations,
                                                         per_channel=opts.rgf_per_channel))
    f_bilateral = jax.jit(lambda s, m, c, g: probability_joint_bilateral_filter(
        s, m, c, g, sigma_s=jnp.float32(opts.bf_sigma_s), sigma_r=jnp.float32(opts.bf_sigma_r),
        sigma_c=jnp.float32(opts.bf_sigma_c), window=opts.bf_window, range_channels=opts.range_channels))
    lam = jnp.float32(matting.regularizer(opts.eps, "code"))

    def propagate(filtered, mask, guide):
        x0 = jnp.full(mask.shape, jnp.sum(filtered) / jnp.maximum(jnp.sum(mask), 1), jnp.float32)
        return propagation.propagate_arrays(filtered, mask, guide, x0, jnp.float32(opts.gamma), lam,
                                            jnp.float32(opts.tol), maxiter=opts.maxiter,
                                            preconditioner=opts.preconditioner)[0]

    f_whole = jax.jit(lambda im, m, k: estimate_core(im, m, k, opts).defocus)

    scales = f_edges(image)
    probs = f_classify(image, scales, model)
    mask = scales > 0
    sparse = jnp.where(mask, point_sigma(probs), 0.0)
    conf = jnp.where(mask, jnp.max(probs, -1), 0.0)
    guide = f_guide(image)
    filtered = f_bilateral(sparse, mask, conf, guide)
    stages = {
        "Canny x2, scale map (3.1)": lambda: f_edges(image),
        "patches, features, classifier (3.2-4.1)": lambda: f_classify(image, scales, model),
        "rolling guidance I_G (4.2)": lambda: f_guide(image),
        "bilateral I_B (Eq. 6)": lambda: f_bilateral(sparse, mask, conf, guide),
        "propagation I_F (4.3)": lambda: propagate(filtered, mask, guide),
        "whole estimate_core": lambda: f_whole(image, model, key),
    }
    times = {k: [] for k in stages}
    for fn in stages.values():
        jax.block_until_ready(fn())
    for _ in range(a.repeats):  # interleaved rounds
        for name, fn in stages.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t0)
    print(f"{a.image} {h}x{w}, {int(jnp.sum(mask))} edge pixels, model {model.config.feature_set}, "
          f"{jax.default_backend()}, {a.repeats} rounds\n")
    print("| stage | median (ms) | min-max (ms) |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {1e3 * np.median(ts):.0f} | {1e3 * min(ts):.0f}-{1e3 * max(ts):.0f} |")


if __name__ == "__main__":
    main()
