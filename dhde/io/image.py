"""Image input: files or arrays to float32 RGB in [0, 1], and the HSV value channel.

Every other stage of dhde takes the output of :func:`load_image` (or an array of the same
contract), so all input validation of pixel data lives here.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

#: Smallest image side that can hold one large (27x27) patch.
MIN_SIDE = 27
#: File suffixes read as images, the same set for a single file and for every file of a folder
#: (entry points, training folders). Animated / multi-page files (GIF, TIFF) give frame 0.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
#: An integer image whose maximum is below this fraction of its dtype's maximum gets a warning.
INTEGER_RANGE_WARNING = 0.01

ImageLike = Union[str, os.PathLike, np.ndarray, jax.Array]


def _read_file(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.exists():
        raise ValueError(f"image file not found: {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"image path is not a file: {str(path)!r}")
    try:
        with Image.open(path) as im:
            frames = int(getattr(im, "n_frames", 1) or 1)
            if frames > 1:
                warnings.warn(f"{str(path)!r} holds {frames} frames (animation or multi-page file); "
                              f"using frame 0 of {frames}", stacklevel=3)
            im = ImageOps.exif_transpose(im)  # JPEG orientation tag
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                arr = np.asarray(im, dtype=np.uint32).astype(np.float32) / 65535.0
                return np.clip(arr, 0.0, 1.0)
            if mode == "F":
                return np.asarray(im, dtype=np.float32)
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
            elif mode not in ("L", "RGB"):
                im = im.convert("RGB")
            arr = np.asarray(im)
    except UnidentifiedImageError as e:
        raise ValueError(f"cannot read image file {str(path)!r}: not a recognised image format") from e
    except OSError as e:
        raise ValueError(f"cannot read image file {str(path)!r}: {e}") from e
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    # 16-bit RGB PNGs are decoded by PIL to 8 bits; other exotic modes land here.
    return arr.astype(np.float32)


def _read_16bit_png(path: Path) -> np.ndarray | None:
    """Reads 16-bit PNGs at full precision (Pillow truncates 16-bit RGB to 8 bits).

    Returns None for 8-bit PNGs (Pillow reads those) and for files pypng cannot parse (Pillow
    then reports the error).
    """
    import png  # pypng: pure Python, reads every PNG bit depth

    try:
        reader = png.Reader(filename=str(path))
        width, height, rows, info = reader.asDirect()
        if info["bitdepth"] != 16:
            return None
        planes = info["planes"]
        arr = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(height, width, planes)
    except (png.Error, ValueError, OSError, EOFError):
        return None
    if planes in (2, 4):  # drop alpha
        arr = arr[..., : planes - 1]
    return arr.astype(np.float32) / 65535.0


def _to_rgb(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    elif arr.ndim == 3 and arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.ndim == 3 and arr.shape[-1] == 2:  # grey + alpha
        arr = arr[..., :1]
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.ndim == 3 and arr.shape[-1] == 4:  # RGBA: drop alpha (composite is not defined)
        arr = arr[..., :3]
    elif arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(
            f"{what} must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {arr.shape}"
        )
    return arr


def load_image(image: ImageLike, *, min_side: int = MIN_SIDE, copy: bool = True) -> np.ndarray:
    """Returns an image as float32 RGB in [0, 1] with shape (H, W, 3).

    Args:
      image: a path to an image file (PNG 8/16-bit, JPEG with EXIF orientation, grey, RGBA,
        anything Pillow reads; animated GIF / multi-page TIFF: frame 0, with a warning "frame 0
        of N"), or an array. **Integer rule:** every integer array is divided by its dtype's
        maximum (uint8 by 255, uint16 by 65535, int16 by 32767, int32 by 2**31 - 1, ...), and a
        ``UserWarning`` is issued when its largest value is under 1 % of that maximum (e.g.
        0..255 values in a uint16 or int32 array: convert with ``.astype(np.uint8)`` first);
        negative values are rejected. Float arrays must already be in [0, 1]; bool arrays give
        0 / 1. Grey (H, W) or (H, W, 1) images are replicated to three channels; an alpha
        channel is dropped.
      min_side: the smallest accepted height and width in pixels (default 27, the large patch).
      copy: True (default): the result never shares memory with ``image``. False: a C-contiguous
        float32 (H, W, 3) array in [0, 1] is returned as it is (no copy; 144 MB at 12 MP), for
        callers that only read it.

    Returns:
      A NumPy float32 array of shape (H, W, 3), values in [0, 1].

    Raises:
      ValueError: unreadable file, empty (0-size) array, wrong rank or channel count, non-finite
        values, negative integers, float values outside [0, 1], or an image smaller than
        ``min_side`` on a side.
      TypeError: an input that is neither a path nor an array, or a non-numeric dtype.
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        what = f"image file {str(path)!r}"
        arr = source = None
        if path.suffix.lower() == ".png" and path.is_file():
            arr = _read_16bit_png(path)
        if arr is None:
            arr = _read_file(path)
    elif isinstance(image, (np.ndarray, jax.Array)):
        what = "image array"
        arr = source = np.asarray(image)
        if arr.size == 0:
            raise ValueError(f"image array is empty (shape {arr.shape}); at least {min_side}x{min_side} "
                             "pixels are needed")
        if arr.dtype == np.bool_:
            arr = arr.astype(np.float32)
        elif np.issubdtype(arr.dtype, np.integer):
            if arr.min() < 0:
                raise ValueError("image array has negative integer values")
            top, peak = float(np.iinfo(arr.dtype).max), float(arr.max())
            if peak < INTEGER_RANGE_WARNING * top:
                warnings.warn(
                    f"{arr.dtype} image array uses {100.0 * peak / top:.2g} % of its dtype's range (max "
                    f"{peak:.0f} of {top:.0f}); integer images are divided by the dtype's maximum, so it "
                    "reads as nearly black. Convert it first, e.g. .astype(np.uint8) for 0..255 values",
                    stacklevel=2,
                )
            arr = (arr.astype(np.float64) / top).astype(np.float32)
        elif np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float32, copy=False)  # copied at the end only if still shared
        else:
            raise TypeError(f"image array has unsupported dtype {arr.dtype}")
    else:
        raise TypeError(
            f"image must be a path or an array, got {type(image).__name__}"
        )
    arr = _to_rgb(arr, what)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1.0 + 1e-6:
        raise ValueError(
            f"{what} has float values in [{lo:.4g}, {hi:.4g}]; expected [0, 1] "
            "(divide 8-bit data by 255)"
        )
    h, w = arr.shape[:2]
    if h < min_side or w < min_side:
        raise ValueError(
            f"{what} is {h}x{w} pixels; at least {min_side}x{min_side} is needed "
            f"(one {min_side}x{min_side} patch)"
        )
    if lo < 0.0 or hi > 1.0:  # within the 1e-6 tolerance: clipped (a new array)
        arr = np.clip(arr, 0.0, 1.0)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if copy and source is not None and np.may_share_memory(arr, source):
        arr = arr.copy()
    return arr


