"""Feature pipeline benchmark (issue: foundation). Prints a table; not a test.

    python benchmarks/bench_features.py [--image PATH] [--repeats 5]

For a 480x640 photograph (default: scikit-image's coffee, resized) with its real edge count,
times each stage after warm-up: edges (value channel + Canny x2 + scale map), gather (context
patches of both scales), DCT, gradient, SVD, CNN forward (per patch, and with the first layer
shared between patches as inference does), the fused end-to-end ``edge_features`` (edges +
patches + all four features, one jit), and ``classify_edges`` (features + classifier, the
inference path) with and without the shared first layer. Also the process's peak RSS.
Runs unchanged on a GPU (whatever ``jax.devices()`` returns).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def timeit(fn, *args, repeats=5):
    jax.block_until_ready(fn(*args))  # warm-up / compile
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--image", default=None)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from dhde.filters.edges import DEFAULT_SIGMA, ESTIMATION_THRESHOLDS, _scale_map_jit
    from dhde.features.dct import dct_feature
    from dhde.estimation.classify import classify_edges
    from dhde.model import cnn_shared as deep_shared
    from dhde.model.cnn import DeepFeature
    from dhde.features.gradient import gradient_feature
    from dhde.features.pipeline import patch_gradient_magnitude
    from dhde.features.singular_values import singular_value_feature
    from dhde.io.image import load_image
    from dhde.model.network import ModelConfig, init_model
    from dhde.filters.patches import LARGE, SMALL, edge_coordinates, extract_patches

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test-side references
    from reference.extract import edge_features, prepare_scales

    if args.image:
        img = load_image(args.image)
    else:
        import skimage.data
        from skimage.transform import resize

        img = resize(skimage.data.coffee(), (480, 640), anti_aliasing=True).astype(np.float32)
    img = jnp.asarray(img)
    cfg = ModelConfig()
    model = init_model(cfg, jax.random.key(0))

    thr = jnp.asarray(ESTIMATION_THRESHOLDS, jnp.float32)
    edges = jax.jit(lambda im: _scale_map_jit(jnp.max(im, -1), thr, DEFAULT_SIGMA))
    scales, cl, cs, (n1, n2) = prepare_scales(img, cfg)
    c1 = edge_coordinates(scales, 1, cl).coords
    c2 = edge_coordinates(scales, 2, cs).coords
    gather = jax.jit(lambda im, a, b: (extract_patches(im, a, LARGE + 2), extract_patches(im, b, SMALL + 2)))
    ctx1, ctx2 = gather(img, c1, c2)
    g1, g2 = jnp.max(ctx1, -1), jnp.max(ctx2, -1)
    p1, p2 = g1[:, 1:-1, 1:-1], g2[:, 1:-1, 1:-1]
    dct = jax.jit(lambda a, b: (dct_feature(a, 25), dct_feature(b, 13)))
    grad = jax.jit(lambda a, b: (gradient_feature(patch_gradient_magnitude(a), 25),
                                 gradient_feature(patch_gradient_magnitude(b), 13)))
    svd = jax.jit(lambda a, b: (singular_value_feature(a, 25), singular_value_feature(b, 13)))
    cnn_in = jnp.concatenate([jnp.round(ctx1[:, 1:-1, 1:-1] * 255), jnp.pad(jnp.round(ctx2[:, 1:-1, 1:-1] * 255), ((0, 0), (6, 6), (6, 6), (0, 0)), mode="edge")])
    deep = jax.jit(lambda p, x: DeepFeature().apply({"params": p}, x))
    def shared_cnn(p, im, a, b):  # what classify_edges does: dense maps + small patches' 17x17
        maps = deep_shared._pool1_maps(p, jnp.round(im * 255))
        return (deep_shared.deep_feature_large_at(p, maps, a),
                deep_shared.deep_feature_small(p, jnp.round(ctx2[:, 1:-1, 1:-1] * 255)))
    shared_cnn = jax.jit(shared_cnn)
    classify = {k: jax.jit(lambda im, s, m, k=k: classify_edges(im, s, m, 2048, k)) for k in (False, True)}

    def fused(im):  # edges are timed separately (host sync for the capacities)
        f = edge_features(im, scales, cl, cs, cfg)
        return f.hand, deep(model.params["deep"], f.cnn)

    rows = [
        ("edges (value, Canny x2, scale map)", timeit(edges, img, repeats=args.repeats)),
        ("gather context patches", timeit(gather, img, c1, c2, repeats=args.repeats)),
        ("DCT feature", timeit(dct, p1, p2, repeats=args.repeats)),
        ("gradient feature", timeit(grad, g1, g2, repeats=args.repeats)),
        ("SVD feature", timeit(svd, p1, p2, repeats=args.repeats)),
        ("CNN forward", timeit(deep, model.params["deep"], cnn_in, repeats=args.repeats)),
        ("CNN forward, first layer shared", timeit(shared_cnn, model.params["deep"], img, c1[:n1], c2,
                                                   repeats=args.repeats)),
        ("classify_edges, per-patch CNN", timeit(classify[False], img, scales, model, repeats=args.repeats)),
        ("classify_edges, shared first layer", timeit(classify[True], img, scales, model, repeats=args.repeats)),
    ]
    total = timeit(edges, img, repeats=args.repeats) + timeit(fused, img, repeats=args.repeats)
    rows.append(("edges + patches + 4 features (end to end)", total))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nimage {img.shape[0]}x{img.shape[1]}, device {jax.devices()[0].platform}, "
          f"edge pixels: {n1} large + {n2} small (capacities {cl} + {cs})\n")
    print(f"| stage | median time (ms) |\n|---|---:|")
    for name, t in rows:
        print(f"| {name} | {1000 * t:.1f} |")
    print(f"\npeak RSS: {peak:.0f} MiB (target: end to end < 1500 ms on a 2-core CPU)")


if __name__ == "__main__":
    main()
