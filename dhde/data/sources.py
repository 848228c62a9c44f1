"""Sharp source images for training data: scikit-image's photographs, Debian packages, a folder, TFDS.

Every source yields ``(name, rgb)`` pairs with ``rgb`` float32 (H, W, 3) in [0, 1] and assigns
each whole image to one split, so that no two splits share a source image. Several sources can
be joined with commas: ``"skimage,debian:opencv-doc+mate-backgrounds"``.

Screened sources (``debian:`` and ``folder:``) first measure every
candidate file (:func:`screen_candidates`): unreadable, tiny, greyscale and 16-bit files are
skipped with a message; from Debian packages, renderings and mostly out-of-focus images are
also rejected (:mod:`dhde.data.screening`) and the kept photographs are split by image (at least
:data:`MIN_TEST_IMAGES` of them held out for testing); a folder keeps its 80/10/10 hash split.
Every decision goes into a manifest (file, sha256, size, kept or rejected, reason, split)
written beside the built data set.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import numpy as np

from dhde import checks
from dhde.io.image import IMAGE_SUFFIXES, load_image

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
    factor = checks.integer(factor, "downscale factor", lo=1, where="area_downscale")
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


#: Smallest number of held-out test photographs of a screened source.
MIN_TEST_IMAGES = 15

_SCREEN_CACHE: dict = {}


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_SIXTEEN_BIT = "16-bit image (its tone curve is unknown; convert to 8-bit sRGB to use it)"


def _file_problem(path: Path) -> str | None:
    """A reason to skip a file before screening (greyscale, 16-bit), or None."""
    from PIL import Image

    with Image.open(path) as im:
        mode = im.mode
        bits = im.info.get("bitdepth")
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I") or bits == 16:
            return _SIXTEEN_BIT
        if mode in ("1", "L", "LA", "I", "F"):
            return "greyscale image (the CNN needs colour)"
    if path.suffix.lower() == ".png":
        import png

        try:
            if png.Reader(filename=str(path)).read()[3].get("bitdepth") == 16:
                return _SIXTEEN_BIT
        except (png.Error, OSError, ValueError, EOFError):
            pass
    return None


def screen_candidates(files: list[tuple[str, Path]], downscale: int, seed: int = 0,
                      rules: dict | None = None, photos_only: bool = True,
                      scene_of=None) -> list[dict]:
    """Measures, screens and splits candidate source files; one manifest entry per file.

    Args:
      files: (name, path) pairs; the name is the unit of the split.
      downscale: the box-downscale the patches will be cut at (the screening measures there).
      seed: seed of the split assignment.
      rules: screening thresholds (default ``dhde.data.screening.RULES``).
      photos_only: apply the photograph rules and the count split (Debian sources); False: only
        the file checks, and the 80/10/10 hash split of :func:`split_of` (a user's folder).
      scene_of: name -> split unit (files of one scene always share a split); default: the name.

    Returns:
      A list of dicts: name, file, sha256, bytes, kept, reason, split (None when rejected) and
      the measurements. With ``photos_only`` kept scenes are ordered by a hash of (seed, scene)
      and assigned in that order: test until it holds at least ``MIN_TEST_IMAGES`` photographs
      (and a quarter of them), then validation until a tenth (at least 2), the rest train.
    """
    import jax.numpy as jnp

    from dhde.data.screening import RULES, image_stats, screen
    from dhde.filters.edges import TRAINING_THRESHOLDS, scale_map
    from dhde.io.image import value_channel

    rules = RULES if rules is None else rules
    entries = []
    for name, path in files:
        path = Path(path)
        e = {"name": name, "file": str(path), "sha256": None, "bytes": None, "kept": False,
             "reason": "", "split": None}
        try:
            e["sha256"], e["bytes"] = _file_sha256(path), path.stat().st_size
        except OSError as err:
            e["reason"] = f"unreadable: {err}"
        ck = (e["sha256"], downscale, tuple(sorted(rules.items())), photos_only)
        if e["sha256"] is not None and ck in _SCREEN_CACHE:
            e.update(_SCREEN_CACHE[ck])
        elif e["sha256"] is not None:
            try:
                problem = _file_problem(path)
                if problem:
                    e["reason"] = problem
                else:
                    rgb = area_downscale(load_image(path), downscale)
                    if min(rgb.shape[:2]) < 32:
                        raise ValueError(f"too small: {rgb.shape[0]}x{rgb.shape[1]} after {downscale}x downscale")
                    sc = np.asarray(scale_map(value_channel(jnp.asarray(rgb)), TRAINING_THRESHOLDS))
                    stats = image_stats(rgb, sc)
                    e["kept"], e["reason"] = screen(stats, rules, name) if photos_only else (True, "readable")
                    e["stats"] = stats
            except ValueError as err:  # load_image's clear messages: unreadable, too small, NaN
                e["reason"] = str(err).splitlines()[0][:300]
            except Exception as err:  # noqa: BLE001 - any unreadable file is reported and skipped
                e["reason"] = f"unreadable: {str(err).splitlines()[0][:200]}"
            _SCREEN_CACHE[ck] = {k: e[k] for k in ("kept", "reason", "stats") if k in e}
        if not e["kept"]:
            print(f"source {name}: skipped ({e['reason']})")
        entries.append(e)
    if not photos_only:
        for e in entries:
            e["split"] = split_of(e["name"], seed=seed) if e["kept"] else None
        return entries
    scene_of = scene_of or (lambda n: n)
    scenes: dict[str, list[dict]] = {}
    for e in entries:
        if e["kept"]:
            e["scene"] = scene_of(e["name"])
            scenes.setdefault(e["scene"], []).append(e)
    order = sorted(scenes, key=lambda s_: hashlib.sha256(f"{seed}:{s_}".encode()).digest())
    n = sum(len(v) for v in scenes.values())
    want_test = min(n, max(MIN_TEST_IMAGES, -(-n // 4)))
    want_val = min(n - want_test, max(2, n // 10))
    n_test = n_val = 0
    for s_ in order:
        group = scenes[s_]
        if n_test < want_test:
            split, n_test = "test", n_test + len(group)
        elif n_val < want_val:
            split, n_val = "validation", n_val + len(group)
        else:
            split = "train"
        for e in group:
            e["split"] = split
    return entries


def screened_images(entries: list[dict], split: str) -> Iterator[tuple[str, np.ndarray]]:
    """The kept photographs of ``split`` from :func:`screen_candidates` entries, sorted by name."""
    for e in sorted((e for e in entries if e["split"] == split), key=lambda e: e["name"]):
        yield e["name"], load_image(e["file"])


def source_entries(source: str, downscale: int, seed: int = 0) -> list[dict] | None:
    """Manifest entries of the screened parts of a (comma-joined) source, or None if none is."""
    out = []
    screened = False
    for part in _parts(source):
        if part.startswith("debian:"):
            from dhde.data.debian import candidates, scene_of

            files = [(c.name, c.path) for c in candidates(part[len("debian:"):])]
            out.extend(screen_candidates(files, downscale, seed, photos_only=True, scene_of=scene_of))
        elif part.startswith("folder:"):
            out.extend(screen_candidates(_folder_files(part[len("folder:"):]), downscale, seed,
                                         photos_only=False))
        elif part.startswith("folders:"):
            root = Path(part[len("folders:"):]).expanduser()
            for split in SPLITS:
                if not (root / split).is_dir():
                    raise ValueError(f"split folder {str(root / split)!r} not found: a 'folders:' "
                                     "source needs train/, validation/ and test/ sub-folders")
                got = screen_candidates(_folder_files(str(root / split)), downscale, seed, photos_only=False)
                for e in got:
                    e["name"] = f"{split}/{e['name']}"
                    e["split"] = split if e["kept"] else None
                out.extend(got)
        else:
            continue
        screened = True
    return out if screened else None


def _parts(source: str) -> list[str]:
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"data.source must be a non-empty string, got {source!r}")
    return [p.strip() for p in source.split(",") if p.strip()]


def _folder_files(root: str) -> list[tuple[str, Path]]:
    rootp = Path(root).expanduser()
    if not rootp.is_dir():
        raise ValueError(f"training image folder not found: {root!r}")
    files = sorted(p for p in rootp.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root!r}")
    return [(str(p.relative_to(rootp)), p) for p in files]


def skimage_images(split: str) -> Iterator[tuple[str, np.ndarray]]:
    import skimage.data

    for name in SKIMAGE_SPLITS[split]:
        yield f"skimage/{name}", load_image(getattr(skimage.data, name)())


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


def iter_source(source: str, split: str, *, data_dir=None, max_images=None, seed=0, downscale=3):
    """Dispatches on the source spec: "skimage", "debian:PKG+PKG", "folder:/path",
    "folders:/path" (its train/, validation/ and test/ sub-folders are the splits, as written
    by ``experiments/make_bundle.py``) or "tfds:name", or several of them joined by commas.

    ``max_images`` limits each part separately. ``downscale`` is where screened parts measure.
    """
    for part in _parts(source):
        if part == "skimage":
            it = skimage_images(split)
        elif part.startswith(("debian:", "folder:", "folders:")):
            it = screened_images(source_entries(part, downscale, seed), split)
        elif part.startswith("tfds:"):
            it = tfds_images(part[len("tfds:"):], split, data_dir, max_images, seed)
        else:
            raise ValueError(
                f"unknown training source {part!r}: use 'skimage', 'debian:PKG+PKG', "
                "'folder:/path', 'folders:/path' or 'tfds:name' (several joined by commas)"
            )
        for k, item in enumerate(it):
            if max_images is not None and k >= max_images:
                break
            yield item
