"""Tests of dhde.model.caffe / caffe_format: the protobuf reader (on files written here), the importer,
and the imported network (``to_model``) and the reference forward pass (tests/reference).

The independent references are a tiny protobuf *writer* and a brute-force NumPy implementation of
the Caffe network in Caffe's own conventions (NCHW, (out, in, kh, kw) weights, ceil-mode pooling),
fed the transposed patch as matcaffe does.
"""

from __future__ import annotations

import math
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dhde.model.caffe import RELEASED_LAYERS, RELEASED_PARAM_COUNT, ImportedModel, import_caffe_model
from dhde.model.caffe_format import read_caffemodel, read_caffemodel_layers
from reference.caffe_forward import _conv_relu, _imported_forward, imported_forward, matlab_uint8

MODEL = "dhde-original/DHDE_model.caffemodel"


# ----------------------------------------------------------------------------- protobuf writer


def _vint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(field: int, wt: int) -> bytes:
    return _vint(field << 3 | wt)


def _ld(field: int, payload: bytes | str) -> bytes:
    payload = payload.encode() if isinstance(payload, str) else payload
    return _key(field, 2) + _vint(len(payload)) + payload


def _vfield(field: int, value: int) -> bytes:
    return _key(field, 0) + _vint(value)


def _blob(arr, packed=True, legacy=False, double=False, packed_dims=True, shape_last=False) -> bytes:
    arr = np.asarray(arr)
    if legacy:
        dims = (1,) * (4 - arr.ndim) + arr.shape
        shape = b"".join(_vfield(i + 1, d) for i, d in enumerate(dims))
    elif packed_dims:
        shape = _ld(7, _ld(1, b"".join(_vint(d) for d in arr.shape)))
    else:
        shape = _ld(7, b"".join(_vfield(1, d) for d in arr.shape))
    flat = arr.ravel()
    if double:
        data = _ld(8, flat.astype("<f8").tobytes())
    elif packed:
        data = _ld(5, flat.astype("<f4").tobytes())
    else:
        data = b"".join(_key(5, 5) + struct.pack("<f", v) for v in flat)
    return data + shape if shape_last else shape + data


def _layer(name: str, ltype: str, blobs=(), extra=b"") -> bytes:
    body = _ld(1, name) + _ld(2, ltype) + _ld(3, "bottom") + extra + b"".join(_ld(7, b) for b in blobs)
    return _ld(100, body)


def _v1_layer(name: str, enum: int, blobs=()) -> bytes:
    return _ld(2, _ld(2, "bottom") + _ld(4, name) + _vfield(5, enum) + b"".join(_ld(6, b) for b in blobs))


def _net(*layers: bytes) -> bytes:
    return _ld(1, "net") + _ld(3, "data") + _vfield(4, 1) + b"".join(layers)


def _random_weights(rng) -> dict[str, list[np.ndarray]]:
    """Caffe-layout weights of the DHDE architecture, scaled so activations stay moderate."""
    out = {}
    for name, (_, shape) in RELEASED_LAYERS.items():
        fan_in = int(np.prod(shape[1:]))
        scale = (1.0 / 255.0 if name in ("conv1", "fc1") else 1.0) * math.sqrt(2.0 / fan_in)
        out[name] = [(rng.standard_normal(shape) * scale).astype(np.float32),
                     (0.1 * rng.standard_normal(shape[0])).astype(np.float32)]
    return out


def _write_model(path, weights, legacy=False, packed=True) -> None:
    layers = [_layer("data", "Input"), _layer("relu0", "ReLU")]
    for name, blobs in weights.items():
        enc = [_blob(b, packed=packed, legacy=legacy) for b in blobs]
        if legacy:
            layers.append(_v1_layer(name, 4 if name.startswith("conv") else 14, enc))
        else:
            layers.append(_layer(name, "Convolution" if name.startswith("conv") else "InnerProduct", enc))
    path.write_bytes(_net(*layers))


# ----------------------------------------------------------------------------- brute-force Caffe


def _caffe_conv(x, w, b):  # x (C, H, W), w (O, C, kh, kw): Caffe cross-correlation, VALID
    kh, kw = w.shape[2:]
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((w.shape[0], oh, ow))
    for a in range(kh):
        for c in range(kw):
            out += np.einsum("oi,ihw->ohw", w[:, :, a, c], x[:, a : a + oh, c : c + ow])
    return out + b[:, None, None]


