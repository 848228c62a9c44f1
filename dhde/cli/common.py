"""The work behind ``experiments/*.py``: resolving inputs and models, looping, writing files."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from dhde.io import atomic
from dhde.config import check as config_check
from dhde.config.check import ConfigError
from dhde.io.image import IMAGE_SUFFIXES
from dhde.model.spec import resolve_model  # noqa: F401 (the CLI's model resolution)

_LOG = logging.getLogger("dhde")


def report(msg: str, level: int = logging.INFO) -> None:
    """A run's progress line: printed (stderr from WARNING up, else stdout) and written to every
    log file of the root logger (under Hydra: ``<output dir>/<job name>.log``)."""
    print(msg, file=sys.stderr if level >= logging.WARNING else sys.stdout, flush=True)
    record = _LOG.makeRecord(_LOG.name, level, __file__, 0, msg, None, None)
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler) and level >= h.level:
            h.handle(record)


@contextlib.contextmanager
def cli_errors():
    """Wraps the body of a Hydra entry point: a user error (bad config value, bad file, full
    disk, non-finite loss, ...) ends the run with ONE line on stderr (also in the run's log)
    and exit status 2 for a config error, 1 otherwise. ``HYDRA_FULL_ERROR=1`` re-raises it, so
    Hydra shows the full traceback.
    """
    try:
        yield
    except Exception as e:
        user_error = isinstance(e, (ValueError, TypeError, FileExistsError, FloatingPointError))
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not (user_error or atomic.is_disk_full(e)):
            raise
        if atomic.is_disk_full(e) and not isinstance(e, atomic.DiskFullError):
            e = atomic.disk_full_error(getattr(e, "filename", None) or "an output file", e)
        msg = " ".join(str(e).split()) or type(e).__name__
        report(f"error: {msg} (HYDRA_FULL_ERROR=1 shows the traceback)", logging.ERROR)
        raise SystemExit(2 if isinstance(e, ConfigError) else 1) from None


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


@functools.lru_cache(maxsize=1)
def default_input() -> tuple[str, np.ndarray, np.ndarray]:
    """The built-in input: scikit-image's stereo_motorcycle left view, defocused with a known
    sigma map (near plane in focus, sigma 0.5..2.0 by disparity). Returns (name, image, sigma)."""
    from dhde.evaluation.synthetic import stereo_motorcycle_scene

    image, sigma = stereo_motorcycle_scene()
    return DEFAULT_INPUT_NAME, np.asarray(image, np.float32), np.asarray(sigma, np.float32)


def _image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, :data:`IMAGE_SUFFIXES`, hidden names skipped)."""
    files = []
    for f in folder.rglob("*"):
        rel = f.relative_to(folder)
        if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and not any(
                part.startswith(".") for part in rel.parts):
            files.append(f)
    return sorted(files)


def plan_inputs(spec, key: str = "input") -> list[tuple[str, object]]:
    """The (name, path-or-array) pairs of an ``input`` config value, checked before any work.

    ``spec`` is None (the built-in input, name ``stereo_motorcycle``), an image file, a folder
    (every image under it, recursively), or a list of those. The *name* of an image, from which
    its output files are named (``<name>_defocus.npy``, ...), keeps the file's extension and,
    for a folder, mirrors its relative path: ``photo.jpg`` -> ``photo.jpg``, ``<folder>/sub/x.png``
    -> ``sub/x.png`` (outputs in ``sub/``). So ``photo.jpg`` and ``photo.png`` never share
    outputs, nor do ``sub/x.png`` and ``sub__x.png``.

    One set of suffixes (:data:`dhde.io.image.IMAGE_SUFFIXES`) applies to files and folders; hidden
    files (``.name``) in folders are skipped.

    Raises:
      dhde.config.check.ConfigError: a missing path, a file without an image suffix, a folder
        without images, an empty list, or two inputs whose names would collide (also when
        they differ only in case, for case-insensitive file systems).
    """
    if spec is None:
        name, image, _ = default_input()
        return [(name, image)]
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not items:
        raise ConfigError(f"{key} is an empty list: name at least one image or folder")
    plan: list[tuple[str, object]] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)) or not str(item).strip():
            raise ConfigError(f"{key} must be an image file, a folder or a list of them, got {item!r}")
        p = Path(str(item)).expanduser()
        if p.is_dir():
            files = _image_files(p)
            if not files:
                raise ConfigError(f"{key}: no images ({' '.join(IMAGE_SUFFIXES)}) under {str(p)!r}")
            plan += [(f.relative_to(p).as_posix(), f) for f in files]
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise ConfigError(f"{key}: {str(p)!r} does not have an image suffix ({' '.join(IMAGE_SUFFIXES)})")
            plan.append((p.name, p))
        else:
            raise ConfigError(f"{key}: no such file or folder: {str(p)!r}")
    seen: dict[str, object] = {}
    for name, src in plan:
        other = seen.setdefault(name.casefold(), src)
        if other is not src:
            raise ConfigError(f"{key}: {str(other)!r} and {str(src)!r} would write the same output files "
                              f"({name}_*); rename one or process them in separate runs")
    return plan


