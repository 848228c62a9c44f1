"""The work behind the application entry points (paper 5.3-5.4); the README gallery is in
:mod:`dhde.cli.gallery`.

``experiments/{magnify,all_in_focus,depth,segment}.py`` call :func:`run_app`; every image's
defocus map is computed once and reused (:func:`estimate_or_load`): a ``<stem>_defocus.npy``
found in ``estimate_dir`` (e.g. the output folder of ``experiments/estimate.py``, or a folder
shared by several application runs) or in the run's own output folder is loaded instead of
estimated, and a newly estimated map is written to ``estimate_dir`` (else the output folder) so
that the next application finds it.

``stem`` is the image's name from :func:`dhde.cli.common.plan_inputs`: its file name with the
extension (``photo.jpg``), or for a folder its relative path (``sub/x.png``), so that
``photo.jpg`` and ``photo.png`` never share a map. Every file is written atomically.

Files per image ``stem`` (besides ``<stem>_defocus_color.png``, a preview of the map):

    magnify       <stem>_magnified.png       8-bit RGB, blur x factor (Gaussian variances add)
    all_in_focus  <stem>_all_in_focus.png    8-bit RGB, non-blind deconvolution
    depth         <stem>_depth16.png         16-bit grey pseudo-depth, 0 = near, 65535 = far
                  <stem>_depth.ply           coloured point cloud (MeshLab)
                  <stem>_depth_color.png     preview
    segment       <stem>_mask.png            Eq. 13 blur mask (white = blurred)
                  <stem>_overlay.png         mask tinted over the image
                  <stem>_tau_sweep.png       masks for a sweep of tau (default: the 11 label sigmas)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from dhde import checks
from dhde.applications import AllInFocusParams, DepthParams, MagnifyParams, SegmentParams
from dhde.cli.common import check_common, for_each_image, report, reported_warnings
from dhde.model.spec import LazyModel
from dhde.io import atomic
from dhde.io.image import load_image, save_image
from dhde.io.outputs import colorize
from dhde.labels import SIGMAS

#: Each application's parameters: a frozen dataclass whose fields are the keys of its Hydra
#: config (``conf/<app>.yaml``) and whose defaults are the only ones (the library functions use
#: them too).
APP_CONFIGS: dict[str, type] = {
    "magnify": MagnifyParams,
    "all_in_focus": AllInFocusParams,
    "depth": DepthParams,
    "segment": SegmentParams,
}
APPS = tuple(APP_CONFIGS)


# --------------------------------------------------------------------------- parameters


def _num(params: dict, key: str, *, lo: float | None = None, hi: float | None = None,
         lo_open: bool = False, integer: bool = False) -> float:
    v = checks.scalar(params[key], key, lo=lo, hi=hi, lo_open=lo_open)  # a TypeError for a non-number
    if integer:
        if v != int(v):
            raise ValueError(f"{key} must be an integer, got {params[key]!r}")
        return int(v)
    return v


def _flag(params: dict, key: str) -> bool:
    if not isinstance(params[key], (bool, np.bool_)):
        raise TypeError(f"{key} must be true or false, got {params[key]!r}")
    return bool(params[key])


def app_params(app: str, cfg: Mapping | None = None):
    """The validated parameters of ``app``: an instance of its :data:`APP_CONFIGS` dataclass,
    each field taken from the key of the same name in ``cfg`` (a flat mapping such as a Hydra
    config) or, when absent, the dataclass default.

    Raises:
      ValueError / TypeError: unknown app, or a parameter out of range (e.g. ``factor <= 0``),
      before any image is processed.
    """
    if app not in APP_CONFIGS:
        raise ValueError(f"unknown application {app!r}; choose one of {APPS}")
    cfg = cfg or {}
    p = {f.name: cfg.get(f.name, f.default) for f in dataclasses.fields(APP_CONFIGS[app])}
    if app == "magnify":
        p["factor"] = _num(p, "factor", lo=0.0, lo_open=True)
        if p["factor"] < 1.0:
            raise ValueError(
                f"factor must be >= 1 (got {p['factor']}): magnification only adds blur; "
                "use experiments/all_in_focus.py to remove it"
            )
        p["num_levels"] = _num(p, "num_levels", lo=2, integer=True)
        p["in_focus_sigma"] = _num(p, "in_focus_sigma", lo=0.0)
    elif app == "all_in_focus":
        p["lam"] = _num(p, "lam", lo=0.0, lo_open=True)
        p["prior_alpha"] = _num(p, "prior_alpha", lo=0.0, hi=1.0, lo_open=True)
        p["num_levels"] = _num(p, "num_levels", lo=1, integer=True)
        p["reblur"] = _flag(p, "reblur")
    elif app == "depth":
        p["near_is_sharp"] = _flag(p, "near_is_sharp")
        p["smooth_sigma"] = _num(p, "smooth_sigma", lo=0.0)
        p["ply_step"] = _num(p, "ply_step", lo=1, integer=True)
        if p["z_scale"] is not None:
            p["z_scale"] = _num(p, "z_scale", lo=0.0, lo_open=True)
        p["ply_binary"] = _flag(p, "ply_binary")
    else:
        p["alpha"] = _num(p, "alpha", lo=0.0, hi=1.0)
        p["overlay_opacity"] = _num(p, "overlay_opacity", lo=0.0, hi=1.0)
        c = np.asarray(p["color"], dtype=np.float64) if not isinstance(p["color"], str) else None
        if c is None or c.shape != (3,) or not np.all(np.isfinite(c)) or c.min() < 0 or c.max() > 1:
            raise ValueError(f"color must be an RGB triple in [0, 1], got {p['color']!r}")
        p["color"] = tuple(float(v) for v in c)
        if p["taus"] is not None:
            t = np.asarray(p["taus"], dtype=np.float64)
            if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
                raise ValueError(f"taus must be a non-empty list of finite sigmas (px), got {p['taus']!r}")
            p["taus"] = tuple(float(v) for v in t)
    return APP_CONFIGS[app](**p)


# --------------------------------------------------------------------------- the shared estimate


def load_cached_map(path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Reads a ``<stem>_defocus.npy`` and checks it: (H, W) real, finite, >= 0, and of the image's
    size ``shape`` when given. Returns float32 (H, W), sigma in pixels.

    Raises:
      ValueError: unreadable file, wrong rank or size, NaN / inf or negative values.
    """
    path = Path(path)
    try:
        d = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"cannot read the cached defocus map {str(path)!r}: {e}") from e
    if d.dtype == np.bool_ or not (np.issubdtype(d.dtype, np.floating) or np.issubdtype(d.dtype, np.integer)):
        raise ValueError(f"cached defocus map {str(path)!r} has dtype {d.dtype}, expected float")
    if d.ndim != 2:
        raise ValueError(f"cached defocus map {str(path)!r} has shape {d.shape}, expected (H, W)")
    if shape is not None and tuple(d.shape) != tuple(shape):
        raise ValueError(
            f"cached defocus map {str(path)!r} is {d.shape[0]}x{d.shape[1]} but the image is "
            f"{shape[0]}x{shape[1]}: it belongs to another image; delete it or use another estimate_dir"
        )
    d = d.astype(np.float32)
    if not np.all(np.isfinite(d)):
        raise ValueError(f"cached defocus map {str(path)!r} contains NaN or infinite values")
    if d.min() < 0:
        raise ValueError(f"cached defocus map {str(path)!r} has negative sigma (min {d.min():.4g})")
    return d


