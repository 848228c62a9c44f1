"""Reference: multi-scale patch extraction on an image and its features (paper 3.1 + 3.6).

Test-side reference (formerly ``dhde.features.extract``): the same front half of the method as
:func:`dhde.estimation.classify.classify_edges` computes, written as one plain jitted function.

``extract_features(image)`` runs the whole front half of the method: HSV value channel, Canny
at the two threshold pairs, the scale map, and for every edge pixel the encoded hand-crafted
features plus the CNN input of its patch (large 27x27 on weak edges, small 15x15 on strong ones).

Shapes are static: the number of patches of each scale is rounded up to a bucketed capacity
(``dhde.filters.patches.capacity_for``), so one compiled function serves every image of a given size and
every edge count in the same bucket; ``valid`` marks the real rows.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dhde.features.pipeline import scale_features
from dhde.filters.edges import ESTIMATION_THRESHOLDS, scale_map
from dhde.filters.patches import LARGE, SMALL, capacity_for, edge_coordinates, extract_patches
from dhde.io.image import load_image, value_channel
from dhde.model.network import ModelConfig


class EdgeFeatures(NamedTuple):
    """Features of all edge patches of one image; large-scale rows first, then small.

    coords: (C, 2) int32 [row, col]; valid: (C,) bool; small: (C,) bool (15x15 patch);
    hand: (C, hand_width) float32; cnn: (C, 27, 27, 3) float32 in 0..255.
    """

    coords: jax.Array
    valid: jax.Array
    small: jax.Array
    hand: jax.Array
    cnn: jax.Array


def _one_scale(image, scales, scale, capacity, small, config):
    ec = edge_coordinates(scales, scale, capacity)
    ctx = extract_patches(image, ec.coords, (SMALL if small else LARGE) + 2)
    f = scale_features(ctx, small, config)
    return ec.coords, ec.valid, jnp.full((capacity,), small), f.hand, f.cnn


@partial(jax.jit, static_argnames=("cap_large", "cap_small", "config"))
def edge_features(image, scales, cap_large: int, cap_small: int, config) -> EdgeFeatures:
    """Jitted core: features of every edge pixel given the scale map.

    Args:
      image: (H, W, 3) float32 RGB in [0, 1].
      scales: (H, W) int32 scale map (0 none, 1 large, 2 small). For the ``single_scale``
        encoding pass ``scales > 0`` (all large) and ``cap_small = 0``.
      cap_large, cap_small: static capacities (see ``capacity_for``).
      config: a :class:`dhde.model.network.ModelConfig` (static).
    """
    parts = [_one_scale(image, scales, 1, cap_large, False, config)]
    if cap_small:
        parts.append(_one_scale(image, scales, 2, cap_small, True, config))
    return EdgeFeatures(*(jnp.concatenate(x) for x in zip(*parts)))


def scale_counts(scales) -> tuple[int, int]:
    """Number of scale-1 and scale-2 pixels (host ints)."""
    s = np.asarray(scales)
    return int((s == 1).sum()), int((s == 2).sum())


def prepare_scales(image, config, thresholds=ESTIMATION_THRESHOLDS):
    """Scale map of an image and the capacities to use, honouring ``single_scale``.

    Returns (scales (H, W) int32, cap_large, cap_small, (n_large, n_small)).
    """
    scales = scale_map(value_channel(image), thresholds)
    if config.encoding == "single_scale":
        scales = (scales > 0).astype(jnp.int32)
    n1, n2 = scale_counts(scales)
    cap_small = 0 if config.encoding == "single_scale" else capacity_for(n2)
    return scales, capacity_for(n1), cap_small, (n1, n2)


def extract_features(image, config=None, thresholds=ESTIMATION_THRESHOLDS) -> EdgeFeatures:
    """Multi-scale edge patches of an image and their features (paper section 3).

    Args:
      image: a path or an array accepted by :func:`dhde.load_image` (validated there).
      config: a :class:`dhde.model.network.ModelConfig` (feature set, encoding, gradient, padding);
        default ``ModelConfig()`` = B / separate.
      thresholds: the two Canny threshold pairs (fractions of the maximum gradient).

    Returns:
      :class:`EdgeFeatures`. An image without edges gives all-invalid rows (``valid`` all False).
    """
    config = ModelConfig() if config is None else config
    img = jnp.asarray(load_image(image))
    scales, cl, cs, _ = prepare_scales(img, config, thresholds)
    return edge_features(img, scales, cl, cs, config)