def iter_inputs(spec) -> Iterator[tuple[str, object]]:
    """Iterates :func:`plan_inputs` (all checks happen before the first item)."""
    yield from plan_inputs(spec)


def check_model_spec(spec, key: str = "model") -> None:
    """Checks a model spec without loading it: None, an existing model folder,
    ``caffe:/path/file.caffemodel`` or a path ending in ``.caffemodel`` that exists."""
    from dhde.model.network import DefocusModel

    if spec is None or isinstance(spec, DefocusModel):
        return
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise ConfigError(f"{key} must be null, a model folder or caffe:/path/model.caffemodel, got {spec!r}")
    s = str(spec)
    path = Path(s[len("caffe:"):] if s.startswith("caffe:") else s).expanduser()
    if s.startswith("caffe:") or s.endswith(".caffemodel"):
        if not path.is_file():
            raise ConfigError(f"{key}: Caffe model file not found: {str(path)!r}")
    elif not path.is_dir():
        raise ConfigError(f"{key}: no model folder at {str(path)!r} (expected config.json and params/)")


def estimate_options(values, key: str = "options"):
    """:class:`dhde.estimation.inference.EstimateOptions` from a config mapping, every field type-checked
    (``options.gamma must be a number, got 'abc'``)."""
    from dhde.estimation.inference import EstimateOptions

    return config_check.dataclass_fields(EstimateOptions, values, key, thresholds=config_check.threshold_pairs)


def check_common(cfg: dict) -> dict:
    """The keys shared by estimate.py and the applications, validated: returns
    ``{"inputs", "options", "size_multiple"}``. See :func:`plan_inputs` for ``input``."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"the config must be a mapping, got {type(cfg).__name__}")
    out = {"size_multiple": config_check.integer(cfg, "size_multiple", 1, lo=1),
           "options": estimate_options(cfg.get("options"))}
    config_check.text(cfg, "jax_cache")
    if cfg.get("estimate_dir") is not None:
        d = Path(config_check.text(cfg, "estimate_dir")).expanduser()
        if d.exists() and not d.is_dir():
            raise ConfigError(f"estimate_dir: {str(d)!r} is a file, not a folder")
    check_model_spec(cfg.get("model"))
    out["inputs"] = plan_inputs(cfg.get("input"))
    return out


def check_evaluate_config(cfg: dict) -> None:
    """Checks ``conf/evaluate.yaml``'s keys before any data set is loaded or map estimated
    (the evaluation itself is :func:`dhde.evaluation.run.run_evaluation`)."""
    from dhde.evaluation.run import DATASETS, LOADERS, METHODS

    cc = config_check
    for key, known in (("datasets", DATASETS), ("methods", METHODS)):
        v = cfg.get(key)
        if v is not None and (not isinstance(v, (list, tuple)) or not v or any(x not in known for x in v)):
            raise ConfigError(f"{key} must be a non-empty list of {list(known)}, got {v!r}")
    cc.choice(cfg, "loader", LOADERS, "tfds")
    check_model_spec(cfg.get("model"))
    estimate_options(cfg.get("options"))
    cc.integer(cfg, "size_multiple", 32, lo=1)
    cc.integer(cfg, "limit", optional=True, lo=1)
    cc.integer(cfg, "max_panels", optional=True, lo=0)
    cc.number(cfg, "alpha", 0.3, lo=0.0, hi=1.0)
    cc.integer(cfg, "n_thresholds", 256, lo=2)
    cc.number(cfg, "beta2", 0.3, lo=0.0, lo_open=True)
    cc.flag(cfg, "error_budget", True)
    cc.choice(cfg, "average", ("images", "pixels"), "images")
    for name in ("cuhk", "rtf"):
        root = cc.text(cfg, f"{name}.root")
        if root is not None and not Path(root).expanduser().is_dir():
            raise ConfigError(f"{name}.root: no such folder: {root!r}")
    cc.choice(cfg, "synthetic.focus", ("near", "far"), "near")
    cc.integer(cfg, "synthetic.downscale", 1, lo=1)
    lo = cc.number(cfg, "synthetic.sigma_min", 0.5, lo=0.0, lo_open=True)
    cc.number(cfg, "synthetic.sigma_max", 2.0, lo=lo, lo_open=True)
    cc.number(cfg, "synthetic.noise", 0.0, lo=0.0)
    cc.integer(cfg, "baseline.window", 15, lo=1)


def record_failure(e: Exception, out: Path, stem: str, source: str, summary: dict) -> None:
    """Called in the ``except`` of one image of a folder run: re-raises a full disk (the run
    stops, as :class:`dhde.io.atomic.DiskFullError`), else records and reports the failure so that
    the other images go on (a traceback too for errors other than bad input)."""
    if isinstance(e, atomic.DiskFullError):
        raise e
    if atomic.is_disk_full(e):
        raise atomic.disk_full_error(out / stem, e) from e
    summary[stem] = {"source": source, "error": f"{type(e).__name__}: {e}"}
    report(f"FAILED {stem}: {type(e).__name__}: {e}", logging.ERROR)
    if not isinstance(e, (ValueError, TypeError)):
        traceback.print_exc()


@contextlib.contextmanager
def reported_warnings(stem: str) -> Iterator[list]:
    """Captures the warnings raised in the block and reports each as ``warning: <stem>: ...``
    after it (none when the block raises); yields the list of captured warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    for w in caught:
        report(f"warning: {stem}: {w.message}", logging.WARNING)


