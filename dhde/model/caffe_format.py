"""A dependency-free reader of binary Caffe ``.caffemodel`` files (the protobuf wire format).

The reader understands just enough of the protobuf wire format (varints, length-delimited
fields, fixed32/64) to pull the learned blobs out of a Caffe ``NetParameter``: new-style
``layer`` (field 100, ``LayerParameter``), legacy ``layers`` (field 2, ``V1LayerParameter``,
with its embedded ``V0LayerParameter``), blobs with ``shape`` or the legacy num/channels/height/
width dims, and packed or unpacked ``data`` / ``double_data``.

:mod:`dhde.model.caffe` turns the released DHDE weights read here into a dhde model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

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