def estimate_or_load(stem: str, image: np.ndarray, out_dir, model, opts=None, *, estimate_dir=None,
                     size_multiple: int = 1) -> tuple[np.ndarray, str]:
    """The defocus map of one image: reused from an earlier run if present, else estimated.

    Looks for ``<stem>_defocus.npy`` in ``estimate_dir`` then ``out_dir``; a map found there is
    validated (:func:`load_cached_map`) and returned. Otherwise :func:`dhde.estimate_defocus`
    runs and the map is saved as ``<stem>_defocus.npy`` into ``estimate_dir`` (created if
    needed), or ``out_dir`` when no ``estimate_dir`` is given.

    Args:
      stem: file-name stem of the image.
      image: float32 (H, W, 3) in [0, 1] (see :func:`dhde.load_image`).
      out_dir: the run's output folder.
      model: a DefocusModel, or a zero-argument callable returning one (called only when the
        map must be estimated, e.g. a :class:`LazyModel`).
      opts: :class:`dhde.estimation.inference.EstimateOptions` (None = defaults).
      estimate_dir: folder of earlier ``<stem>_defocus.npy`` files (shared between runs).
      size_multiple: see :func:`dhde.estimate_defocus`.

    Returns:
      (defocus float32 (H, W) sigma in pixels, source) with source the path of the reused file,
      or ``"estimated"``.
    """
    from dhde.estimation.inference import estimate_defocus

    shape = tuple(np.shape(image)[:2])
    dirs = [Path(d) for d in (estimate_dir, out_dir) if d is not None]
    for d in dirs:
        cached = d / f"{stem}_defocus.npy"
        if cached.is_file():
            return load_cached_map(cached, shape), str(cached)
    from dhde.model.network import DefocusModel

    m = model if isinstance(model, DefocusModel) or model is None else model()
    res = estimate_defocus(image, m, options=opts, size_multiple=int(size_multiple))
    defocus = np.asarray(res.defocus, np.float32)
    atomic.save_npy(dirs[0] / f"{stem}_defocus.npy", defocus)
    return defocus, "estimated"


# --------------------------------------------------------------------------- applications


def magnify_outputs(out: Path, stem: str, image, defocus, p: MagnifyParams) -> dict[str, Path]:
    """Writes ``<stem>_magnified.png`` (blur x ``p.factor``)."""
    from dhde.applications import magnify_blur

    img = magnify_blur(image, defocus, p.factor, num_levels=p.num_levels, in_focus_sigma=p.in_focus_sigma)
    return {"magnified": save_image(out / f"{stem}_magnified.png", np.asarray(img))}


