"""Writing an estimate to disk: the map in sigma units, previews, mask, sparse map.

Files for an image ``stem`` in ``out_dir`` (the entry points use the image's name with its
extension, e.g. ``photo.jpg``, or ``sub/x.png`` for a file in a sub-folder; see
:func:`dhde.cli.common.plan_inputs`); every file is written atomically (:mod:`dhde.io.atomic`):

    stem_defocus.npy        float32 (H, W), sigma in pixels: the exact result
    stem_defocus16.png      16-bit grey, value = round(sigma * 10000) (1e-4 px units, <= 6.55 px)
    stem_defocus_color.png  colour preview (magma, fixed range 0.5-2.0 px) with a colour bar
    stem_mask.png           blur mask of Eq. 13 (white = blurred)
    stem_sparse.png         sparse map after the probability-joint bilateral filter (black = none)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dhde.io import atomic
from dhde.io.image import grey16_image, save_image
from dhde.labels import SIGMAS

#: 16-bit PNG scale: stored value = sigma * SIGMA_PNG_SCALE.
SIGMA_PNG_SCALE = 10000.0


def colorize(values: np.ndarray, vmin: float = float(SIGMAS[0]), vmax: float = float(SIGMAS[-1]),
             cmap: str = "magma", mask: np.ndarray | None = None) -> np.ndarray:
    """(H, W) values -> (H, W, 3) float RGB via a matplotlib colour map; ``mask`` False -> black."""
    from matplotlib import colormaps

    v = np.clip((np.asarray(values, np.float64) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    rgb = colormaps[cmap](v)[..., :3]
    if mask is not None:
        rgb = np.where(np.asarray(mask)[..., None], rgb, 0.0)
    return rgb.astype(np.float32)


def save_sigma_png16(path, sigma: np.ndarray) -> Path:
    """16-bit PNG of a sigma map: value = round(sigma * 10000), clipped to 0..65535."""
    return atomic.save_pil(path, grey16_image(np.round(np.asarray(sigma, np.float64) * SIGMA_PNG_SCALE)))


def load_sigma_png16(path) -> np.ndarray:
    """Inverse of :func:`save_sigma_png16`: float32 sigma map in pixels."""
    from PIL import Image

    with Image.open(path) as im:
        return (np.asarray(im, np.float64) / SIGMA_PNG_SCALE).astype(np.float32)


def preview_png(path, image: np.ndarray, defocus: np.ndarray, mask: np.ndarray) -> Path:
    """A 3-panel figure: input | defocus map with colour bar (sigma, px) | blur mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = defocus.shape
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2 * h / w + 0.6))
    axes[0].imshow(np.clip(image, 0, 1))
    axes[0].set_title("input")
    im = axes[1].imshow(defocus, cmap="magma", vmin=float(SIGMAS[0]), vmax=float(SIGMAS[-1]))
    axes[1].set_title("defocus sigma (px)")
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    axes[2].imshow(mask, cmap="gray", vmin=0, vmax=1)
    axes[2].set_title("blur mask (white = blurred)")
    for a in axes:
        a.axis("off")
    fig.tight_layout()
    try:
        return atomic.savefig(path, fig, dpi=90)
    finally:
        plt.close(fig)


def write_estimate(out_dir, stem: str, image: np.ndarray, result, mask: np.ndarray) -> dict[str, Path]:
    """Writes every output file of one estimate; returns {kind: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    d = np.asarray(result.defocus, np.float32)
    paths = {"npy": out / f"{stem}_defocus.npy"}
    atomic.save_npy(paths["npy"], d)
    paths["png16"] = save_sigma_png16(out / f"{stem}_defocus16.png", d)
    paths["color"] = save_image(out / f"{stem}_defocus_color.png", colorize(d))
    paths["mask"] = save_image(out / f"{stem}_mask.png", np.asarray(mask, np.float32))
    sparse = np.asarray(result.filtered)
    paths["sparse"] = save_image(out / f"{stem}_sparse.png", colorize(sparse, mask=np.asarray(result.mask)))
    paths["preview"] = preview_png(out / f"{stem}_preview.png", image, d, np.asarray(mask))
    return paths