def for_each_image(inputs, out: Path, desc: str, one, write_summary) -> int:
    """The per-image loop of a folder run; returns the number of failed images.

    Calls ``one(stem, src, source, summary)`` for every ``(stem, src)`` of ``inputs`` (``source``
    is the path as text, or "built-in"); it fills ``summary[stem]``. A failed image is recorded
    by :func:`record_failure` and the others go on; ``write_summary(summary)`` runs at the end,
    and also (best effort) when the run stops, e.g. on a full disk.
    """
    summary, failures = {}, 0
    try:
        for stem, src in tqdm(inputs, desc=desc, unit="img", disable=len(inputs) < 2):
            source = "built-in" if isinstance(src, np.ndarray) else str(src)
            try:
                one(stem, src, source, summary)
            except Exception as e:  # report and go on with the next image; a full disk stops the run
                record_failure(e, out, stem, source, summary)
                failures += 1
    except BaseException:  # e.g. a full disk: the summary of what was done, if it still fits
        with contextlib.suppress(OSError):
            write_summary(summary)
        raise
    write_summary(summary)
    report(f"{len(inputs) - failures}/{len(inputs)} images done; outputs in {out}")
    return failures


def run_estimate(cfg: dict, out_dir) -> int:
    """Estimates every input; returns the number of failed images (0 = all fine).

    The whole config is checked first (:func:`check_common`, ``alpha``); a failed image is
    reported (stdout and the run's log file) and the others go on. A full disk stops the run.

    Raises:
      dhde.config.check.ConfigError: a bad config value, before any image is read.
      dhde.io.atomic.DiskFullError: no space left; files already written are complete.
    """
    from dhde.applications.segmentation import segment_blur
    from dhde.io.image import load_image, save_image
    from dhde.estimation.inference import estimate_defocus
    from dhde.io.outputs import write_estimate

    alpha = config_check.number(cfg, "alpha", 0.3, lo=0.0, hi=1.0)
    checked = check_common(cfg)
    inputs, opts, size_multiple = checked["inputs"], checked["options"], checked["size_multiple"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from dhde.model.network import DefocusModel

    spec = cfg.get("model")
    model = spec if isinstance(spec, DefocusModel) else resolve_model(spec)
    truth = default_input()[2] if cfg.get("input") is None else None  # the built-in input's sigma map

    def one(stem, src, source, summary):
        t0 = time.perf_counter()
        with reported_warnings(stem) as caught:
            image = load_image(src)
            res = estimate_defocus(image, model, options=opts, size_multiple=size_multiple)
        mask = np.asarray(segment_blur(res.defocus, alpha))
        paths = write_estimate(out, stem, image, res, mask)
        d = np.asarray(res.defocus)
        summary[stem] = {
            "source": source,
            "seconds": round(time.perf_counter() - t0, 3),
            "sigma_min": float(d.min()), "sigma_max": float(d.max()), "sigma_mean": float(d.mean()),
            "edge_pixels": int(np.asarray(res.scales > 0).sum()),
            "residual": float(res.residual),
            "files": {k: str(v) for k, v in paths.items()},
        }
        if caught:
            summary[stem]["warnings"] = [str(w.message) for w in caught]
        if truth is not None:
            summary[stem]["sigma_mae_vs_truth"] = float(np.abs(d - truth).mean())
            save_image(out / f"{stem}_input.png", image)
        report(f"{stem}: sigma {d.min():.2f}..{d.max():.2f} px, {summary[stem]['seconds']} s -> {out}")

    return for_each_image(inputs, out, "estimating", one,
                          lambda summary: atomic.write_json(out / "summary.json", summary))
