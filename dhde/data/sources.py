"""Sharp source images for training data: scikit-image's bundled photographs, a folder, or TFDS.

Every source yields ``(name, rgb)`` pairs with ``rgb`` float32 (H, W, 3) in [0, 1] and assigns
each whole image to one split, so that no two splits share a source image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import numpy as np

from dhde.image import IMAGE_SUFFIXES, load_image

#: Photographs shipped inside the scikit-image wheel, by split. Only sharp ones: measured with
#: the authors' released model on the sources themselves, these put their strong edges at
#: sigma > 0.6 even after downscaling and are left out: chelsea (soft fur), cell (out-of-focus
#: microscopy), colorwheel (smooth synthetic gradients, no sharp edge at all) and moon; so is
#: stereo_motorcycle, dhde's synthetic evaluation scene. One blurry source teaches the
#: classifier that blurry edges are label 0 and shifts every prediction on sharp test photos.
SKIMAGE_SPLITS = {
    "train": (
        "astronaut", "rocket", "hubble_deep_field", "retina", "immunohistochemistry", "brick",
        "grass", "gravel", "page", "text",
    ),
    "validation": ("coins",),
    "test": ("coffee", "camera"),
}
SPLITS = ("train", "validation", "test")


def area_downscale(rgb: np.ndarray, factor: int, phase: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Box-average ``factor x factor`` pixel blocks, starting at pixel ``phase`` = (row, col).

    Photographs at their native resolution carry some blur of their own (lens, demosaicking,
    JPEG); averaging blocks divides it by ``factor``, as the downsampling of the web photos the
    paper trains on (ILSVRC) does. The ``factor**2`` phases are distinct samplings of one scene.

    Args:
      rgb: (H, W, C) float image.
      factor: integer >= 1 (1 returns the image unchanged).
      phase: offsets in [0, factor) of the first block.
    Returns:
      float32 (H', W', C) with H' = (H - phase[0]) // factor, W' likewise.
    """
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"downscale factor must be an integer >= 1, got {factor!r}")
    dy, dx = phase
    if not (0 <= dy < factor and 0 <= dx < factor):
        raise ValueError(f"phase {phase} must lie in [0, {factor})")
    x = np.asarray(rgb, np.float32)[dy:, dx:]
    h, w = x.shape[0] // factor, x.shape[1] // factor
    if factor == 1:
        return x
    x = x[: h * factor, : w * factor]
    return x.reshape(h, factor, w, factor, -1).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def split_of(name: str, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> str:
    """Deterministic split of an image by a hash of its name (for folder and TFDS sources)."""
    h = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    u = int.from_bytes(h[:8], "little") / 2.0**64
    edges = np.cumsum(fractions) / np.sum(fractions)
    return SPLITS[int(np.searchsorted(edges, u, side="right").clip(0, 2))]


def skimage_images(split: str) -> Iterator[tuple[str, np.ndarray]]:
    import skimage.data

    for name in SKIMAGE_SPLITS[split]:
        yield f"skimage/{name}", load_image(getattr(skimage.data, name)())


def folder_images(root: str, split: str, seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    rootp = Path(root).expanduser()
    if not rootp.is_dir():
        raise ValueError(f"training image folder not found: {root!r}")
    files = sorted(p for p in rootp.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root!r}")
    for p in files:
        rel = str(p.relative_to(rootp))
        if split_of(rel, seed=seed) != split:
            continue
        try:
            yield rel, load_image(p)
        except ValueError as e:  # unreadable or too small: reported, skipped
            print(f"skipping {p}: {e}")


def tfds_images(
    name: str, split: str, data_dir: str | None, max_images: int | None, seed: int = 0
) -> Iterator[tuple[str, np.ndarray]]:
    """Images of any TFDS image data set, read with ``tfds.data_source`` (no TensorFlow)."""
    import tensorflow_datasets as tfds

    src = tfds.data_source(name, split="train", data_dir=data_dir)
    n = len(src) if max_images is None else min(len(src), max_images)
    for i in range(n):
        key = f"{name}/{i}"
        if split_of(key, seed=seed) != split:
            continue
        ex = src[i]
        img = ex.get("image")
        if img is None:
            raise ValueError(f"TFDS data set {name!r} has no 'image' feature")
        try:
            yield key, load_image(np.asarray(img))
        except ValueError as e:
            print(f"skipping {key}: {e}")


def iter_source(source: str, split: str, *, data_dir=None, max_images=None, seed=0):
    """Dispatches on the source spec: "skimage", "folder:/path" or "tfds:name"."""
    if source == "skimage":
        it = skimage_images(split)
    elif source.startswith("folder:"):
        it = folder_images(source[len("folder:"):], split, seed)
    elif source.startswith("tfds:"):
        it = tfds_images(source[len("tfds:"):], split, data_dir, max_images, seed)
    else:
        raise ValueError(
            f"unknown training source {source!r}: use 'skimage', 'folder:/path' or 'tfds:name'"
        )
    for k, item in enumerate(it):
        if max_images is not None and k >= max_images:
            return
        yield item
