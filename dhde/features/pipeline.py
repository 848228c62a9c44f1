"""Per-patch features end to end (paper section 3): patches in, encoded features out.

The canonical per-patch input is a *context patch*: the RGB patch of side w (27 or 15) centred
on its pixel plus a one-pixel ring, (N, w + 2, w + 2, 3) float32 in [0, 1], cut with replicate
(clamp) indexing. The ring is what the gradient needs: forward differences (authors' code) use
the next row/column, Sobel (paper) both neighbours. Cutting a context patch of a replicate-padded
image and differencing inside it gives exactly the code's gradient of the padded image (at the
border the replicated rows are equal, so the forward difference there is 0 as in the code).

Training data stores 29x29 context patches; inference gathers them from the image. Both paths
run :func:`patch_bins` and :func:`encode_hand`, so a model sees identical features in both.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dhde.features.dct import dct_feature
from dhde.features.encoding import encode_scale
from dhde.features.gradient import SOBEL_SCALE, gradient_feature
from dhde.features.singular_values import singular_value_feature
from dhde.filters.patches import CONTEXT, LARGE, SMALL, pad_small_to_large

#: Number of bins per hand-crafted feature for each patch side (paper 5.3).
BINS = {LARGE: 25, SMALL: 13}

def patch_gradient_magnitude(gray_ctx: jax.Array, method: str = "forward") -> jax.Array:
    """Gradient magnitude inside context patches, in [0, 1].

    Args:
      gray_ctx: (N, w + 2, w + 2) float32 grey context patches in [0, 1].
      method: "forward": forward differences, sqrt(gx^2 + gy^2) / sqrt(2) (authors' code);
        "sobel": 3x3 Sobel, magnitude / sqrt(20) (the paper's variant; see
        ``dhde.features.gradient.SOBEL_SCALE``).

    Returns:
      (N, w, w) float32 magnitudes in [0, 1].
    """
    c = gray_ctx[:, 1:-1, 1:-1]
    if method == "forward":
        gx = gray_ctx[:, 1:-1, 2:] - c
        gy = gray_ctx[:, 2:, 1:-1] - c
        return jnp.sqrt(gx * gx + gy * gy) / jnp.sqrt(2.0)
    if method == "sobel":
        g = gray_ctx
        gx = (g[:, :-2, 2:] + 2 * g[:, 1:-1, 2:] + g[:, 2:, 2:]) - (
            g[:, :-2, :-2] + 2 * g[:, 1:-1, :-2] + g[:, 2:, :-2]
        )
        gy = (g[:, 2:, :-2] + 2 * g[:, 2:, 1:-1] + g[:, 2:, 2:]) - (
            g[:, :-2, :-2] + 2 * g[:, :-2, 1:-1] + g[:, :-2, 2:]
        )
        return jnp.sqrt(gx * gx + gy * gy) / SOBEL_SCALE
    raise ValueError(f"gradient method must be 'forward' or 'sobel', got {method!r}")


#: Smallest value range (of 1) a patch is stretched from by ``normalize="patch"``: about the
#: contrast of the weakest edge the estimation thresholds pass in a dark photograph.
NORMALIZE_FLOOR = 4.0 / 255.0

NORMALIZATIONS = ("none", "patch")


def normalize_context(rgb_ctx: jax.Array, floor: float = NORMALIZE_FLOOR, over: str = "value") -> jax.Array:
    """Per-patch contrast normalisation: (rgb - lo) / max(hi - lo, floor).

    ``lo`` and ``hi`` are the minimum and maximum inside the patch (the context ring excluded)
    of either the value channel (max over RGB, ``over="value"``: the hand-crafted features, whose
    value channel then spans exactly [0, 1]) or of all three channels (``over="rgb"``: the CNN
    input, which then stays inside [0, 1] in every channel). Either way an exposure gain g and
    offset b (``g * x + b``) give the same output for every patch whose range ``g * (hi - lo)``
    is above the floor.

    With ``over="value"`` the non-maximal channels may leave [0, 1] far: a saturated blue patch
    with a value range of 0.02 maps a red value of 0 to about -(lo / 0.02). The first normalised
    model fed that to its CNN (inputs down to about -1,900 on the 0..255 scale), and every
    deep-feature unit died in training; the CNN input therefore uses ``over="rgb"``.

    Args:
      rgb_ctx: (N, w + 2, w + 2, 3) float32 context patches in [0, 1].
      floor: smallest range divided by (avoids amplifying flat, noisy patches).
      over: "value" or "rgb" (static).

    Returns:
      (N, w + 2, w + 2, 3) float32.
    """
    if over == "value":
        v = jnp.max(rgb_ctx[:, 1:-1, 1:-1], axis=-1)
        lo, hi = jnp.min(v, axis=(1, 2)), jnp.max(v, axis=(1, 2))
    elif over == "rgb":
        inner = rgb_ctx[:, 1:-1, 1:-1]
        lo, hi = jnp.min(inner, axis=(1, 2, 3)), jnp.max(inner, axis=(1, 2, 3))
    else:
        raise ValueError(f"over must be 'value' or 'rgb', got {over!r}")
    lo, hi = lo[:, None, None, None], hi[:, None, None, None]
    return (rgb_ctx - lo) / jnp.maximum(hi - lo, floor)


def _check_normalize(normalize: str) -> None:
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")


def to_cnn_range(rgb: jax.Array) -> jax.Array:
    """RGB in [0, 1] (any shape) to the CNN's input scale: round(255 x), float32 in 0..255, as the
    authors' uint8 images. The one definition of the CNN input encoding (patches or whole images)."""
    return jnp.round(rgb * 255.0)


def cnn_input(rgb_ctx: jax.Array, small_padding: str = "replicate", normalize: str = "none") -> jax.Array:
    """The deep feature's input: (N, 27, 27, 3) RGB in 0..255 (rounded, as uint8 in the code).

    Args:
      rgb_ctx: (N, w + 2, w + 2, 3) context patches in [0, 1], w = 27 or 15.
      small_padding: how 15x15 patches reach 27x27: "replicate" (code) or "zero" (paper).
      normalize: "none" (paper) or "patch": :func:`normalize_context` over all three channels
        first, so the patch spans 0..255 (its context ring may leave that range slightly).
    """
    _check_normalize(normalize)
    if normalize == "patch":
        rgb_ctx = normalize_context(rgb_ctx, over="rgb")
    p = to_cnn_range(rgb_ctx[:, 1:-1, 1:-1])
    if p.shape[1] == SMALL:
        p = pad_small_to_large(p, mode=small_padding)
    return p


def normalize_value_context(gray_ctx: jax.Array, floor: float = NORMALIZE_FLOOR) -> jax.Array:
    """:func:`normalize_context` (``over="value"``) of value-channel context patches.

    ``max_c normalize_context(rgb_ctx)[..., c] == normalize_value_context(max_c rgb_ctx[..., c])``
    exactly (bit for bit): subtracting ``lo`` and dividing by the positive range are monotone
    in float32, so they commute with the maximum over the channels. A third of the work.

    Args:
      gray_ctx: (N, w + 2, w + 2) float32 value-channel context patches in [0, 1].
      floor: smallest range divided by.

    Returns:
      (N, w + 2, w + 2) float32; the inner w x w spans exactly [0, 1] when its range >= floor.
    """
    inner = gray_ctx[:, 1:-1, 1:-1]
    lo, hi = jnp.min(inner, axis=(1, 2)), jnp.max(inner, axis=(1, 2))
    lo, hi = lo[:, None, None], hi[:, None, None]
    return (gray_ctx - lo) / jnp.maximum(hi - lo, floor)


def value_bins(
    gray_ctx: jax.Array, components: tuple[str, ...], gradient: str = "forward", normalize: str = "none"
) -> dict[str, jax.Array]:
    """Hand-crafted feature bins of value-channel context patches (what :func:`patch_bins` runs
    after taking the maximum over RGB; inference cuts these straight from the value channel).

    Args:
      gray_ctx: (N, w + 2, w + 2) float32 in [0, 1], w = 27 (25 bins) or 15 (13 bins).
      components, gradient, normalize: as :func:`patch_bins`.

    Returns:
      {component: (N, n_bins) float32}, each row log1p + L1 normalised.
    """
    w = gray_ctx.shape[1] - 2
    if gray_ctx.ndim != 3 or w not in BINS:
        raise ValueError(f"expected (N, {LARGE + 2} or {SMALL + 2}, same) value context patches, got {gray_ctx.shape}")
    n = BINS[w]
    _check_normalize(normalize)
    if normalize == "patch":
        gray_ctx = normalize_value_context(gray_ctx)
    gray = gray_ctx[:, 1:-1, 1:-1]
    out = {}
    if "D" in components:
        out["D"] = dct_feature(gray, n)
    if "G" in components:
        out["G"] = gradient_feature(patch_gradient_magnitude(gray_ctx, gradient), n)
    if "S" in components:
        out["S"] = singular_value_feature(gray, n)
    return out


def patch_bins(
    rgb_ctx: jax.Array, components: tuple[str, ...], gradient: str = "forward", normalize: str = "none"
) -> dict[str, jax.Array]:
    """Normalised hand-crafted feature bins of context patches of one side.

    Args:
      rgb_ctx: (N, w + 2, w + 2, 3) float32 in [0, 1], w = 27 (25 bins) or 15 (13 bins).
      components: any of "D", "G", "S" (others ignored).
      gradient: "forward" or "sobel".
      normalize: "none" (paper) or "patch" (:func:`normalize_context` first: the gradient
        histogram, DCT and singular values are then relative to the patch's own range).

    Returns:
      {component: (N, n_bins) float32}, each row log1p + L1 normalised; equal to
      :func:`value_bins` of ``max(rgb_ctx, -1)``, which is how it is computed.
    """
    w = rgb_ctx.shape[1] - 2
    if w not in BINS:
        raise ValueError(f"context patches must be {LARGE + 2} or {SMALL + 2} wide, got {w + 2}")
    return value_bins(jnp.max(rgb_ctx, axis=-1), components, gradient, normalize)


def encode_hand(
    large: dict[str, jax.Array] | None,
    small: dict[str, jax.Array] | None,
    is_small: jax.Array,
    hand_components: tuple[str, ...],
    encoding: str,
    c_large: float,
    c_small: float,
) -> jax.Array:
    """Scale-encodes and concatenates the hand-crafted features in D, G, S order.

    Either of ``large`` / ``small`` may be None (all patches of the other scale).
    Returns (N, width) float32; width 0 when there are no hand-crafted components.
    """
    n = is_small.shape[0]
    parts = []
    for c in hand_components:
        lb = large[c] if large is not None else jnp.zeros((n, BINS[LARGE]), jnp.float32)
        sb = small[c] if small is not None else jnp.zeros((n, BINS[SMALL]), jnp.float32)
        parts.append(encode_scale(lb, sb, is_small, encoding, c_large, c_small))
    if not parts:
        return jnp.zeros((n, 0), jnp.float32)
    return jnp.concatenate(parts, axis=-1)


class PatchFeatures(NamedTuple):
    """Model input for a batch of patches."""

    hand: jax.Array  #: (N, hand_width) float32 encoded hand-crafted features
    cnn: jax.Array  #: (N, 27, 27, 3) float32 RGB in 0..255 (zeros when unused)


def _small_context(rgb_ctx29: jax.Array) -> jax.Array:
    o = (LARGE - SMALL) // 2
    return rgb_ctx29[:, o : o + SMALL + 2, o : o + SMALL + 2]


def _check_context(rgb_ctx29: jax.Array) -> None:
    if rgb_ctx29.ndim != 4 or rgb_ctx29.shape[1:] != (CONTEXT, CONTEXT, 3):
        raise ValueError(
            f"expected (N, {CONTEXT}, {CONTEXT}, 3) context patches, got {rgb_ctx29.shape}"
        )


def context_hand(rgb_ctx29: jax.Array, is_small: jax.Array, config) -> jax.Array:
    """Encoded hand-crafted features of mixed-scale 29x29 context patches (training path).

    Args:
      rgb_ctx29: (N, 29, 29, 3) float32 in [0, 1], centred on the patch pixel.
      is_small: (N,) bool, True for strong-edge (15x15) patches; ignored (all large) for the
        ``single_scale`` encoding.
      config: a :class:`dhde.model.network.ModelConfig`.

    Returns:
      (N, config.hand_width) float32.
    """
    _check_context(rgb_ctx29)
    comps = config.hand_components
    if config.encoding == "single_scale":
        is_small = jnp.zeros_like(is_small)
        small = None
    else:
        small = patch_bins(_small_context(rgb_ctx29), comps, config.gradient, config.normalize)
    large = patch_bins(rgb_ctx29, comps, config.gradient, config.normalize)
    return encode_hand(
        large, small, is_small, comps, config.encoding, config.c_large, config.c_small
    )


def context_cnn(rgb_ctx29: jax.Array, is_small: jax.Array, config) -> jax.Array:
    """(N, 27, 27, 3) CNN input (0..255) of mixed-scale 29x29 context patches."""
    _check_context(rgb_ctx29)
    if not config.uses_deep:
        return jnp.zeros((rgb_ctx29.shape[0], LARGE, LARGE, 3), jnp.float32)
    big = cnn_input(rgb_ctx29, normalize=config.normalize)
    if config.encoding == "single_scale":
        return big
    sm = cnn_input(_small_context(rgb_ctx29), config.small_padding, config.normalize)
    return jnp.where(is_small[:, None, None, None], sm, big)


def scale_hand(gray_ctx: jax.Array, small: bool, config) -> jax.Array:
    """Encoded hand-crafted features of single-scale value-channel context patches.

    Args:
      gray_ctx: (N, 29, 29) for large or (N, 17, 17) for small patches: the value channel
        (max over RGB) in [0, 1].
      small: whether these are small (15x15) patches.
      config: a :class:`dhde.model.network.ModelConfig`.

    Returns:
      (N, config.hand_width) float32, equal to ``scale_features(rgb_ctx, small, config).hand``
      for ``gray_ctx = max(rgb_ctx, -1)``.
    """
    n = gray_ctx.shape[0]
    comps = config.hand_components
    bins = value_bins(gray_ctx, comps, config.gradient, config.normalize)
    is_small = jnp.full((n,), small)
    return encode_hand(
        None if small else bins, bins if small else None, is_small, comps,
        config.encoding, config.c_large, config.c_small,
    )


def scale_features(rgb_ctx: jax.Array, small: bool, config) -> PatchFeatures:
    """Features of single-scale context patches (the inference path: no wasted work).

    Args:
      rgb_ctx: (N, 29, 29, 3) for large or (N, 17, 17, 3) for small patches, in [0, 1].
      small: whether these are small (15x15) patches.
      config: a :class:`dhde.model.network.ModelConfig`.
    """
    n = rgb_ctx.shape[0]
    hand = scale_hand(jnp.max(rgb_ctx, axis=-1), small, config)
    if config.uses_deep:
        cnn = cnn_input(rgb_ctx, config.small_padding, config.normalize)
    else:
        cnn = jnp.zeros((n, LARGE, LARGE, 3), jnp.float32)
    return PatchFeatures(hand, cnn)