def _caffe_pool(x, k=3, s=3):  # ceil mode, windows clipped at the border
    oh, ow = (math.ceil((d - k) / s) + 1 for d in x.shape[1:])
    out = np.empty((x.shape[0], oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = x[:, i * s : i * s + k, j * s : j * s + k].max(axis=(1, 2))
    return out


def _caffe_net(blobs, hand_u8, patch):
    """One sample through the released network in Caffe conventions (float64)."""
    b = {k: [np.asarray(v, np.float64) for v in vs] for k, vs in blobs.items()}
    relu = lambda z: np.maximum(z, 0.0)  # noqa: E731
    x = np.asarray(patch, np.float64).transpose(2, 1, 0)  # matcaffe: Caffe's height axis = our columns
    x = _caffe_pool(relu(_caffe_conv(x, *b["conv1"])))
    x = _caffe_pool(relu(_caffe_conv(x, *b["conv2"])))
    x = relu(_caffe_conv(relu(_caffe_conv(x, *b["conv3"])), *b["conv4"]))
    v = np.concatenate([hand_u8, x.ravel()])
    for name in ("fc1", "fc2", "fc3"):
        w, bias = b[name]
        v = relu(w.reshape(bias.size, -1) @ v + bias.ravel())
    e = np.exp(v - v.max())
    return e / e.sum()


def _inputs(rng, n):
    hand = rng.uniform(0.0, 1.0, (n, 120)).astype(np.float32)
    patches = rng.integers(0, 256, (n, 27, 27, 3)).astype(np.float32)
    return hand, patches


# ----------------------------------------------------------------------------- reader


def test_reader_new_style_packed(tmp_path, rng):
    w = rng.standard_normal((4, 3, 2, 5)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    fc = rng.standard_normal((7, 6)).astype(np.float32)
    extra = _key(9, 1) + b"\x00" * 8 + _key(10, 5) + b"\x00" * 4 + _vfield(11, 300)  # unknown fields
    path = tmp_path / "a.caffemodel"
    path.write_bytes(_net(_layer("in", "Input"), _layer("c", "Convolution", [_blob(w), _blob(bias)], extra),
                          _layer("r", "ReLU"), _layer("f", "InnerProduct", [_blob(fc, shape_last=True)])))
    got = read_caffemodel(path)
    assert list(got) == ["c", "f"]
    np.testing.assert_array_equal(got["c"][0], w)
    np.testing.assert_array_equal(got["c"][1], bias)
    np.testing.assert_array_equal(got["f"][0], fc)
    layers = read_caffemodel_layers(path)
    assert [(l.name, l.type, len(l.blobs)) for l in layers] == [
        ("in", "Input", 0), ("c", "Convolution", 2), ("r", "ReLU", 0), ("f", "InnerProduct", 1)]


def test_reader_legacy_unpacked_double(tmp_path, rng):
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((5, 4)).astype(np.float32)
    d = rng.standard_normal(6)
    v0 = _ld(1, _ld(1, "old") + _ld(2, "innerproduct") + _ld(50, _blob(d[:2], double=True)))
    path = tmp_path / "legacy.caffemodel"
    path.write_bytes(_net(
        _v1_layer("conv", 4, [_blob(w, packed=False, legacy=True)]),
        _v1_layer("fc", 14, [_blob(fc, legacy=True), _blob(d, double=True, packed_dims=False)]),
        _v1_layer("relu", 18), _ld(2, v0)))
    layers = read_caffemodel_layers(path)
    assert [(l.name, l.type) for l in layers] == [("conv", "Convolution"), ("fc", "InnerProduct"),
                                                   ("relu", "ReLU"), ("old", "innerproduct")]
    got = read_caffemodel(path)
    np.testing.assert_array_equal(got["conv"][0], w)
    assert got["fc"][0].shape == (1, 1, 5, 4)  # legacy dims are always 4-D
    np.testing.assert_array_equal(got["fc"][0][0, 0], fc)
    np.testing.assert_allclose(got["fc"][1], d.astype(np.float32))
    assert got["fc"][1].dtype == np.float32
    np.testing.assert_allclose(got["old"][0], d[:2].astype(np.float32))


def test_reader_blob_size_mismatch(tmp_path):
    bad = _ld(7, _ld(1, _vint(2) + _vint(3))) + _ld(5, np.zeros(5, "<f4").tobytes())
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(_net(_layer("x", "Convolution", [bad])))
    with pytest.raises(ValueError, match=r"5 values but shape \(2, 3\)"):
        read_caffemodel(path)


def test_reader_negative_dims(tmp_path):
    minus_one = 2**64 - 1  # protobuf encodes negative int32/int64 as 10-byte varints
    for i, blob in enumerate([_vfield(1, minus_one) + _vfield(2, 2) + _ld(5, b""),
                              _ld(7, _ld(1, _vint(minus_one) + _vint(2))) + _ld(5, b"")]):
        path = tmp_path / f"neg{i}.caffemodel"
        path.write_bytes(_net(_layer("x", "Convolution", [blob])))
        with pytest.raises(ValueError, match="negative"):
            read_caffemodel(path)


def test_reader_duplicate_names(tmp_path):
    path = tmp_path / "dup.caffemodel"
    path.write_bytes(_net(_layer("x", "A", [_blob(np.ones(2))]), _layer("x", "A", [_blob(np.ones(2))])))
    with pytest.raises(ValueError, match="two layers"):
        read_caffemodel(path)


def _corrupt_files(tmp_path, rng):
    good = tmp_path / "good.caffemodel"
    _write_model(good, _random_weights(rng))
    data = good.read_bytes()
    files = {"missing": tmp_path / "nope.caffemodel", "directory": tmp_path}
    for name, content in {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "truncated_tail": data[:-3],
        "bad_wire_type": _key(100, 3) + b"\x00",
        "varint_overflow": b"\x08" + b"\xff" * 12,
        "no_blobs": _net(_layer("relu", "ReLU")),
        "text": b"name: 'DHDE'\nlayer { name: 'conv1' }\n",
        **{f"random{i}": rng.integers(0, 256, 2000, dtype=np.uint8).tobytes() for i in range(4)},
    }.items():
        files[name] = tmp_path / f"{name}.caffemodel"
        files[name].write_bytes(content)
    from PIL import Image

    files["png"] = tmp_path / "image.png"
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(files["png"])
    return files


def test_reader_rejects_corrupt_files(tmp_path, rng):
    for name, path in _corrupt_files(tmp_path, rng).items():
        with pytest.raises(ValueError) as info:
            read_caffemodel(path)
        assert str(path) in str(info.value), name
        with pytest.raises(ValueError):
            import_caffe_model(path)


# ----------------------------------------------------------------------------- importer


def _check_conversion(model: ImportedModel, weights) -> None:
    for name, (group, shape) in RELEASED_LAYERS.items():
        w, b = np.reshape(weights[name][0], shape), np.reshape(weights[name][1], shape[0])
        p = model.params[group][name]
        assert p["kernel"].dtype == jnp.float32
        if group == "deep":
            o, i, kh, kw = w.shape
            for a in range(kh):  # kernel[a, b, i, o] = W[o, i, b, a] (spatial axes swapped)
                for c in range(kw):
                    np.testing.assert_array_equal(p["kernel"][a, c], w[:, :, c, a].T)
        else:
            np.testing.assert_array_equal(p["kernel"], w.T)
        np.testing.assert_array_equal(p["bias"], b)


@pytest.mark.parametrize("legacy,packed", [(False, True), (True, False)])
def test_import_synthetic(tmp_path, rng, legacy, packed):
    weights = _random_weights(rng)
    path = tmp_path / "m.caffemodel"
    _write_model(path, weights, legacy=legacy, packed=packed)
    model = import_caffe_model(path)
    _check_conversion(model, weights)
    assert (model.feature_set, model.encoding, model.feature_scale) == ("B", "separate", 255.0)
    assert model.quantize_uint8 and model.relu_logits and model.source == str(path)
    leaves = jax.tree.leaves(model)
    assert len(leaves) == 14 and sum(x.size for x in leaves) == RELEASED_PARAM_COUNT
    doubled = jax.tree.map(lambda x: 2 * x, model)
    assert isinstance(doubled, ImportedModel) and doubled.source == model.source


def test_import_rejects_wrong_architecture(tmp_path, rng):
    weights = _random_weights(rng)
    cases = {
        "fc1": dict(weights, fc1=[np.zeros((300, 144), np.float32), np.zeros(300, np.float32)]),
        "conv2": dict(weights, conv2=[np.zeros((50, 25, 5, 5), np.float32), np.zeros(50, np.float32)]),
        "fc3.*1 blobs": dict(weights, fc3=[weights["fc3"][0]]),
        "missing layers \\['conv4'\\]": {k: v for k, v in weights.items() if k != "conv4"},
        "unexpected layers with weights \\['conv5'\\]": dict(weights, conv5=weights["conv4"]),
    }
    for i, (pattern, w) in enumerate(cases.items()):
        path = tmp_path / f"w{i}.caffemodel"
        _write_model(path, w)
        with pytest.raises(ValueError, match=pattern) as info:
            import_caffe_model(path)
        assert str(path) in str(info.value)
    with pytest.raises(ValueError, match=r"\(300, 144\)"):
        import_caffe_model(tmp_path / "w0.caffemodel")


def test_transposition_convention(rng):
    """Our conv with the imported kernel on a patch == Caffe's conv on the transposed patch, transposed."""
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)  # not symmetric: a wrong swap fails
    b = rng.standard_normal(4).astype(np.float32)
    patch = rng.uniform(0, 255, (9, 11, 3)).astype(np.float32)  # not square: a wrong axis fails
    kernel = jnp.asarray(w.transpose(3, 2, 1, 0))  # the importer's conversion
    ours = np.asarray(_conv_relu(jnp.asarray(patch)[None], {"kernel": kernel, "bias": jnp.asarray(b)}))[0]
    caffe = np.maximum(_caffe_conv(patch.transpose(2, 1, 0).astype(np.float64), w, b), 0)  # (O, W', H')
    np.testing.assert_allclose(ours, caffe.transpose(2, 1, 0), rtol=1e-5, atol=1e-3)
    unswapped = np.asarray(_conv_relu(jnp.asarray(patch)[None], {"kernel": jnp.asarray(w.transpose(2, 3, 1, 0)),
                                                                 "bias": jnp.asarray(b)}))[0]
    assert np.abs(unswapped - caffe.transpose(2, 1, 0)).max() > 1.0


# ----------------------------------------------------------------------------- forward


def test_matlab_uint8():
    x = np.array([-3.0, -0.5, 0.0, 0.49, 0.5, 1.5, 2.5, 254.5, 254.49, 300.0, np.nan], np.float32)
    want = np.array([0, 0, 0, 0, 1, 2, 3, 255, 254, 255, 0], np.float32)
    np.testing.assert_array_equal(np.asarray(matlab_uint8(x)), want)
    x = np.random.default_rng(1).uniform(0, 255, 1000).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(matlab_uint8(x)), np.floor(x.astype(np.float64) + 0.5))


def _both_forwards(model: ImportedModel, hand, patches) -> list[np.ndarray]:
    """(N, 11) probabilities of the reference forward and of the dhde model made by ``to_model``."""
    return [np.asarray(imported_forward(model.params, hand, patches)),
            np.asarray(model.to_model().probabilities(jnp.asarray(hand), jnp.asarray(patches)))]


def test_forward_matches_bruteforce_caffe(tmp_path, rng):
    weights = _random_weights(rng)
    path = tmp_path / "m.caffemodel"
    _write_model(path, weights)
    model = import_caffe_model(path)
    hand, patches = _inputs(rng, 3)
    hand[0, :5] = np.array([0.5, 1.5, 2.5, 3.5, 0.49]) / 255.0  # rounding boundaries
    for probs in _both_forwards(model, hand, patches):
        assert probs.shape == (3, 11) and probs.dtype == np.float32
        assert probs.max() < 0.99  # the comparison is not a trivial one-hot
        for n in range(3):
            hand_u8 = np.floor(hand[n].astype(np.float64) * np.float32(255) + 0.5).clip(0, 255)
            np.testing.assert_allclose(probs[n], _caffe_net(weights, hand_u8, patches[n]), rtol=1e-4, atol=1e-6)


def test_forward_properties(tmp_path, rng):
    path = tmp_path / "m.caffemodel"
    _write_model(path, _random_weights(rng))
    params = import_caffe_model(path).params
    hand, patches = _inputs(rng, 4)
    eager = np.asarray(imported_forward(params, hand, patches))
    np.testing.assert_allclose(eager.sum(axis=1), 1.0, rtol=1e-5)
    assert (eager >= 0).all()
    jitted = np.asarray(jax.jit(imported_forward)(params, hand, patches))
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-7)
    with jax.disable_jit():
        np.testing.assert_allclose(np.asarray(imported_forward(params, hand, patches)), eager, rtol=1e-4, atol=1e-6)
    looped = np.concatenate([np.asarray(imported_forward(params, hand[i : i + 1], patches[i : i + 1]))
                             for i in range(4)])
    np.testing.assert_allclose(looped, eager, rtol=1e-5, atol=1e-7)
    # no recompilation on a second call with new values of the same shape
    before = _imported_forward._cache_size()
    imported_forward(params, hand + 0.01, patches + 1.0)
    assert _imported_forward._cache_size() == before
    # the options change the result
    plain = np.asarray(imported_forward(params, hand, patches, quantize_uint8=False, relu_logits=False))
    assert np.abs(plain - eager).max() > 1e-4
    assert imported_forward(params, hand[:0], patches[:0]).shape == (0, 11)


