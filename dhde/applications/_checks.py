"""Input validation shared by the application wrappers (thin, host-side, clear messages)."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _as_array(x: Any, fn: str, name: str) -> Any:
    if isinstance(x, (np.ndarray, jax.Array)):
        return x
    if isinstance(x, (list, tuple)):
        try:
            return np.asarray(x)
        except ValueError as e:
            raise ValueError(f"{fn}: {name} is a ragged nested sequence") from e
    raise TypeError(f"{fn}: {name} must be a NumPy or JAX array, got {type(x).__name__}")


def check_image(image: Any, fn: str, name: str = "image") -> Any:
    """(H, W, 3) real floats in [0, 1], finite -> float32 array (NumPy, or the tracer as is)."""
    arr = _as_array(image, fn, name)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"{fn}: {name} must be a float array in [0, 1], got dtype {arr.dtype} "
            "(dhde.io.image.load_image converts uint8/uint16 images)"
        )
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{fn}: {name} must have shape (H, W, 3), got {tuple(arr.shape)}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"{fn}: {name} must be at least 2x2 pixels, got {tuple(arr.shape)}")
    if _is_traced(arr):
        return arr.astype(np.float32)
    arr = np.asarray(arr, np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{fn}: {name} contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1.0 + 1e-6:
        raise ValueError(f"{fn}: {name} values lie in [{lo:.4g}, {hi:.4g}], expected [0, 1]")
    return np.clip(arr, 0.0, 1.0)


def check_map(
    x: Any,
    fn: str,
    name: str = "defocus",
    shape: tuple[int, int] | None = None,
    nonnegative: bool = True,
) -> Any:
    """(H, W) real, finite (and >= 0) -> float32; ``shape`` must match when given."""
    arr = _as_array(x, fn, name)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{fn}: {name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{fn}: {name} must have shape (H, W), got {tuple(arr.shape)}")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise ValueError(
            f"{fn}: {name} has shape {tuple(arr.shape)} but the image is {tuple(shape)} (H, W)"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{fn}: {name} is empty, shape {tuple(arr.shape)}")
    if _is_traced(arr):
        return arr.astype(np.float32)
    arr = np.asarray(arr, np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{fn}: {name} contains NaN or infinite values")
    if nonnegative and float(arr.min()) < 0:
        raise ValueError(
            f"{fn}: {name} has negative values (min {float(arr.min()):.4g}); "
            "blur sigma must be >= 0 pixels"
        )
    return arr


def check_scalar(
    x: Any,
    fn: str,
    name: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
) -> float:
    """A finite real Python scalar within [lo, hi] (or (lo, hi] when ``lo_open``)."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) and not (
        isinstance(x, (np.ndarray, jax.Array)) and np.ndim(x) == 0 and not _is_traced(x)
    ):
        raise TypeError(f"{fn}: {name} must be a real number, got {type(x).__name__}")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{fn}: {name} must be finite, got {v}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ValueError(f"{fn}: {name} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{fn}: {name} must be <= {hi}, got {v}")
    return v


def check_int(x: Any, fn: str, name: str, *, lo: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an int, got {type(x).__name__}")
    if int(x) < lo:
        raise ValueError(f"{fn}: {name} must be >= {lo}, got {int(x)}")
    return int(x)
