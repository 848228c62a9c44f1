"""Deep feature f_C (paper 3.5, Figure 5): a small CNN on the 27x27 RGB patch.

Layers (as in the authors' trained model): conv 3x3/25 + ReLU -> max-pool 3x3 stride 3 ->
conv 3x3/50 + ReLU -> max-pool 3x3 stride 3 -> conv 3x3/50 + ReLU -> conv 1x1/25 + ReLU; spatial
sizes 27 -> 25 -> 9 -> 7 -> 3 -> 1 -> 1. The pools are Caffe's *ceil mode* (the last window hangs
over the bottom/right edge and covers only the pixels that exist): 25 -> 9 and 7 -> 3 need it (a
floor-mode pool would give 8 and 2, and conv3 would not fit).

Two exact implementations share one parameter tree, identical to ``flax.linen.Conv``'s
(``{"conv1": {"kernel": (3, 3, 3, 25), "bias": (25,)}, ..., "conv4": {"kernel": (1, 1, 50, 25)}}``,
HWIO kernels, same initialisers), so parameters move freely between them and ``nn.Conv`` modules:

* ``impl="conv"``: ``lax.conv_general_dilated`` + ``lax.reduce_window``, the plain reference.
* ``impl="fast"`` (what the default ``impl="auto"`` picks on CPU): convolutions as im2col + one
  matmul each (output channels padded to a multiple of 16 for the CPU matmul kernels), processed
  in blocks of ``chunk`` patches so the 25x25x25 first-layer activations stay in cache. Same
  numbers up to float32 rounding (~1e-6 relative); about 3x faster than ``impl="conv"`` on a
  CPU for ~20k patches.

``impl="auto"`` picks "fast" when JAX's default backend is the CPU and "conv" (cuDNN / the
native convolution) on GPU and TPU, where the im2col path was not tuned.

Inference (``dhde.estimation.classify``) does not run this module on every patch: it shares the first
layer between overlapping patches (:mod:`dhde.model.cnn_shared`) and runs only the layers
after the first pool per patch (``after_first_layer``).
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from dhde.features.blocks import map_in_blocks

#: Input side and channels, and output width of the deep feature.
PATCH, CHANNELS, DEEP_WIDTH = 27, 3, 25
#: (name, kernel side, input channels, output channels) of the four convolutions.
LAYERS = (("conv1", 3, 3, 25), ("conv2", 3, 25, 50), ("conv3", 3, 50, 50), ("conv4", 1, 50, 25))
IMPLS = ("auto", "fast", "conv")

_DN = ("NHWC", "HWIO", "NHWC")


def _pool_window(x: jax.Array, k: int, s: int) -> jax.Array:
    h, w = x.shape[1:3]
    ph = -(h - k) % s if h > k else 0
    pw = -(w - k) % s if w > k else 0
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, k, k, 1), (1, s, s, 1),
                             ((0, 0), (0, ph), (0, pw), (0, 0)))


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _pool_tiled(x: jax.Array, k: int) -> jax.Array:
    return _pool_window(x, k, k)


def _pool_tiled_fwd(x, k):
    y = _pool_window(x, k, k)
    return y, (x, y)


def _pool_tiled_bwd(k, res, g):
    # The gradient of the reshape form: each window's cotangent goes to its maximum (split
    # evenly between tied maxima, like jnp.max), then the -inf padding is cut off again. Written
    # with the k * k strided slices of the padded input (one per window position) rather than a
    # reshape into (n, ho, k, wo, k, c) and a reduction over its axes 2 and 4, which XLA's CPU
    # backend runs ~1.3x slower (the CNN's forward + backward on 256 patches: 75 -> 58 ms).
    x, y = res
    n, h, w, c = x.shape
    ho, wo = y.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (0, ho * k - h), (0, wo * k - w), (0, 0)), constant_values=-jnp.inf)
    hits = [[(xp[:, a::k, b::k] == y).astype(g.dtype) for b in range(k)] for a in range(k)]
    share = g / sum(hit for row in hits for hit in row)
    out = jnp.stack([jnp.stack([hit * share for hit in row], axis=3) for row in hits], axis=2)
    return (out.reshape(n, ho * k, wo * k, c)[:, :h, :w],)


_pool_tiled.defvjp(_pool_tiled_fwd, _pool_tiled_bwd)


def max_pool_ceil(x: jax.Array, k: int = 3, s: int = 3) -> jax.Array:
    """Caffe max pooling in ceil mode on (N, H, W, C): windows k x k, stride s; the last window
    may hang over the bottom/right edge and then covers only the existing pixels.

    For non-overlapping windows (k == s, the network's case) the forward pass is
    ``lax.reduce_window`` and the backward pass is written out: the -inf-padded input is
    reshaped into whole windows and each window's cotangent goes to its maximum.
    reduce_window's own gradient (a select-and-scatter) is slow on the CPU: CNN forward +
    backward on 256 patches takes 141 ms with it and 96 ms with this (training 1,650-1,850 ->
    2,400-2,540 patches/s on 2 CPU cores). The gradients agree wherever a window's maximum is unique; tied maxima share the
    cotangent (as with ``jnp.max``), which after the ReLU happens at 0 only, where the gradient
    is zero anyway.
    """
    h, w = x.shape[1:3]
    if k == s and h >= k and w >= k:
        return _pool_tiled(x, k)
    return _pool_window(x, k, s)


def _forward_conv(p: dict, x: jax.Array) -> jax.Array:
    def conv(h, name):
        y = lax.conv_general_dilated(h, p[name]["kernel"], (1, 1), "VALID", dimension_numbers=_DN)
        return jax.nn.relu(y + p[name]["bias"])

    h = max_pool_ceil(conv(x, "conv1"))
    h = max_pool_ceil(conv(h, "conv2"))
    h = conv(conv(h, "conv3"), "conv4")
    return h.reshape(x.shape[0], DEEP_WIDTH)


def _im2col(x: jax.Array, k: int) -> jax.Array:
    """(N, H, W, C) -> (N, H-k+1, W-k+1, k*k*C), last axis ordered (dy, dx, c) like HWIO."""
    ho, wo = x.shape[1] - k + 1, x.shape[2] - k + 1
    return jnp.concatenate([x[:, dy:dy + ho, dx:dx + wo] for dy in range(k) for dx in range(k)], axis=-1)


def conv_as_matmul(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """VALID stride-1 conv + bias + ReLU as im2col @ kernel, output channels padded to 16k."""
    k, cout = kernel.shape[0], kernel.shape[-1]
    cols = _im2col(x, k) if k > 1 else x
    pad = -cout % 16
    w = jnp.pad(kernel.reshape(-1, cout), ((0, 0), (0, pad)))
    y = jnp.dot(cols.reshape(-1, cols.shape[-1]), w)
    y = y.reshape(cols.shape[:-1] + (cout + pad,))[..., :cout]
    return jax.nn.relu(y + bias)


def first_layer(p: dict, x: jax.Array) -> jax.Array:
    """conv1 + ReLU + ceil-mode pool: (N, 27, 27, 3) -> (N, 9, 9, 25)."""
    return max_pool_ceil(conv_as_matmul(x, p["conv1"]["kernel"], p["conv1"]["bias"]))


def after_first_layer(p: dict, h: jax.Array) -> jax.Array:
    """The rest of the network after the first pool: (N, 9, 9, 25) -> (N, 25)."""
    n = h.shape[0]
    h = max_pool_ceil(conv_as_matmul(h, p["conv2"]["kernel"], p["conv2"]["bias"]))
    h = conv_as_matmul(h.reshape(n, 1, 1, -1), p["conv3"]["kernel"].reshape(1, 1, -1, 50), p["conv3"]["bias"])
    h = conv_as_matmul(h, p["conv4"]["kernel"], p["conv4"]["bias"])
    return h.reshape(n, DEEP_WIDTH)


def _forward_matmul(p: dict, x: jax.Array) -> jax.Array:
    return after_first_layer(p, first_layer(p, x))


def _forward_fast(p: dict, x: jax.Array, chunk: int) -> jax.Array:
    return map_in_blocks(partial(_forward_matmul, p), x, chunk)


class _ConvParams(nn.Module):
    """Holds the parameters of one convolution exactly as ``nn.Conv`` would (names, shapes,
    initialisers: LeCun-normal kernel, zero bias), without applying it."""

    features: int
    kernel_size: int
    in_features: int

    @nn.compact
    def __call__(self) -> dict:
        shape = (self.kernel_size, self.kernel_size, self.in_features, self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return {"kernel": kernel, "bias": bias}


class DeepFeature(nn.Module):
    """The deep feature network: (N, 27, 27, 3) RGB patches -> (N, 25) features.

    Attributes:
      impl: "auto" (default: "fast" on CPU, "conv" elsewhere), "fast" (im2col + matmul, blocked)
        or "conv" (lax.conv reference). All give the same numbers up to float32 rounding and
        use the same parameters.
      chunk: patches per block in the "fast" path (0: no blocking). Blocking only changes speed.

    Call:
      x: (N, 27, 27, 3) float RGB in 0..255 (R first; the uint8 values of 255 * rgb, no mean
        subtraction), N >= 1. Small (15x15) patches must be padded to 27x27 beforehand.

    Returns:
      (N, 25) float32, >= 0 (after the last ReLU).

    Raises:
      ValueError: wrong input rank/shape or unknown ``impl``; TypeError: non-real input.
    """

    impl: str = "auto"
    chunk: int = 128

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.impl not in IMPLS:
            raise ValueError(f"DeepFeature.impl must be one of {IMPLS}, got {self.impl!r}")
        if not isinstance(self.chunk, int) or self.chunk < 0:
            raise ValueError(f"DeepFeature.chunk must be an int >= 0, got {self.chunk!r}")
        x = jnp.asarray(x)
        if x.ndim != 4 or x.shape[1:] != (PATCH, PATCH, CHANNELS) or x.shape[0] < 1:
            raise ValueError(
                f"DeepFeature expects (N, {PATCH}, {PATCH}, {CHANNELS}) RGB patches in 0..255 with N >= 1, "
                f"got shape {x.shape}"
            )
        if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
            raise TypeError(f"DeepFeature expects real-valued patches, got dtype {x.dtype}")
        x = x.astype(jnp.float32)
        p = {name: _ConvParams(cout, k, cin, name=name)() for name, k, cin, cout in LAYERS}
        impl = self.impl
        if impl == "auto":
            impl = "fast" if jax.default_backend() == "cpu" else "conv"
        if impl == "conv":
            return _forward_conv(p, x)
        return _forward_fast(p, x, self.chunk)