def test_forward_rejects_bad_input(tmp_path, rng):
    path = tmp_path / "m.caffemodel"
    _write_model(path, _random_weights(rng))
    params = import_caffe_model(path).params
    hand, patches = _inputs(rng, 2)
    bad = [
        ((hand[:, :119], patches), "hand_features must have shape"),
        ((hand[0], patches), "hand_features must have shape"),
        ((hand, patches[:, :26]), "cnn_patches must have shape"),
        ((hand, patches[..., 0]), "cnn_patches must have shape"),
        ((hand[:1], patches), "1 rows but cnn_patches has 2"),
        ((np.where(np.eye(2, 120) > 0, np.nan, hand), patches), "NaN"),
        ((hand, np.full_like(patches, np.inf)), "NaN or infinite"),
    ]
    for args, pattern in bad:
        with pytest.raises(ValueError, match=pattern):
            imported_forward(params, *args)
    with pytest.raises(TypeError, match="dtype"):
        imported_forward(params, hand.astype(np.complex64), patches)
    wrong = jax.tree.map(lambda x: x, params)
    wrong["classifier"]["fc1"] = {"kernel": jnp.zeros((144, 300)), "bias": jnp.zeros(300)}
    with pytest.raises(ValueError, match=r"'fc1'.*\(144, 300\)"):
        imported_forward(wrong, hand, patches)
    with pytest.raises(ValueError, match="DHDE layout"):
        imported_forward({"deep": params["deep"]}, hand, patches)


