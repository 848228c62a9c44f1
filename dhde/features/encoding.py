"""Scale encodings (paper 3.6, 5.2, Figure 7) and feature sets (paper Table 1), selected by name.

A hand-crafted feature (DCT, gradient or SVD bins) has 25 bins on a large 27x27 patch and 13 on a
small 15x15 patch. A *scale encoding* turns the two into one fixed-width vector per patch:

=========================  =====  ==============================================================
name                       width  large patch / small patch
=========================  =====  ==============================================================
``separate`` (paper)       40     [bins(25), C_L, 0 x 13, 0] / [0 x 25, 0, bins(13), C_S]
``separate_no_constants``  38     [bins(25), 0 x 13]         / [0 x 25, bins(13)]
``shared``                 26     [bins(25), C_L]            / [bins(13), 0 x 12, C_S]
``single_scale``           26     [bins(25), C_L] (every patch is a large patch)
=========================  =====  ==============================================================

``shared`` is the baseline the paper says does not converge (5.2); ``single_scale`` is the
"f_B with single-scale patches" row of the paper (3.6). A *feature set* names the components that
feed the classifier: D (DCT), G (gradient), S (SVD), C (CNN), H = D+G+S, B = H+C, or any
"+"-combination ("D+S+C", "H+C"); the classifier input is the encoded hand-crafted features in
D, G, S order followed by the 25-dim deep feature (B / separate: 3 * 40 + 25 = 145, the width of
the authors' released model).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

#: Scale encodings, by name (see the module docstring).
ENCODINGS = ("separate", "separate_no_constants", "shared", "single_scale")
#: Feature components in canonical order: DCT, gradient, SVD, CNN.
COMPONENTS = ("D", "G", "S", "C")
#: Names that stand for several components.
ALIASES = {"H": ("D", "G", "S"), "B": ("D", "G", "S", "C")}
#: Bins of a hand-crafted feature on a large (27x27) and a small (15x15) patch; deep feature width.
LARGE_BINS, SMALL_BINS, DEEP_WIDTH = 25, 13, 25

_WIDTHS = {"separate": 40, "separate_no_constants": 38, "shared": 26, "single_scale": 26}


def _check_encoding(encoding: str) -> None:
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        raise ValueError(f"unknown scale encoding {encoding!r}; choose one of {ENCODINGS}")


def encoded_width(encoding: str) -> int:
    """Width of one scale-encoded hand-crafted feature: 40, 38, 26 or 26 (see module docstring)."""
    _check_encoding(encoding)
    return _WIDTHS[encoding]


def bins_for(encoding: str) -> tuple[int, int]:
    """(large, small) bin counts an encoding takes: (25, 13), or (25, 0) for ``single_scale``
    (every patch is a 27x27 patch, there are no small-scale bins)."""
    _check_encoding(encoding)
    return (LARGE_BINS, 0) if encoding == "single_scale" else (LARGE_BINS, SMALL_BINS)


@partial(jax.jit, static_argnames=("encoding",))
def _encode(large, small, is_small, c_large, c_small, encoding: str):
    n = large.shape[0]
    s = is_small[:, None]
    one = jnp.ones((n, 1), jnp.float32)
    if encoding == "single_scale":
        return jnp.concatenate([large, c_large * one], axis=-1)
    if encoding == "shared":
        sp = jnp.pad(small, ((0, 0), (0, LARGE_BINS - SMALL_BINS)))
        return jnp.concatenate([jnp.where(s, sp, large), jnp.where(s, c_small, c_large) * one], axis=-1)
    lpart = jnp.where(s, 0.0, large)
    spart = jnp.where(s, small, 0.0)
    if encoding == "separate_no_constants":
        return jnp.concatenate([lpart, spart], axis=-1)
    cl = jnp.where(s, 0.0, c_large * one)
    cs = jnp.where(s, c_small * one, 0.0)
    return jnp.concatenate([lpart, cl, spart, cs], axis=-1)


def _check_constant(name: str, c) -> None:
    if isinstance(c, jax.core.Tracer):
        return
    a = np.asarray(c)
    if a.shape != () or not np.issubdtype(a.dtype, np.number) or not np.isfinite(a):
        raise ValueError(f"{name} must be a finite scalar, got {c!r}")


def encode_scale(large_bins, small_bins, is_small, encoding: str = "separate",
                 c_large: float = 1.0, c_small: float = 1.0) -> jax.Array:
    """Puts each patch's feature bins into the slots of its scale (paper Figure 7).

    Works under ``jax.jit`` / ``jax.vmap`` (``encoding`` must be static there).

    Args:
      large_bins: (N, 25) float, the (normalised, in [0, 1]) bins computed on the 27x27 patch;
        used where ``~is_small``.
      small_bins: (N, 13) float, the bins computed on the 15x15 patch; used where ``is_small``.
        Ignored by ``single_scale`` (may then be None).
      is_small: (N,) bool (or integer 0/1), True for strong-edge (small, 15x15) patches. Ignored
        by ``single_scale``.
      encoding: one of :data:`ENCODINGS`.
      c_large, c_small: the constants C_L, C_S (paper: 1; the released code feeds 255 after its
        x255 uint8 cast). ``shared`` uses C_L for large and C_S for small patches in its one slot.

    Returns:
      (N, encoded_width(encoding)) float32. ``separate``: a large patch gives
      [bins, C_L, 0 x 13, 0], a small one [0 x 25, 0, bins, C_S].

    Raises:
      ValueError: unknown encoding, wrong shapes, non-finite constants, NaN bins (when concrete).
      TypeError: a non-boolean, non-integer ``is_small``.
    """
    _check_encoding(encoding)
    _check_constant("c_large", c_large)
    _check_constant("c_small", c_small)
    large_bins = jnp.asarray(large_bins)
    is_small = jnp.asarray(is_small)
    if large_bins.ndim != 2 or large_bins.shape[1] != LARGE_BINS:
        raise ValueError(f"large_bins must be (N, {LARGE_BINS}), got {large_bins.shape}")
    n = large_bins.shape[0]
    if encoding == "single_scale" and small_bins is None:
        small_bins = jnp.zeros((n, SMALL_BINS), jnp.float32)
    small_bins = jnp.asarray(small_bins)
    if encoding != "single_scale" and small_bins.shape != (n, SMALL_BINS):
        raise ValueError(f"small_bins must be (N, {SMALL_BINS}) = ({n}, {SMALL_BINS}), got {small_bins.shape}")
    if encoding == "single_scale":
        small_bins = jnp.zeros((n, SMALL_BINS), jnp.float32)
        is_small = jnp.zeros((n,), bool)
    if is_small.shape != (n,):
        raise ValueError(f"is_small must be (N,) = ({n},), got {is_small.shape}")
    if not (is_small.dtype == bool or jnp.issubdtype(is_small.dtype, jnp.integer)):
        raise TypeError(f"is_small must be boolean (or integer 0/1), got dtype {is_small.dtype}")
    for name, a in (("large_bins", large_bins), ("small_bins", small_bins)):
        if not jnp.issubdtype(a.dtype, jnp.floating) and not jnp.issubdtype(a.dtype, jnp.integer):
            raise TypeError(f"{name} must be a real array, got dtype {a.dtype}")
        if not isinstance(a, jax.core.Tracer) and bool(jnp.isnan(a).any()):
            raise ValueError(f"{name} contains NaN")
    return _encode(large_bins.astype(jnp.float32), small_bins.astype(jnp.float32), is_small.astype(bool),
                   jnp.float32(c_large), jnp.float32(c_small), encoding)


def parse_feature_set(name: str) -> tuple[str, ...]:
    """Feature set name -> its components in canonical (D, G, S, C) order.

    Names: D, G, S, C, H (= D+G+S), B (= H+C), and any "+"-combination such as "D+S+C" or "H+C"
    (case-sensitive; spaces around "+" are ignored).

    Raises:
      ValueError: an empty or unknown name, or a component named twice (e.g. "H+D").
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"feature set must be a non-empty string such as 'B' or 'D+S+C', got {name!r}")
    comps: list[str] = []
    for part in name.replace(" ", "").split("+"):
        for c in ALIASES.get(part, (part,)):
            if c not in COMPONENTS:
                raise ValueError(
                    f"unknown feature {part!r} in {name!r}; use D, G, S, C, H (= D+G+S) or B (= H+C) "
                    "joined by '+'"
                )
            if c in comps:
                raise ValueError(f"feature {c!r} appears twice in {name!r}")
            comps.append(c)
    return tuple(c for c in COMPONENTS if c in comps)


def input_width(feature_set: str, encoding: str) -> int:
    """Classifier input width: (number of D/G/S components) * encoded_width(encoding) + 25 if C.

    E.g. B / separate = 3 * 40 + 25 = 145 (the released model), H / shared = 78, C alone = 25.
    """
    comps = parse_feature_set(feature_set)
    _check_encoding(encoding)
    hand = sum(1 for c in comps if c != "C")
    return hand * encoded_width(encoding) + (DEEP_WIDTH if "C" in comps else 0)
