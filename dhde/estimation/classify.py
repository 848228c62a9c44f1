"""Classifying every edge patch of an image inside one jit (paper 4.1), in fixed-size chunks.

The number of edge pixels is data dependent; XLA needs static shapes. Instead of rounding the
count up to a bucket (which ties a compilation to an edge count), the coordinates of each scale
are listed with ``jnp.nonzero(..., size=H*W)`` and a ``lax.while_loop`` classifies them
``chunk`` at a time, running only as many chunks as there are edges. One compilation therefore
serves every image of a given size whatever its edge count, and the work stays proportional to
the real number of patches (plus at most one padded chunk per scale).

The CNN's first layer is shared between patches (:mod:`dhde.model.cnn_shared`): large
patches read it from dense maps computed once per image (up to ``SHARED_MAX_PIXELS``; larger
images compute it per patch, to bound memory), replicate-padded small patches compute only
their 17x17 distinct first-layer positions. Both give the per-patch network's numbers up to
float32 rounding; ``shared_first_layer=False`` runs the plain per-patch network.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dhde.features.pipeline import cnn_input, scale_hand, to_cnn_range
from dhde.model import cnn_shared as deep_shared
from dhde.labels import NUM_LABELS
from dhde.model.network import DefocusModel
from dhde.filters.patches import LARGE, SMALL, extract_patches


#: Largest image (pixels) whose dense first-layer maps are built (~200 bytes per pixel).
SHARED_MAX_PIXELS = 3_000_000


def _classify_scale(image, value, scales, scale: int, small: bool, model: DefocusModel, chunk: int, probs,
                    deep_fn=None):
    """Accumulates (H*W, 11) probabilities of the pixels whose scale map equals ``scale``.

    The hand-crafted features read value-channel context patches cut from ``value`` (a third
    of the RGB gather; same numbers, see ``pipeline.value_bins``). deep_fn(coords) -> (N, 25)
    deep features of the patches centred on ``coords`` (N, 2), or None for the model's own
    per-patch CNN on RGB patches.
    """
    h, w = scales.shape
    cfg = model.config
    flat = scales.reshape(-1) == scale
    count = jnp.sum(flat)
    (idx,) = jnp.nonzero(flat, size=h * w + chunk, fill_value=0)
    side = (SMALL if small else LARGE) + 2

    def body(state):
        i, probs = state
        sel = jax.lax.dynamic_slice_in_dim(idx, i * chunk, chunk)
        valid = i * chunk + jnp.arange(chunk) < count
        coords = jnp.stack([sel // w, sel % w], axis=-1).astype(jnp.int32)
        hand = scale_hand(extract_patches(value, coords, side), small, cfg)
        if not cfg.uses_deep:
            p = model.probabilities_from_deep(hand, None)
        elif deep_fn is None:
            cnn = cnn_input(extract_patches(image, coords, side), cfg.small_padding, cfg.normalize)
            p = model.probabilities(hand, cnn)
        else:
            p = model.probabilities_from_deep(hand, deep_fn(coords))
        target = jnp.where(valid, sel, h * w)  # invalid rows go to a dump row
        return i + 1, probs.at[target].set(p, mode="drop")

    n_chunks = (count + chunk - 1) // chunk
    _, probs = jax.lax.while_loop(lambda s: s[0] < n_chunks, body, (jnp.int32(0), probs))
    return probs


def _shared_deep(image, model: DefocusModel, small: bool):
    """deep_fn for :func:`_classify_scale` sharing the first layer, or None where not exact."""
    cfg = model.config
    if not cfg.uses_deep or cfg.normalize != "none":  # per-patch normalisation: nothing to share
        return None
    params = model.params["deep"]
    if small:
        if cfg.small_padding != "replicate":
            return None
        image255 = to_cnn_range(image)  # the 15x15 patch inside its replicate-padded CNN input
        return lambda coords: deep_shared.deep_feature_small(params, extract_patches(image255, coords, SMALL))
    if image.shape[0] * image.shape[1] > SHARED_MAX_PIXELS:
        return None
    maps = deep_shared.pool1_maps(params, to_cnn_range(image))
    return lambda coords: deep_shared.deep_feature_large_at(params, maps, coords)


def classify_edges(image, scales, model: DefocusModel, chunk: int = 2048, shared_first_layer: bool = True):
    """Blur-level probabilities at every edge pixel.

    Args:
      image: (H, W, 3) float32 RGB in [0, 1].
      scales: (H, W) int32 scale map: 1 = large patch, 2 = small patch, 0 = none. For the
        ``single_scale`` encoding every non-zero pixel is classified with a large patch.
      model: a :class:`DefocusModel` (params traced, config static).
      chunk: patches per step of the loop (static); memory grows linearly with it.
      shared_first_layer: share the CNN's first layer between patches (static; same numbers up
        to float32 rounding, faster); False: the per-patch network.

    Returns:
      (H, W, 11) float32 probabilities, zero rows where the scale map is 0.
    """
    h, w = scales.shape
    probs = jnp.zeros((h * w, NUM_LABELS), jnp.float32)
    value = jnp.max(image, axis=-1)
    large_fn = _shared_deep(image, model, False) if shared_first_layer else None
    if model.config.encoding == "single_scale":
        scales = (scales > 0).astype(jnp.int32)
        probs = _classify_scale(image, value, scales, 1, False, model, chunk, probs, large_fn)
    else:
        small_fn = _shared_deep(image, model, True) if shared_first_layer else None
        probs = _classify_scale(image, value, scales, 1, False, model, chunk, probs, large_fn)
        probs = _classify_scale(image, value, scales, 2, True, model, chunk, probs, small_fn)
    return probs.reshape(h, w, NUM_LABELS)