# ----------------------------------------------------------------------------- the released model


def test_released_model(shared_data, tmp_path):
    path = shared_data / MODEL
    blobs = read_caffemodel(path)
    assert {k: [b.shape for b in v] for k, v in blobs.items()} == {
        "conv1": [(25, 3, 3, 3), (25,)], "conv2": [(50, 25, 3, 3), (50,)], "conv3": [(50, 50, 3, 3), (50,)],
        "conv4": [(25, 50, 1, 1), (25,)], "fc1": [(300, 145), (300,)], "fc2": [(150, 300), (150,)],
        "fc3": [(11, 150), (11,)]}
    assert sum(b.size for v in blobs.values() for b in v) == RELEASED_PARAM_COUNT == 126_436
    names = [l.name for l in read_caffemodel_layers(path)]
    assert names.index("conv1") < names.index("conv4") < names.index("fc1") < names.index("fc3")
    np.testing.assert_array_equal(blobs["fc1"][1], 0.0)  # fc1's bias is frozen at 0
    model = import_caffe_model(path)
    _check_conversion(model, blobs)
    assert model.source == str(path)
    # the real weights through our forward == brute-force Caffe, on patches of a real image
    from PIL import Image

    img = np.asarray(Image.open(shared_data / "dhde-original/training_0001.jpg").convert("RGB"), np.float32)
    patches = np.stack([img[100:127, 200:227], img[150:177, 30:57]])
    rng = np.random.default_rng(3)
    hand = np.zeros((2, 120), np.float32)
    for k in range(3):  # plausible scale-encoded features: large-scale slots, constant 1
        f = rng.uniform(0.0, 1.0, (2, 25))
        hand[:, 40 * k : 40 * k + 25] = f / f.sum(axis=1, keepdims=True)
        hand[:, 40 * k + 25] = 1.0
    for probs in _both_forwards(model, hand, patches):
        for n in range(2):
            hand_u8 = np.floor(hand[n].astype(np.float64) * np.float32(255) + 0.5).clip(0, 255)
            np.testing.assert_allclose(probs[n], _caffe_net(blobs, hand_u8, patches[n]), rtol=1e-4, atol=1e-6)
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(path.read_bytes()[:300_000])
    with pytest.raises(ValueError, match="truncated"):
        read_caffemodel(truncated)