def all_in_focus_outputs(out: Path, stem: str, image, defocus, p: AllInFocusParams) -> dict[str, Path]:
    """Writes ``<stem>_all_in_focus.png`` (spatially varying deconvolution)."""
    from dhde.applications import all_in_focus

    img = all_in_focus(image, defocus, lam=p.lam, alpha=p.prior_alpha, num_levels=p.num_levels, reblur=p.reblur)
    return {"all_in_focus": save_image(out / f"{stem}_all_in_focus.png", np.asarray(img))}


def depth_outputs(out: Path, stem: str, image, defocus, p: DepthParams) -> dict[str, Path]:
    """Writes ``<stem>_depth16.png`` (16-bit), ``<stem>_depth.ply`` and a colour preview."""
    from dhde.applications import pseudo_depth, save_depth_png, save_point_cloud_ply

    depth = np.asarray(pseudo_depth(defocus, near_is_sharp=p.near_is_sharp, smooth_sigma=p.smooth_sigma))
    return {
        "depth16": save_depth_png(out / f"{stem}_depth16.png", depth),
        "ply": save_point_cloud_ply(out / f"{stem}_depth.ply", image, depth, step=p.ply_step,
                                    z_scale=p.z_scale, binary=p.ply_binary),
        "depth_color": save_image(out / f"{stem}_depth_color.png",
                                  colorize(depth, 0.0, 1.0, cmap="viridis")),
    }


def segment_outputs(out: Path, stem: str, image, defocus, p: SegmentParams) -> dict[str, Path]:
    """Writes the Eq. 13 mask, its overlay on the image and the tau-sweep figure."""
    from dhde.applications import overlay_mask, segment_blur, tau_sweep_figure

    mask = np.asarray(segment_blur(defocus, p.alpha))
    over = overlay_mask(image, mask, color=p.color, alpha=p.overlay_opacity)
    taus = p.taus if p.taus is not None else [float(s) for s in SIGMAS]
    return {
        "mask": save_image(out / f"{stem}_mask.png", mask.astype(np.float32)),
        "overlay": save_image(out / f"{stem}_overlay.png", np.asarray(over)),
        "tau_sweep": tau_sweep_figure(image, defocus, taus, out / f"{stem}_tau_sweep.png",
                                      color=p.color, alpha=p.overlay_opacity),
    }


APP_WRITERS: dict[str, Callable] = {
    "magnify": magnify_outputs,
    "all_in_focus": all_in_focus_outputs,
    "depth": depth_outputs,
    "segment": segment_outputs,
}


def check_pair(image: np.ndarray, defocus: np.ndarray) -> None:
    """Raises ValueError unless the (H, W) map has the (H, W, 3) image's size and is finite."""
    if defocus.shape != image.shape[:2]:
        raise ValueError(f"defocus map {defocus.shape} and image {image.shape[:2]} differ in size")
    if not np.all(np.isfinite(defocus)):
        raise ValueError("defocus map contains NaN or infinite values")


def run_app(app: str, cfg: dict, out_dir) -> int:
    """Runs one application on every input; returns the number of failed images.

    Args:
      app: one of :data:`APPS`.
      cfg: dict with ``input`` (None = built-in default input, a file, a folder, or a list),
        ``model`` (None, a model dir, ``caffe:/path``, or a DefocusModel), ``estimate_dir``,
        ``size_multiple``, ``options`` (:class:`EstimateOptions` fields) and the app's
        parameters (the fields of its :data:`APP_CONFIGS` dataclass) at the top level.
      out_dir: output folder (created); ``summary.json`` lists every image, its files or error.
        Outputs are named after each input's name (:func:`dhde.cli.common.plan_inputs`: the file name
        with its extension, and a folder's relative path), so each image finds its own map.

    Raises:
      ValueError / TypeError: bad app parameters, options, input or model (before any image is
        read; :class:`dhde.config.check.ConfigError` names the key).
      dhde.io.atomic.DiskFullError: no space left; the run stops, files already written are whole.
    """
    params = app_params(app, cfg)
    checked = check_common(cfg)
    inputs, opts, size_multiple = checked["inputs"], checked["options"], checked["size_multiple"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = LazyModel(cfg.get("model"))
    def one(stem, src, source, summary):
        t0 = time.perf_counter()
        with reported_warnings(stem):
            image = load_image(src)
            defocus, origin = estimate_or_load(stem, image, out, model, opts,
                                               estimate_dir=cfg.get("estimate_dir"),
                                               size_multiple=size_multiple)
        check_pair(image, defocus)
        paths = {"defocus_color": save_image(out / f"{stem}_defocus_color.png", colorize(defocus))}
        paths.update(APP_WRITERS[app](out, stem, image, defocus, params))
        summary[stem] = {
            "source": source, "defocus": origin, "seconds": round(time.perf_counter() - t0, 3),
            "files": {k: str(v) for k, v in paths.items()},
        }
        report(f"{stem}: {app} done ({'reused ' + origin if origin != 'estimated' else 'estimated'})")

    def write_summary(summary):
        atomic.write_json(out / "summary.json", {"app": app, "params": dataclasses.asdict(params), "images": summary},
                          default=str)

    return for_each_image(inputs, out, app, one, write_summary)
