"""The one validation module: every input check of the library, with messages that name the problem.

Two kinds of check, by where they run:

* **trace-time** (shapes, dtypes, static options): safe on tracers, so every stage can call
  them inside ``jax.jit``; a traced value is never looked at, only its shape and dtype.
* **host-side value checks** (finite, in range): they read the values, so they run once, at the
  entry points (``load_image``, ``estimate_defocus``, ``EstimateOptions``, the application
  wrappers); on a tracer they are skipped.

A wrong *type* raises :class:`InputTypeError`, which is both a ``TypeError`` and a
``ValueError`` (as NumPy's ``AxisError`` is both ``ValueError`` and ``IndexError``), so callers
may catch either; a wrong value raises ``ValueError``. ``where`` (optional) prefixes the
message with the public function's name, e.g. ``"segment_blur: defocus must ..."``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "InputTypeError", "is_traced", "is_concrete", "as_array", "real_array", "image01", "sigma_map",
    "scalar", "positive_scalar", "integer", "choice", "shape_pair",
]

REAL_TYPES = (int, float, np.integer, np.floating)


class InputTypeError(TypeError, ValueError):
    """An argument of the wrong type (catchable as ``TypeError`` or ``ValueError``)."""


def _p(where: str | None) -> str:
    return f"{where}: " if where else ""


def is_traced(x: Any) -> bool:
    """True for a JAX tracer (inside ``jit``/``vmap``/``grad``): its values are unknown."""
    return isinstance(x, jax.core.Tracer)


def is_concrete(x: Any) -> bool:
    """Not a tracer: values may be read on the host."""
    return not is_traced(x)


def as_array(x: Any, name: str, where: str | None = None, *, sequences: bool = True) -> Any:
    """``x`` if it has a shape (NumPy/JAX array, tracer), else ``np.asarray(x)`` of a (nested)
    list/tuple when ``sequences``; anything else raises :class:`InputTypeError`."""
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return x
    if sequences and isinstance(x, (list, tuple)) or isinstance(x, REAL_TYPES) and not isinstance(x, bool):
        try:
            return np.asarray(x)
        except ValueError as e:
            raise ValueError(f"{_p(where)}{name} is a ragged nested sequence") from e
    raise InputTypeError(f"{_p(where)}{name} must be a NumPy or JAX array, got {type(x).__name__}")


def real_array(x: Any, name: str, *, ndim: int | None = None, where: str | None = None,
               finite: bool = True, nonempty: bool = True, channels: bool = False) -> jax.Array:
    """A real (float or integer, not bool) array of ``ndim`` dimensions -> float32 ``jax.Array``.

    ``channels``: the shape must be (H, W, C) with C >= 1 (the message says so). ``finite``:
    a concrete array with NaN or inf raises ``ValueError`` (skipped on tracers).
    """
    x = as_array(x, name, where)
    if channels and (x.ndim != 3 or x.shape[-1] < 1):
        raise ValueError(f"{_p(where)}{name} must have shape (H, W, C), got shape {tuple(x.shape)}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{_p(where)}{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if nonempty and x.ndim >= 2 and (x.shape[0] < 1 or x.shape[1] < 1):
        raise ValueError(f"{_p(where)}{name} must not be empty, got shape {tuple(x.shape)}")
    if x.dtype == np.bool_ or not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise InputTypeError(f"{_p(where)}{name} must be a real float array, got dtype {x.dtype}")
    if finite and is_concrete(x) and not np.all(np.isfinite(np.asarray(x, np.float32))):
        raise ValueError(f"{_p(where)}{name} contains NaN or infinite values")
    return jnp.asarray(x, jnp.float32)


def _finite_float32(arr: Any, where: str, name: str) -> Any:
    """``arr`` as float32: a tracer cast unchecked; a concrete array as NumPy, NaN/inf refused."""
    if is_traced(arr):
        return arr.astype(np.float32)
    arr = np.asarray(arr, np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: {name} contains NaN or infinite values")
    return arr


def image01(image: Any, where: str, name: str = "image") -> Any:
    """(H, W, 3) float RGB in [0, 1], finite, at least 2x2 -> float32 (NumPy; a tracer as is)."""
    arr = as_array(image, name, where)
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputTypeError(
            f"{where}: {name} must be a float array in [0, 1], got dtype {arr.dtype} "
            "(dhde.load_image converts uint8/uint16 images)")
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{where}: {name} must have shape (H, W, 3), got {tuple(arr.shape)}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"{where}: {name} must be at least 2x2 pixels, got {tuple(arr.shape)}")
    arr = _finite_float32(arr, where, name)
    if is_traced(arr):
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1.0 + 1e-6:
        raise ValueError(f"{where}: {name} values lie in [{lo:.4g}, {hi:.4g}], expected [0, 1]")
    return np.clip(arr, 0.0, 1.0)


def sigma_map(x: Any, where: str, name: str = "defocus", shape: tuple[int, int] | None = None,
              nonnegative: bool = True) -> Any:
    """(H, W) real, finite (and >= 0) map -> float32 (NumPy; a tracer as is); ``shape`` must
    match when given."""
    arr = as_array(x, name, where)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputTypeError(f"{where}: {name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{where}: {name} must have shape (H, W), got {tuple(arr.shape)}")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{where}: {name} has shape {tuple(arr.shape)} but the image is {tuple(shape)} (H, W)")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{where}: {name} is empty, shape {tuple(arr.shape)}")
    arr = _finite_float32(arr, where, name)
    if is_traced(arr):
        return arr
    if nonnegative and float(arr.min()) < 0:
        raise ValueError(f"{where}: {name} has negative values (min {float(arr.min()):.4g}); "
                         "blur sigma must be >= 0 pixels")
    return arr


def scalar(x: Any, name: str, *, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, where: str | None = None) -> float:
    """A finite real host scalar (Python / NumPy number or 0-d concrete array) in [lo, hi]
    (``(lo, hi]`` with ``lo_open``) -> float. Bools are refused."""
    if isinstance(x, bool) or not isinstance(x, REAL_TYPES) and not (
            isinstance(x, (np.ndarray, jax.Array)) and np.ndim(x) == 0 and is_concrete(x)):
        raise InputTypeError(f"{_p(where)}{name} must be a real number, got {type(x).__name__}")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{_p(where)}{name} must be finite, got {v}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ValueError(f"{_p(where)}{name} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{_p(where)}{name} must be <= {hi}, got {v}")
    return v


def positive_scalar(value: Any, name: str, where: str | None = None) -> None:
    """A positive finite 0-d value; a tracer passes (its value is checked at the entry point)."""
    if is_concrete(value):
        v = np.asarray(value)
        if v.shape != () or v.dtype == np.bool_ or not np.issubdtype(v.dtype, np.number) \
                or not np.isfinite(v) or not v > 0:
            raise ValueError(f"{_p(where)}{name} must be a positive finite scalar, got {value!r}")


def integer(x: Any, name: str, *, lo: int | None = None, hi: int | None = None, odd: bool = False,
            where: str | None = None) -> int:
    """A Python / NumPy integer (not bool) in [lo, hi], odd if ``odd`` -> int."""
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise InputTypeError(f"{_p(where)}{name} must be an int, got {x!r} ({type(x).__name__})")
    v = int(x)
    if lo is not None and v < lo:
        raise ValueError(f"{_p(where)}{name} must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{_p(where)}{name} must be <= {hi}, got {v}")
    if odd and v % 2 == 0:
        raise ValueError(f"{_p(where)}{name} must be odd, got {v}")
    return v


def choice(x: Any, name: str, options, where: str | None = None) -> str:
    """One of the strings ``options``."""
    if not isinstance(x, str) or x not in options:
        raise ValueError(f"{_p(where)}{name} must be one of {tuple(options)}, got {x!r}")
    return x


def shape_pair(shape: Any, name: str = "shape") -> tuple[int, int]:
    """A pair (H, W) of positive ints."""
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (H, W) of ints, got {shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive, got {shape!r}")
    return h, w
