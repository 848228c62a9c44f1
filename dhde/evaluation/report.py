"""Evaluation reports: a Markdown table, a precision-recall figure and side-by-side panels.

Figures are bare ``matplotlib.figure.Figure`` objects saved through Agg: no display, no pyplot
state.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from dhde import checks
from dhde.io import atomic
from dhde.evaluation import metrics

#: Scalar columns in table order, with their headers; other scalar keys follow alphabetically.
COLUMNS = {
    "accuracy": "accuracy (alpha 0.3)",
    "best_accuracy": "best accuracy",
    "max_f": "max F (beta^2 0.3)",
    "mae": "MAE (normalised)",
    "sigma_mae": "sigma MAE (px)",
    "n_images": "images",
}
_CURVE_KEYS = ("precision", "recall", "thresholds")


def _figure(**kwargs):
    from matplotlib.figure import Figure

    # A bare Figure (not pyplot): no global state, no GUI backend; PNGs are drawn by Agg.
    return Figure(**kwargs)


def _is_scalar(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _fmt(v) -> str:
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    return "n/a" if not math.isfinite(v) else f"{v:.4f}"


def markdown_table(results: Mapping[str, Mapping]) -> str:
    """A Markdown table, one row per method, one column per scalar metric (missing = blank)."""
    keys = [k for k in COLUMNS if any(k in r for r in results.values())]
    extra = sorted({k for r in results.values() for k, v in r.items()
                    if _is_scalar(v) and k not in COLUMNS})
    keys += extra
    header = "| method | " + " | ".join(COLUMNS.get(k, k) for k in keys) + " |"
    rule = "| --- |" + " ---: |" * len(keys)
    rows = [header, rule]
    for name, r in results.items():
        cells = [_fmt(r[k]) if k in r and _is_scalar(r[k]) else "" for k in keys]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def plot_precision_recall(results: Mapping[str, Mapping], path: str | os.PathLike) -> Path:
    """Writes a PNG of the precision-recall curves of every method that has ``precision`` and
    ``recall`` arrays (recall on x, precision on y, both in [0, 1]). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = _figure(figsize=(5, 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for name, r in results.items():
        if "precision" in r and "recall" in r:
            p, rc = np.asarray(r["precision"], float), np.asarray(r["recall"], float)
            label = name if "max_f" not in r else f"{name} (max F {float(r['max_f']):.3f})"
            ax.plot(rc, p, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Blur detection precision-recall")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    return atomic.savefig(path, fig)


def write_report(results: Mapping[str, Mapping], out_dir: str | os.PathLike,
                 title: str = "dhde evaluation", notes: str | None = None) -> Path:
    """Writes ``out_dir/report.md`` (table of scalar metrics) and, when any method has a curve,
    ``out_dir/precision_recall.png`` linked from it.

    Args:
      results: ``{method name: {metric: value}}``; scalar values become table columns (see
        :data:`COLUMNS` for the usual keys: ``accuracy``, ``best_accuracy``, ``max_f``, ``mae``,
        ``sigma_mae``, ``n_images``), ``precision`` / ``recall`` arrays become the PR figure.
        The dict from :func:`dhde.evaluation.pr_curves.evaluate_blur_detection` fits as a value.
      out_dir: created if needed.
      title: Markdown heading. notes: optional Markdown paragraph under the table.

    Returns:
      path of ``report.md``.
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty {method: {metric: value}} mapping")
    for name, r in results.items():
        if not isinstance(r, Mapping):
            raise TypeError(f"results[{name!r}] must be a mapping of metrics, got {type(r).__name__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", markdown_table(results)]
    if notes:
        lines += [notes.strip(), ""]
    if any("precision" in r and "recall" in r for r in results.values()):
        plot_precision_recall(results, out / "precision_recall.png")
        lines += ["![precision-recall](precision_recall.png)", ""]
    md = out / "report.md"
    atomic.write_text(md, "\n".join(lines))
    return md


def side_by_side_panel(image, defocus, mask, gt, path: str | os.PathLike, *,
                       alpha: float = metrics.DEFAULT_ALPHA, cmap: str = "jet",
                       vmin: float | None = None, vmax: float | None = None,
                       title: str | None = None) -> Path:
    """A 4-panel PNG: image | defocus map (colour map, colour bar) | binary mask | ground truth.

    Args:
      image: (H, W, 3) float RGB in [0, 1] (or uint8).
      defocus: (H, W) map (sigma in pixels or a score).
      mask: (H, W) predicted mask (True = blurred), or None for the Eq. 13 segmentation of
        ``defocus`` at ``alpha``.
      gt: (H, W) binary ground truth (shown grey), or an (H, W) float sigma map (shown with the
        defocus colour map and range), or None (panel left out).
      path: PNG path (parent folders are created).
      vmin, vmax: colour range of the maps (default: the defocus map's range).

    Returns:
      the path written.
    """
    img = np.asarray(checks.as_array(image, "image", "side_by_side_panel"))
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3), got {img.shape}")
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    alpha = metrics.check_alpha(alpha)
    d = metrics.as_map(defocus, "defocus")
    if d.shape != img.shape[:2]:
        raise ValueError(f"defocus {d.shape} does not match image {img.shape[:2]}")
    m = metrics.segment(d, alpha) if mask is None else metrics.as_binary_mask(mask, "mask")
    if m.shape != d.shape:
        raise ValueError(f"mask {m.shape} does not match defocus {d.shape}")
    lo = float(d.min()) if vmin is None else float(vmin)
    hi = float(d.max()) if vmax is None else float(vmax)
    panels = [("image", np.clip(img, 0, 1), {}),
              ("defocus map", d, {"cmap": cmap, "vmin": lo, "vmax": hi}),
              ("mask" if mask is not None else f"mask (alpha {alpha})", m,
               {"cmap": "gray", "vmin": 0, "vmax": 1})]
    if gt is not None:
        g = np.asarray(gt)
        if g.shape[:2] != d.shape:
            raise ValueError(f"gt {g.shape} does not match defocus {d.shape}")
        if g.dtype == np.bool_ or np.issubdtype(g.dtype, np.integer):
            panels.append(("ground truth", metrics.as_binary_mask(g),
                           {"cmap": "gray", "vmin": 0, "vmax": 1}))
        else:
            panels.append(("ground truth", metrics.as_map(g, "gt"), {"cmap": cmap, "vmin": lo, "vmax": hi}))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = d.shape
    fig = _figure(figsize=(3.2 * len(panels), 3.2 * h / w + 0.6), dpi=100)
    for i, (name, arr, kw) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        im = ax.imshow(arr, interpolation="nearest", **kw)
        ax.set_title(name, fontsize="small")
        ax.set_axis_off()
        if name in ("defocus map",) or (name == "ground truth" and "cmap" in kw and kw["cmap"] == cmap):
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if title:
        fig.suptitle(title, fontsize="small")
    fig.tight_layout()
    return atomic.savefig(path, fig)
