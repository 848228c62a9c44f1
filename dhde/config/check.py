"""Up-front validation of the Hydra configs (and of the same dicts passed from Python).

Every entry point checks its whole config before any data is built, model loaded or image
estimated; a bad value raises :class:`ConfigError`, a ``ValueError`` whose one-line message
starts with the dotted config key (``train.steps must be an integer >= 1, got -5``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

_MISSING = object()


class ConfigError(ValueError):
    """A config value that cannot work; the message names its key."""


def get(cfg: Mapping | None, key: str, default: Any = None) -> Any:
    """``cfg["a"]["b"]`` for ``key="a.b"``; ``default`` when a part is absent (or the value is
    None and a default is given)."""
    cur: Any = cfg
    for k in key.split("."):
        if not isinstance(cur, Mapping) or k not in cur:
            return default
        cur = cur[k]
    return default if cur is None else cur


def _show(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def _is_number(v: Any) -> bool:
    return not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, float, np.integer, np.floating))


def as_number(v: Any, key: str, *, lo: float | None = None, hi: float | None = None,
              lo_open: bool = False, hi_open: bool = False) -> float:
    """``v`` as a finite float within the bounds, else :class:`ConfigError` naming ``key``."""
    if not _is_number(v):
        raise ConfigError(f"{key} must be a number, got {_show(v)}")
    v = float(v)
    if not math.isfinite(v):
        raise ConfigError(f"{key} must be finite, got {v}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ConfigError(f"{key} must be {'>' if lo_open else '>='} {lo:g}, got {v:g}")
    if hi is not None and (v >= hi if hi_open else v > hi):
        raise ConfigError(f"{key} must be {'<' if hi_open else '<='} {hi:g}, got {v:g}")
    return v


def as_integer(v: Any, key: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """``v`` as an int (integral floats such as 200.0 accepted) in [lo, hi], else
    :class:`ConfigError` naming ``key``."""
    if not _is_number(v) or not math.isfinite(float(v)) or float(v) != int(v):
        raise ConfigError(f"{key} must be an integer, got {_show(v)}")
    v = int(v)
    if lo is not None and v < lo:
        raise ConfigError(f"{key} must be an integer >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ConfigError(f"{key} must be an integer <= {hi}, got {v}")
    return v


def as_flag(v: Any, key: str) -> bool:
    """``v`` as a bool (true / false only, not 0 / 1 or strings)."""
    if not isinstance(v, (bool, np.bool_)):
        raise ConfigError(f"{key} must be true or false, got {_show(v)}")
    return bool(v)


def _value(cfg, key, default, optional, what):
    v = get(cfg, key, None)
    if v is None:
        if optional:
            return None
        if default is _MISSING:
            raise ConfigError(f"{key} must be set ({what})")
        v = default
    return v


def number(cfg: Mapping | None, key: str, default: Any = _MISSING, *, optional: bool = False,
           **bounds) -> float | None:
    """A finite float at dotted ``key`` (bounds as in :func:`as_number`; ``optional``: None ok)."""
    v = _value(cfg, key, default, optional, "a number")
    return None if v is None else as_number(v, key, **bounds)


def integer(cfg: Mapping | None, key: str, default: Any = _MISSING, *, optional: bool = False,
            **bounds) -> int | None:
    """An integer at dotted ``key`` (bounds as in :func:`as_integer`; ``optional``: None ok)."""
    v = _value(cfg, key, default, optional, "an integer")
    return None if v is None else as_integer(v, key, **bounds)


def flag(cfg: Mapping | None, key: str, default: Any = _MISSING) -> bool:
    """A boolean at dotted ``key`` (true / false, not 0 / 1 or strings)."""
    return as_flag(_value(cfg, key, default, False, "true or false"), key)


def choice(cfg: Mapping | None, key: str, options: Sequence[str], default: Any = _MISSING) -> str:
    """One of ``options`` at ``key``."""
    v = get(cfg, key, None)
    if v is None:
        if default is _MISSING:
            raise ConfigError(f"{key} must be one of {list(options)}")
        v = default
    if not isinstance(v, str) or v not in options:
        raise ConfigError(f"{key} must be one of {list(options)}, got {_show(v)}")
    return v


def text(cfg: Mapping | None, key: str, *, optional: bool = True) -> str | None:
    """A non-empty string at ``key`` (None allowed when ``optional``)."""
    v = get(cfg, key, None)
    if v is None:
        if optional:
            return None
        raise ConfigError(f"{key} must be set (a string)")
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"{key} must be a non-empty string, got {_show(v)}")
    return v


def dataclass_fields(cls, values: Mapping | None, key: str, **convert_extra) -> Any:
    """``cls(**values)`` for a frozen dataclass with typed defaults (e.g. ``EstimateOptions``):
    unknown names and values whose type differs from the field's default are rejected with the
    dotted key (``options.gamma must be a number, got 'abc'``); the class's own checks run
    after, their message prefixed with ``key``."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{key} must be a mapping of {cls.__name__} fields, got {_show(values)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{key} has unknown field(s) {unknown}; known: {sorted(fields)}")
    out = {}
    for name, v in values.items():
        k = f"{key}.{name}"
        default = fields[name].default
        if name in convert_extra:
            out[name] = convert_extra[name](v, k)
        elif isinstance(default, bool):
            out[name] = as_flag(v, k)
        elif isinstance(default, int):
            out[name] = as_integer(v, k)
        elif isinstance(default, float):
            out[name] = as_number(v, k)
        elif isinstance(default, str):
            if not isinstance(v, str):
                raise ConfigError(f"{k} must be a string, got {_show(v)}")
            out[name] = v
        else:
            out[name] = v
    try:
        return cls(**out)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{key}: {e}") from e


def threshold_pairs(v: Any, key: str) -> tuple[tuple[float, float], ...]:
    """Canny threshold pairs ``[[low, high], ...]`` as a tuple of float pairs."""
    try:
        pairs = tuple(tuple(float(x) for x in p) for p in v)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a list of [low, high] pairs, got {_show(v)}") from None
    if not pairs or any(len(p) != 2 or not all(math.isfinite(x) for x in p) for p in pairs):
        raise ConfigError(f"{key} must be a non-empty list of [low, high] pairs, got {_show(v)}")
    return pairs
