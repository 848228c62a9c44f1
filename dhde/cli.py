"""The work behind ``experiments/*.py``: resolving inputs and models, looping, writing files."""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from dhde.data.sources import IMAGE_SUFFIXES

DEFAULT_INPUT_NAME = "stereo_motorcycle"
#: Only compilations that take at least this long go into the persistent cache.
CACHE_MIN_COMPILE_SECONDS = 1.0


def use_compilation_cache(path) -> Path | None:
    """Turns on JAX's persistent compilation cache in ``path`` (None / "" : leaves it off).

    For the entry points (``experiments/*.py``, config key ``jax_cache``): the estimator's
    first call compiles for ~25 s on 2 CPU cores; with the cache a later run on the same machine
    and image size reads the executable back (measured: first call 29-30 s -> 6.4 s, the rest
    being small compilations and the model load). A folder that cannot be created only prints a
    warning. Returns the folder in use, or None.
    """
    if not path:
        return None
    import jax

    p = Path(str(path)).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"warning: compilation cache off, cannot create {p}: {e}")
        return None
    jax.config.update("jax_compilation_cache_dir", str(p))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)
    return p


def default_input() -> tuple[str, np.ndarray, np.ndarray]:
    """The built-in input: scikit-image's stereo_motorcycle left view, defocused with a known
    sigma map (near plane in focus, sigma 0.5..2.0 by disparity). Returns (name, image, sigma)."""
    from dhde.evaluation.synthetic import stereo_motorcycle_scene

    image, sigma = stereo_motorcycle_scene()
    return DEFAULT_INPUT_NAME, np.asarray(image, np.float32), np.asarray(sigma, np.float32)


def iter_inputs(spec) -> Iterator[tuple[str, object]]:
    """(stem, path-or-array) pairs from None (default input), a file, a folder, or a list."""
    if spec is None:
        name, image, _ = default_input()
        yield name, image
        return
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    for item in items:
        p = Path(str(item)).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                print(f"warning: no images under {p}")
            for f in files:
                yield str(f.relative_to(p).with_suffix("")).replace("/", "__"), f
        else:
            yield p.stem, p  # missing files fail (reported) in load_image


def resolve_model(spec):
    """None -> shipped model; "caffe:/path/model.caffemodel" -> imported; else a model dir."""
    from dhde.caffe import import_caffe_model
    from dhde.model_io import load_model

    if spec is None:
        return load_model()
    s = str(spec)
    if s.startswith("caffe:"):
        return import_caffe_model(s[len("caffe:"):]).to_model()
    if s.endswith(".caffemodel"):
        return import_caffe_model(s).to_model()
    return load_model(s)


def run_estimate(cfg: dict, out_dir) -> int:
    """Estimates every input; returns the number of failed images (0 = all fine)."""
    from dhde.applications.segmentation import segment_blur
    from dhde.image import load_image
    from dhde.inference import EstimateOptions, estimate_defocus
    from dhde.outputs import write_estimate

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = resolve_model(cfg.get("model"))
    opts = EstimateOptions(**(cfg.get("options") or {}))
    truth = None
    if cfg.get("input") is None:  # the built-in input has a known sigma map: render it once
        name, image, truth = default_input()
        inputs = [(name, image)]
    else:
        inputs = list(iter_inputs(cfg.get("input")))
    summary, failures = {}, 0
    for stem, src in tqdm(inputs, desc="estimating", unit="img", disable=len(inputs) < 2):
        t0 = time.perf_counter()
        try:
            image = load_image(src)
            res = estimate_defocus(image, model, options=opts, size_multiple=int(cfg.get("size_multiple", 1)))
            mask = np.asarray(segment_blur(res.defocus, float(cfg.get("alpha", 0.3))))
            paths = write_estimate(out, stem, image, res, mask)
            d = np.asarray(res.defocus)
            summary[stem] = {
                "source": str(src) if not isinstance(src, np.ndarray) else "built-in",
                "seconds": round(time.perf_counter() - t0, 3),
                "sigma_min": float(d.min()), "sigma_max": float(d.max()), "sigma_mean": float(d.mean()),
                "edge_pixels": int(np.asarray(res.mask).sum()),
                "residual": float(res.residual),
                "files": {k: str(v) for k, v in paths.items()},
            }
            if truth is not None:
                from dhde.image import save_image

                summary[stem]["sigma_mae_vs_truth"] = float(np.abs(d - truth).mean())
                save_image(out / f"{stem}_input.png", image)
            print(f"{stem}: sigma {d.min():.2f}..{d.max():.2f} px, {summary[stem]['seconds']} s -> {out}")
        except Exception as e:  # report and go on with the next image
            failures += 1
            summary[stem] = {"source": str(src), "error": f"{type(e).__name__}: {e}"}
            print(f"FAILED {stem}: {type(e).__name__}: {e}")
            if not isinstance(e, (ValueError, TypeError)):
                traceback.print_exc()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{len(inputs) - failures}/{len(inputs)} images done; outputs in {out}")
    return failures
