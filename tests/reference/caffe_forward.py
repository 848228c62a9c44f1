"""Reference: the released DHDE network's forward pass exactly as the authors' code computes it.

Test-side reference (formerly ``dhde.model.caffe.imported_forward``), written independently of
dhde.model.cnn / network: Caffe's ceil-mode max pooling, convolutions and dense layers at
``Precision.HIGHEST``, MATLAB's ``uint8`` cast of the scaled hand-crafted features and the ReLU
on the logits. ``dhde.model.caffe.ImportedModel.to_model()`` must agree with it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dhde.model.caffe import RELEASED_LAYERS

HAND_FEATURES = 120  # 3 hand-crafted features x 40 scale-encoded values
PATCH = 27


def matlab_uint8(x: jax.Array) -> jax.Array:
    """MATLAB ``uint8(x)`` as float32 values: round half away from zero, saturate to [0, 255].

    Any shape; NaN maps to 0 as in MATLAB.
    """
    x = jnp.asarray(x, jnp.float32)
    r = jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)
    return jnp.clip(jnp.nan_to_num(r, nan=0.0), 0.0, 255.0)


def _max_pool_ceil(x: jax.Array, k: int = 3, s: int = 3) -> jax.Array:
    """Caffe max pooling (ceil mode, no padding) on NHWC: the last window may hang over the edge."""
    h, w = x.shape[1:3]
    out_h, out_w = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    pad = ((0, 0), (0, (out_h - 1) * s + k - h), (0, (out_w - 1) * s + k - w), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, s, s, 1), pad)


def _conv_relu(x: jax.Array, p: dict) -> jax.Array:
    y = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=jax.lax.Precision.HIGHEST)
    return jax.nn.relu(y + p["bias"])


def _deep_tower(deep: dict, patches: jax.Array) -> jax.Array:
    """(N, 27, 27, 3) in 0..255 -> (N, 25): 27 -> 25 -> pool 9 -> 7 -> pool 3 -> 1 -> 1."""
    x = _max_pool_ceil(_conv_relu(patches, deep["conv1"]))
    x = _max_pool_ceil(_conv_relu(x, deep["conv2"]))
    x = _conv_relu(_conv_relu(x, deep["conv3"]), deep["conv4"])
    return x.reshape(x.shape[0], x.shape[1] * x.shape[2] * x.shape[3])


def _dense(x: jax.Array, p: dict) -> jax.Array:
    return jnp.dot(x, p["kernel"], precision=jax.lax.Precision.HIGHEST) + p["bias"]


@partial(jax.jit, static_argnames=("feature_scale", "quantize_uint8", "relu_logits"))
def _imported_forward(params, hand, patches, feature_scale, quantize_uint8, relu_logits):
    h = hand * feature_scale
    if quantize_uint8:
        h = matlab_uint8(h)
    x = jnp.concatenate([h, _deep_tower(params["deep"], patches)], axis=1)
    c = params["classifier"]
    x = jax.nn.relu(_dense(x, c["fc1"]))
    x = jax.nn.relu(_dense(x, c["fc2"]))
    x = _dense(x, c["fc3"])
    if relu_logits:
        x = jax.nn.relu(x)
    return jax.nn.softmax(x, axis=-1)


def _expected_param_shapes() -> dict:
    out: dict[str, dict] = {"deep": {}, "classifier": {}}
    for name, (group, w) in RELEASED_LAYERS.items():
        k = (w[3], w[2], w[1], w[0]) if group == "deep" else (w[1], w[0])
        out[group][name] = {"kernel": k, "bias": (w[0],)}
    return out


def _check_params(params: Any) -> None:
    expected = _expected_param_shapes()
    try:
        for group, layers in expected.items():
            for name, shapes in layers.items():
                for key, shape in shapes.items():
                    got = tuple(np.shape(params[group][name][key]))
                    if got != shape:
                        raise ValueError(f"params[{group!r}][{name!r}][{key!r}] has shape {got}, expected {shape}")
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"params do not have the DHDE layout (missing {e}); expected shapes {expected}") from None


def _as_float32(x: Any, name: str) -> jax.Array:
    if not isinstance(x, jax.core.Tracer):
        a = np.asarray(x)
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise TypeError(f"{name} must be a real float or integer array, got dtype {a.dtype}")
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    return jnp.asarray(x, jnp.float32)


def imported_forward(params: dict, hand_features: jax.Array, cnn_patches: jax.Array, *,
                     feature_scale: float = 255.0, quantize_uint8: bool = True,
                     relu_logits: bool = True) -> jax.Array:
    """Class probabilities of the released DHDE network, exactly as the authors' code computes them.

    Args:
      params: dhde-layout parameters (``ImportedModel.params``), see :func:`dhde.model.caffe.import_caffe_model`.
      hand_features: (N, 120) float, scale-encoded [DCT 40, gradient 40, SVD 40] in [0, 1] (each
        40-vector = [25 large bins, C_L, 13 small bins, C_S], constants 1). They are multiplied by
        ``feature_scale`` and, with ``quantize_uint8``, cast like MATLAB ``uint8`` (round half away
        from zero, clip to [0, 255]); values outside [0, 1] therefore saturate.
      cnn_patches: (N, 27, 27, 3) RGB patches, R first, values 0..255 (the released code uses
        integer values, uint8 of 255 * rgb; no mean subtraction), rows/cols in image order.
      feature_scale, quantize_uint8, relu_logits: the released network's conventions (defaults).

    Returns:
      (N, 11) float32 probabilities over the blur labels (rows sum to 1).

    Network: conv 3x3 (25) ReLU, max-pool 3/3 (Caffe ceil mode), conv 3x3 (50) ReLU, max-pool,
    conv 3x3 (50) ReLU, conv 1x1 (25) ReLU -> 25 values; concatenated after the 120 hand values;
    fc1 (300) ReLU, fc2 (150) ReLU, fc3 (11) [ReLU], softmax. Convolutions are VALID.
    """
    _check_params(params)
    hand = _as_float32(hand_features, "hand_features")
    patches = _as_float32(cnn_patches, "cnn_patches")
    if hand.ndim != 2 or hand.shape[1] != HAND_FEATURES:
        raise ValueError(f"hand_features must have shape (N, {HAND_FEATURES}), got {hand.shape}")
    if patches.shape[1:] != (PATCH, PATCH, 3) or patches.ndim != 4:
        raise ValueError(f"cnn_patches must have shape (N, {PATCH}, {PATCH}, 3), got {patches.shape}")
    if hand.shape[0] != patches.shape[0]:
        raise ValueError(f"hand_features has {hand.shape[0]} rows but cnn_patches has {patches.shape[0]}")
    return _imported_forward(params, hand, patches, float(feature_scale), bool(quantize_uint8), bool(relu_logits))
