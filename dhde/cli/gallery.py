"""The README gallery (``experiments/gallery.py``, ``conf/gallery.yaml``): one 2 x 3 figure per
input of the input, its defocus map, the blur mask, the blur magnified, the all-in-focus image
and the pseudo-depth.

The application parameters not set in ``conf/gallery.yaml`` take the application defaults
(:class:`dhde.applications.MagnifyParams` etc.); the gallery's own defaults are below.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dhde.applications import DepthParams, MagnifyParams, SegmentParams
from dhde.cli.apps import check_pair, estimate_or_load
from dhde.model.spec import LazyModel
from dhde.cli.common import default_input
from dhde.io import atomic
from dhde.io.image import load_image
from dhde.labels import SIGMAS

#: Blur magnification of the gallery (the magnify command's default is 2).
FACTOR = 3.0
#: Figure width in pixels, and the size above which a PNG is re-saved with a 256-colour palette.
WIDTH_PX = 960
MAX_BYTES = 300_000
#: Sizes are padded to a multiple of this before estimating.
SIZE_MULTIPLE = 32


def gallery_input(name: str) -> tuple[str, np.ndarray, np.ndarray | None]:
    """A gallery input by name: ``"stereo_motorcycle"`` (the built-in rendering, with its true
    sigma map), a scikit-image data name such as ``"chelsea"``, or an image file.
    Returns (stem, image float32 (H, W, 3) in [0, 1], true sigma (H, W) or None)."""
    if name == "stereo_motorcycle":
        return default_input()
    p = Path(name)
    if p.suffix and p.exists():
        return p.stem, load_image(p), None
    import skimage.data

    fn = getattr(skimage.data, name, None)
    if fn is None or not callable(fn):
        raise ValueError(f"gallery input {name!r} is neither a file nor a skimage.data image")
    return name, load_image(np.asarray(fn())), None


def gallery_panels(image: np.ndarray, defocus: np.ndarray, *, factor: float = FACTOR,
                   alpha: float = SegmentParams.alpha, in_focus_sigma: float = MagnifyParams.in_focus_sigma,
                   near_is_sharp: bool = DepthParams.near_is_sharp, aif: dict | None = None) -> dict[str, np.ndarray]:
    """The six gallery panels of one image (all float32 in [0, 1] or sigma): ``input``,
    ``defocus`` (H, W) sigma, ``mask`` (H, W) bool, ``magnified``, ``all_in_focus`` (H, W, 3)
    and ``depth`` (H, W) in [0, 1]."""
    from dhde.applications import all_in_focus, magnify_blur, pseudo_depth, segment_blur

    check_pair(image, defocus)
    return {
        "input": image,
        "defocus": defocus,
        "mask": np.asarray(segment_blur(defocus, alpha)),
        "magnified": np.asarray(magnify_blur(image, defocus, factor, in_focus_sigma=in_focus_sigma)),
        "all_in_focus": np.asarray(all_in_focus(image, defocus, **(aif or {}))),
        "depth": np.asarray(pseudo_depth(defocus, near_is_sharp=near_is_sharp)),
    }


def write_gallery_figure(path, panels: dict[str, np.ndarray], *, title: str | None = None,
                         width_px: int = WIDTH_PX, factor: float = FACTOR, alpha: float = SegmentParams.alpha,
                         max_bytes: int = MAX_BYTES) -> Path:
    """A 2 x 3 PNG of :func:`gallery_panels`, ``width_px`` wide; re-saved with a 256-colour
    palette when the RGB file would exceed ``max_bytes``. Returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    h, w = panels["defocus"].shape
    dpi = 100
    fig_w = width_px / dpi
    fig = Figure(figsize=(fig_w, fig_w / 3 * h / w * 2 + 0.7), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    lo, hi = float(SIGMAS[0]), float(SIGMAS[-1])
    spec = [
        ("input", panels["input"], {}),
        ("defocus map (sigma, px)", panels["defocus"], {"cmap": "magma", "vmin": lo, "vmax": hi}),
        (f"blur mask (alpha {alpha:g})", panels["mask"], {"cmap": "gray", "vmin": 0, "vmax": 1}),
        (f"blur magnified x{factor:g}", panels["magnified"], {}),
        ("all-in-focus", panels["all_in_focus"], {}),
        ("pseudo-depth (dark = near)", panels["depth"], {"cmap": "viridis", "vmin": 0, "vmax": 1}),
    ]
    for ax, (name, arr, kw) in zip(axes.ravel(), spec):
        im = ax.imshow(np.clip(arr, 0, None) if arr.ndim == 3 else arr, interpolation="antialiased", **kw)
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
        if name.startswith("defocus"):
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    atomic.savefig(path, fig, format="png")
    if path.stat().st_size > max_bytes:
        with Image.open(path) as im:
            small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
        atomic.save_pil(path, small, optimize=True)
    return path


def run_gallery(cfg: dict, out_dir) -> list[Path]:
    """Writes one :func:`write_gallery_figure` PNG per gallery input into ``out_dir``.

    Args:
      cfg: dict with ``inputs`` (names for :func:`gallery_input`), ``model`` (as in
        :func:`dhde.model.spec.as_model`), ``options`` (EstimateOptions fields), ``size_multiple``,
        ``estimate_dir`` (None = always estimate; else maps are reused / cached there),
        ``factor``, ``alpha``, ``width_px``, ``max_bytes`` and ``all_in_focus`` (kwargs).
      out_dir: e.g. ``docs/gallery``.

    Returns:
      the paths written (``<out_dir>/<stem>.png``).
    """
    from dhde.config import check as cc
    from dhde.cli.common import check_model_spec, estimate_options
    from dhde.estimation.inference import estimate_defocus

    out = Path(out_dir)
    opts = estimate_options(cfg.get("options"))
    check_model_spec(cfg.get("model"))
    factor = cc.number(cfg, "factor", FACTOR, lo=1.0)
    alpha = cc.number(cfg, "alpha", SegmentParams.alpha, lo=0.0, hi=1.0)
    width_px = cc.integer(cfg, "width_px", WIDTH_PX, lo=64)
    max_bytes = cc.integer(cfg, "max_bytes", MAX_BYTES, lo=1)
    size_multiple = cc.integer(cfg, "size_multiple", SIZE_MULTIPLE, lo=1)
    names = cfg.get("inputs") or ["stereo_motorcycle"]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
        raise cc.ConfigError(f"inputs must be a list of names or files, got {names!r}")
    stems = [Path(n).stem if Path(n).suffix else n for n in names]
    dup = sorted({x for x in stems if [t.casefold() for t in stems].count(x.casefold()) > 1})
    if dup:
        raise cc.ConfigError(f"inputs: several inputs would write the same gallery figure {dup}; rename one")
    if not isinstance(cfg.get("all_in_focus") or {}, dict):
        raise cc.ConfigError(f"all_in_focus must be a mapping of dhde.all_in_focus arguments, got {cfg['all_in_focus']!r}")
    model = LazyModel(cfg.get("model"))
    written = []
    for name in names:
        t0 = time.perf_counter()
        stem, image, truth = gallery_input(str(name))
        if cfg.get("estimate_dir"):
            defocus, _ = estimate_or_load(stem, image, cfg["estimate_dir"], model, opts, size_multiple=size_multiple)
        else:
            defocus = np.asarray(estimate_defocus(image, model(), options=opts, size_multiple=size_multiple).defocus)
        panels = gallery_panels(image, defocus, factor=factor, alpha=alpha,
                                aif=dict(cfg.get("all_in_focus") or {}))
        title = f"{stem}: estimated sigma {defocus.min():.2f}-{defocus.max():.2f} px"
        if truth is not None:
            title += f", MAE vs the rendered sigma {np.abs(defocus - truth).mean():.3f} px"
        path = write_gallery_figure(out / f"{stem}.png", panels, title=title, factor=factor, alpha=alpha,
                                    width_px=width_px, max_bytes=max_bytes)
        print(f"{path} ({path.stat().st_size // 1024} KB, {time.perf_counter() - t0:.1f} s)")
        written.append(path)
    return written