def value_channel(rgb: jax.Array) -> jax.Array:
    """The HSV value channel, max(R, G, B).

    Args:
      rgb: float array (..., 3) in [0, 1].

    Returns:
      float32 array (...) in [0, 1].
    """
    rgb = jnp.asarray(rgb)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise ValueError(f"value_channel expects (..., 3) RGB, got shape {rgb.shape}")
    return jnp.max(rgb.astype(jnp.float32), axis=-1)


def grey16_image(values: np.ndarray):
    """A PIL 16-bit grey image ("I;16") from an (H, W) integer array in 0..65535."""
    from PIL import Image

    a = np.ascontiguousarray(np.clip(values, 0, 65535).astype("<u2"))
    return Image.frombytes("I;16", (a.shape[1], a.shape[0]), a.tobytes())


def save_image(path: Union[str, os.PathLike], image: np.ndarray, *, bits: int = 8) -> Path:
    """Writes an (H, W) or (H, W, 3) float image in [0, 1] as an 8- or 16-bit PNG.

    Parent directories are created. Values are clipped to [0, 1]. The file is written
    atomically (:mod:`dhde.io.atomic`): a failure never leaves a truncated PNG.
    """
    from PIL import Image

    from dhde.io import atomic

    path = Path(path)
    arr = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if bits == 8:
        im = Image.fromarray(np.round(arr * 255).astype(np.uint8))
    elif bits == 16:
        if arr.ndim != 2:
            raise ValueError("16-bit output supports grey (H, W) images only")
        im = grey16_image(np.round(arr * 65535))
    else:
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    return atomic.save_pil(path, im)
