"""The authors' released Caffe model: a dependency-free ``.caffemodel`` reader and its network.

The reader understands just enough of the protobuf wire format (varints, length-delimited
fields, fixed32/64) to pull the learned blobs out of a Caffe ``NetParameter``: new-style
``layer`` (field 100, ``LayerParameter``), legacy ``layers`` (field 2, ``V1LayerParameter``,
with its embedded ``V0LayerParameter``), blobs with ``shape`` or the legacy num/channels/height/
width dims, and packed or unpacked ``data`` / ``double_data``.

:func:`import_caffe_model` converts the released DHDE weights to dhde's parameter layout and
:func:`imported_forward` runs the released network exactly as the authors' code does (including
its uint8 cast of the hand-crafted features and the ReLU on the logits).
"""

from __future__ import annotations

import dataclasses
import os
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# ----------------------------------------------------------------------------- wire format

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _WireError(Exception):
    """Malformed protobuf data (converted to a ValueError naming the file)."""


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _WireError(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _WireError(f"varint longer than 10 bytes at byte {pos}")


def _fields(buf: bytes, start: int, end: int):
    """Yields (field number, wire type, value) where value is an int (varint) or a byte range."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wt = key >> 3, key & 7
        if field == 0:
            raise _WireError(f"invalid field number 0 at byte {pos}")
        if wt == _VARINT:
            value, pos = _varint(buf, pos, end)
        elif wt in (_I64, _I32, _LEN):
            if wt == _LEN:
                n, pos = _varint(buf, pos, end)
            else:
                n = 8 if wt == _I64 else 4
            if pos + n > end:
                raise _WireError(f"field {field} needs {n} bytes at byte {pos}, only {end - pos} left (truncated)")
            value = (pos, pos + n)
            pos += n
        else:
            raise _WireError(f"unsupported wire type {wt} (field {field}) at byte {pos}")
        yield field, wt, value


def _expect(field: int, wt: int, allowed: tuple[int, ...], what: str) -> None:
    if wt not in allowed:
        raise _WireError(f"{what} (field {field}) has wire type {wt}, expected one of {allowed}")


def _string(buf: bytes, rng: tuple[int, int], what: str) -> str:
    try:
        return bytes(buf[rng[0] : rng[1]]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise _WireError(f"{what} is not valid UTF-8") from e


def _numbers(buf: bytes, rng: tuple[int, int], dtype: str, what: str) -> np.ndarray:
    """A packed run (or one unpacked element) of little-endian fixed-width numbers."""
    size = np.dtype(dtype).itemsize
    n = rng[1] - rng[0]
    if n % size:
        raise _WireError(f"{what}: {n} bytes is not a multiple of {size}")
    return np.frombuffer(buf, dtype=dtype, count=n // size, offset=rng[0])


def _int64s(buf: bytes, wt: int, value: Any) -> list[int]:
    if wt == _VARINT:
        return [value]
    out, pos = [], value[0]
    while pos < value[1]:
        v, pos = _varint(buf, pos, value[1])
        out.append(v)
    return out


# ----------------------------------------------------------------------------- Caffe messages


class CaffeLayer(NamedTuple):
    """One layer of a ``.caffemodel``: its name, type (string) and learned blobs (float32)."""

    name: str
    type: str
    blobs: tuple[np.ndarray, ...]


# V1LayerParameter.LayerType values (the common ones; others are reported as "V1:<n>").
_V1_TYPES = {3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout", 8: "Flatten",
             14: "InnerProduct", 17: "Pooling", 18: "ReLU", 20: "Softmax"}


def _blob(buf: bytes, start: int, end: int) -> np.ndarray:
    legacy: dict[int, int] = {}
    shape = None
    floats, doubles = [], []
    for f, wt, v in _fields(buf, start, end):
        if f in (1, 2, 3, 4):  # num, channels, height, width (int32)
            _expect(f, wt, (_VARINT,), "BlobProto legacy dim")
            if v >= 2**31:
                raise _WireError(f"negative legacy blob dimension {v - 2**64}")
            legacy[f] = v
        elif f == 5:
            _expect(f, wt, (_LEN, _I32), "BlobProto.data")
            floats.append(_numbers(buf, v, "<f4", "BlobProto.data"))
        elif f == 8:
            _expect(f, wt, (_LEN, _I64), "BlobProto.double_data")
            doubles.append(_numbers(buf, v, "<f8", "BlobProto.double_data"))
        elif f == 7:
            _expect(f, wt, (_LEN,), "BlobProto.shape")
            shape = []
            for g, wt2, v2 in _fields(buf, *v):
                if g == 1:
                    _expect(g, wt2, (_VARINT, _LEN), "BlobShape.dim")
                    shape += _int64s(buf, wt2, v2)
            if any(d >= 2**63 for d in shape):
                raise _WireError(f"negative blob dimension in shape {shape}")
    parts = floats if floats else doubles
    data = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    if shape is None:
        shape = [legacy.get(k, 0) for k in (1, 2, 3, 4)] if legacy else [data.size]
    if int(np.prod(shape, dtype=np.int64)) != data.size:
        raise _WireError(f"blob has {data.size} values but shape {tuple(shape)}")
    return data.reshape(shape)


def _layer(buf: bytes, rng: tuple[int, int], legacy: bool) -> CaffeLayer:
    """LayerParameter (name 1, type 2, blobs 7) or V1LayerParameter (name 4, type 5, blobs 6)."""
    name_f, type_f, blobs_f = (4, 5, 6) if legacy else (1, 2, 7)
    name, ltype, blobs, v0 = None, "", [], None
    for f, wt, v in _fields(buf, *rng):
        if f == name_f:
            _expect(f, wt, (_LEN,), "layer name")
            name = _string(buf, v, "layer name")
        elif f == type_f:
            if legacy:
                _expect(f, wt, (_VARINT,), "V1 layer type")
                ltype = _V1_TYPES.get(v, f"V1:{v}")
            else:
                _expect(f, wt, (_LEN,), "layer type")
                ltype = _string(buf, v, "layer type")
        elif f == blobs_f:
            _expect(f, wt, (_LEN,), "layer blobs")
            blobs.append(_blob(buf, *v))
        elif legacy and f == 1:  # embedded V0LayerParameter: name 1, type 2, blobs 50
            _expect(f, wt, (_LEN,), "V0 layer")
            v0 = _layer_v0(buf, v)
    if v0 is not None:
        name = name if name is not None else v0.name
        ltype = ltype or v0.type
        blobs = blobs or list(v0.blobs)
    return CaffeLayer(name if name is not None else "", ltype, tuple(blobs))


def _layer_v0(buf: bytes, rng: tuple[int, int]) -> CaffeLayer:
    name, ltype, blobs = "", "", []
    for f, wt, v in _fields(buf, *rng):
        if f in (1, 2):
            _expect(f, wt, (_LEN,), "V0 layer name/type")
            s = _string(buf, v, "V0 layer name/type")
            name, ltype = (s, ltype) if f == 1 else (name, s)
        elif f == 50:
            _expect(f, wt, (_LEN,), "V0 layer blobs")
            blobs.append(_blob(buf, *v))
    return CaffeLayer(name, ltype, tuple(blobs))


def _read_bytes(path: str | os.PathLike) -> tuple[Path, bytes]:
    p = Path(path)
    if not p.exists():
        raise ValueError(f"Caffe model file not found: {str(p)!r}")
    if not p.is_file():
        raise ValueError(f"Caffe model path is not a file: {str(p)!r}")
    data = p.read_bytes()
    if not data:
        raise ValueError(f"Caffe model file is empty: {str(p)!r}")
    return p, data


def read_caffemodel_layers(path: str | os.PathLike) -> list[CaffeLayer]:
    """All layers of a binary Caffe ``NetParameter`` file, in file order (with or without blobs).

    Blobs are float32 NumPy arrays of their stored shape (``shape`` or legacy 4-D dims).

    Raises:
      ValueError: missing/empty file, malformed or truncated protobuf data, or a file that is
        not a Caffe model (no layer holds any blob); the message names the file.
    """
    p, buf = _read_bytes(path)
    layers = []
    try:
        for f, wt, v in _fields(buf, 0, len(buf)):
            if f in (2, 100):
                _expect(f, wt, (_LEN,), "NetParameter layer")
                layers.append(_layer(buf, v, legacy=(f == 2)))
            elif f == 1:
                _expect(f, wt, (_LEN,), "NetParameter name")
    except _WireError as e:
        raise ValueError(f"{str(p)!r} is not a readable Caffe model (truncated or foreign file?): {e}") from None
    if not any(layer.blobs for layer in layers):
        raise ValueError(f"{str(p)!r} is not a Caffe model with weights: no layer with blobs found "
                         f"({len(layers)} layers parsed)")
    return layers


def read_caffemodel(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Learned blobs of a binary ``.caffemodel``: layer name -> list of float32 arrays.

    Only layers that hold blobs are returned, in file order; each blob has its stored shape
    (e.g. Convolution weights (out, in, kh, kw) then bias (out,); InnerProduct (out, in), (out,);
    legacy files store 4-D shapes such as (1, 1, out, in)).

    Raises:
      ValueError: see :func:`read_caffemodel_layers`; also for two blob-holding layers with one name.
    """
    out: dict[str, list[np.ndarray]] = {}
    for layer in read_caffemodel_layers(path):
        if layer.blobs:
            if layer.name in out:
                raise ValueError(f"{str(path)!r}: two layers with blobs are named {layer.name!r}")
            out[layer.name] = list(layer.blobs)
    return out


# ----------------------------------------------------------------------------- import

#: Caffe layer name -> (dhde group, Caffe weight shape). fc1's 145 inputs are
#: [DCT 40, gradient 40, SVD 40, CNN 25].
RELEASED_LAYERS = {
    "conv1": ("deep", (25, 3, 3, 3)),
    "conv2": ("deep", (50, 25, 3, 3)),
    "conv3": ("deep", (50, 50, 3, 3)),
    "conv4": ("deep", (25, 50, 1, 1)),
    "fc1": ("classifier", (300, 145)),
    "fc2": ("classifier", (150, 300)),
    "fc3": ("classifier", (11, 150)),
}
RELEASED_PARAM_COUNT = 126_436
#: Imported weights above this magnitude mean a damaged file (the released model's largest is 0.89).
MAX_ABS_WEIGHT = 1e4
HAND_FEATURES = 120  # 3 hand-crafted features x 40 scale-encoded values
PATCH = 27


@partial(jax.tree_util.register_dataclass, data_fields=["params"],
         meta_fields=["feature_set", "encoding", "feature_scale", "quantize_uint8", "relu_logits", "source"])
@dataclasses.dataclass(frozen=True)
class ImportedModel:
    """The released model in dhde's layout (a pytree: ``params`` is the only leaf-holding field).

    ``params`` = {"deep": {"conv1".."conv4": {"kernel" HWIO, "bias"}},
    "classifier": {"fc1", "fc2", "fc3": {"kernel" (in, out), "bias"}}}, float32 jax arrays.
    The metadata says how the model was trained: feature set "B" (all four features), the
    "separate" scale encoding, hand-crafted features multiplied by ``feature_scale`` and cast
    to uint8 (``quantize_uint8``), and a ReLU on the logits (``relu_logits``).
    """

    params: dict
    feature_set: str = "B"
    encoding: str = "separate"
    feature_scale: float = 255.0
    quantize_uint8: bool = True
    relu_logits: bool = True
    source: str = ""

    def to_model(self):
        """The same network as a :class:`dhde.model.network.DefocusModel`, usable everywhere in dhde
        (``estimate_defocus(image, model=imported.to_model())``)."""
        from dhde.model.network import DefocusModel, ModelConfig

        config = ModelConfig(
            feature_set=self.feature_set, encoding=self.encoding, hand_scale=self.feature_scale,
            quantize_uint8=self.quantize_uint8, relu_logits=self.relu_logits,
        )
        return DefocusModel(params=self.params, config=config)

    def __call__(self, hand_features, cnn_patches) -> jax.Array:
        """:func:`imported_forward` with this model's parameters and options."""
        return imported_forward(self.params, hand_features, cnn_patches, feature_scale=self.feature_scale,
                                quantize_uint8=self.quantize_uint8, relu_logits=self.relu_logits)


def _strip_leading_ones(a: np.ndarray, ndim: int) -> np.ndarray:
    while a.ndim > ndim and a.shape[0] == 1:
        a = a[0]
    return a


def import_caffe_model(path: str | os.PathLike) -> ImportedModel:
    """Loads the released DHDE ``.caffemodel`` into dhde's parameter layout.

    Conventions (from the authors' MATLAB + Caffe code): Caffe convolution weights (out, in, kh, kw)
    become HWIO kernels with the two spatial axes SWAPPED, ``kernel[a, b, i, o] = W[o, i, b, a]``,
    because matcaffe hands Caffe every patch transposed; InnerProduct weights (out, in) become
    (in, out). Legacy 4-D blob shapes with leading 1s are accepted.

    Raises:
      ValueError: unreadable file (see :func:`read_caffemodel`), a missing or unexpected layer,
        a blob count other than 2 (weight, bias), a shape that differs from the architecture,
        or NaN / infinite / absurdly large (> ``MAX_ABS_WEIGHT``) weights (a damaged file);
        messages name the file, the layer and the shapes.
    """
    blobs = read_caffemodel(path)
    src = str(path)
    missing = [n for n in RELEASED_LAYERS if n not in blobs]
    extra = [n for n in blobs if n not in RELEASED_LAYERS]
    if missing or extra:
        raise ValueError(f"{src!r} does not have the DHDE architecture: missing layers {missing}, "
                         f"unexpected layers with weights {extra} (found {list(blobs)})")
    params: dict[str, dict] = {"deep": {}, "classifier": {}}
    count = 0
    for name, (group, wshape) in RELEASED_LAYERS.items():
        bl = blobs[name]
        if len(bl) != 2:
            raise ValueError(f"{src!r}: layer {name!r} has {len(bl)} blobs, expected 2 (weight, bias)")
        w = _strip_leading_ones(bl[0], len(wshape))
        b = _strip_leading_ones(bl[1], 1)
        if w.shape != wshape or b.shape != (wshape[0],):
            raise ValueError(f"{src!r}: layer {name!r} has weight shape {bl[0].shape} and bias shape "
                             f"{bl[1].shape}, expected {wshape} and {(wshape[0],)}")
        for what, blob in (("weights", w), ("biases", b)):
            finite = np.isfinite(blob)
            if not finite.all():
                raise ValueError(f"{src!r}: layer {name!r} has {int((~finite).sum())} NaN or infinite {what}: "
                                 "the file is damaged")
            if blob.size and float(np.abs(blob).max()) > MAX_ABS_WEIGHT:
                raise ValueError(f"{src!r}: layer {name!r} has {what} up to {float(np.abs(blob).max()):.3g} "
                                 f"(a trained network stays far below {MAX_ABS_WEIGHT:g}): the file is damaged")
        kernel = w.transpose(3, 2, 1, 0) if group == "deep" else w.T
        params[group][name] = {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(b, jnp.float32)}
        count += w.size + b.size
    if count != RELEASED_PARAM_COUNT:  # pragma: no cover - implied by the shapes above
        raise ValueError(f"{src!r}: {count} parameters, expected {RELEASED_PARAM_COUNT}")
    return ImportedModel(params=params, source=src)


# ----------------------------------------------------------------------------- forward pass


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
      params: dhde-layout parameters (``ImportedModel.params``), see :func:`import_caffe_model`.
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
