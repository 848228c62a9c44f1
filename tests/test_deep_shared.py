"""Shared first layer of the CNN: against the per-patch network (lax.conv reference), borders,
jit, no recompilation, and classify_edges with and without sharing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dhde.estimation import classify
from dhde.estimation.classify import classify_edges
from dhde.model import cnn as deep
from dhde.model import cnn_shared as deep_shared
from dhde.model.cnn import DeepFeature
from dhde.model.network import ModelConfig, init_model
from dhde.filters.patches import extract_patches, pad_small_to_large


@pytest.fixture(scope="module")
def params():
    return DeepFeature(impl="conv").init(jax.random.key(3), jnp.zeros((1, 27, 27, 3)))["params"]


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(np.round(rng.random((h, w, 3)) * 255), jnp.float32)


def _coords(h, w, n, seed=1):
    rng = np.random.default_rng(seed)
    c = np.stack([rng.integers(0, h, n), rng.integers(0, w, n)], 1)
    corners = [[0, 0], [h - 1, w - 1], [0, w - 1], [h - 1, 0], [h // 2, 0], [0, w // 2]]
    return jnp.asarray(np.concatenate([corners, c]), jnp.int32)


def _pool1_loop(conv1):
    """Caffe ceil-mode 3x3/3 max pool of (25, 25, C), written as a loop."""
    out = np.zeros((9, 9, conv1.shape[-1]), np.float32)
    for u in range(9):
        for v in range(9):
            out[u, v] = conv1[3 * u : 3 * u + 3, 3 * v : 3 * v + 3].max(axis=(0, 1))
    return out


def _conv1_loop(p, patch):
    """VALID 3x3 conv + bias + ReLU of a (27, 27, 3) patch, NumPy."""
    k, b = np.asarray(p["conv1"]["kernel"]), np.asarray(p["conv1"]["bias"])
    out = np.zeros((25, 25, k.shape[-1]), np.float32)
    for y in range(25):
        for x in range(25):
            out[y, x] = np.tensordot(patch[y : y + 3, x : x + 3], k, axes=3)
    return np.maximum(out + b, 0)


@pytest.mark.parametrize("shape", [(20, 23), (5, 7), (1, 1)])
def test_large_pool1_matches_numpy_loop(params, shape):
    img = _image(*shape)
    co = _coords(*shape, 5)
    got = np.asarray(jax.jit(deep_shared.large_pool1_at)(deep_shared.pool1_maps(params, img), co))
    patches = np.asarray(extract_patches(img, co, 27))
    for i in range(co.shape[0]):
        ref = _pool1_loop(_conv1_loop(params, patches[i]))
        np.testing.assert_allclose(got[i], ref, rtol=1e-5, atol=1e-3)


def test_small_pool1_matches_numpy_loop(params):
    sm = np.asarray(extract_patches(_image(30, 30), _coords(30, 30, 4), 15))
    got = np.asarray(deep_shared.small_pool1(params, jnp.asarray(sm)))
    for i in range(sm.shape[0]):
        ref = _pool1_loop(_conv1_loop(params, np.asarray(pad_small_to_large(sm[i : i + 1]))[0]))
        np.testing.assert_allclose(got[i], ref, rtol=1e-5, atol=1e-3)


def test_features_match_deep_feature(params):
    h, w = 41, 37
    img = _image(h, w, 2)
    co = _coords(h, w, 150)
    ref_net = jax.jit(lambda x: DeepFeature(impl="conv").apply({"params": params}, x))
    large = deep_shared.deep_feature_large_at(params, deep_shared.pool1_maps(params, img), co, chunk=64)
    np.testing.assert_allclose(large, ref_net(extract_patches(img, co, 27)), rtol=1e-4, atol=1e-3)
    sm = extract_patches(img, co, 15)
    small = jax.jit(deep_shared.deep_feature_small, static_argnames="chunk")(params, sm, chunk=64)
    np.testing.assert_allclose(small, ref_net(pad_small_to_large(sm)), rtol=1e-4, atol=1e-3)
    # the fast per-patch path gives the same bits (same matmuls)
    np.testing.assert_array_equal(small, deep._forward_fast(params, pad_small_to_large(sm), 64))


def test_pool1_maps_no_recompile_and_errors(params):
    deep_shared.pool1_maps(params, _image(12, 13))
    n = deep_shared._pool1_maps._cache_size()
    deep_shared.pool1_maps(params, _image(12, 13, seed=5))
    assert deep_shared._pool1_maps._cache_size() == n
    with pytest.raises(ValueError, match="image255"):
        deep_shared.pool1_maps(params, jnp.zeros((12, 13)))
    maps = deep_shared.pool1_maps(params, _image(12, 13))
    with pytest.raises(ValueError, match="coords"):
        deep_shared.deep_feature_large_at(params, maps, jnp.zeros((4, 3), jnp.int32))
    with pytest.raises(ValueError, match="coords"):
        deep_shared.large_pool1_at(maps, jnp.zeros((4, 2), jnp.float32))
    with pytest.raises(ValueError, match="15, 15, 3"):
        deep_shared.deep_feature_small(params, jnp.zeros((4, 27, 27, 3)))


def _scene(h=40, w=48, seed=0):
    rng = np.random.default_rng(seed)
    img = np.tile(np.linspace(0.2, 0.8, w, dtype=np.float32), (h, 1))[..., None].repeat(3, -1)
    for _ in range(6):
        r, c = rng.integers(0, h - 10), rng.integers(0, w - 10)
        img[r : r + rng.integers(5, 15), c : c + rng.integers(5, 15)] = rng.random(3)
    return jnp.asarray(img)


@pytest.mark.parametrize("cfg", [dict(), dict(small_padding="zero"), dict(encoding="single_scale")])
def test_classify_shared_equals_per_patch(cfg, monkeypatch):
    model = init_model(ModelConfig(feature_set="B", **cfg), jax.random.key(1))
    img = _scene()
    rng = np.random.default_rng(0)
    scales = jnp.asarray(rng.choice([0, 0, 1, 2], size=img.shape[:2]), jnp.int32)
    run = jax.jit(classify_edges, static_argnums=(3, 4))
    ref = run(img, scales, model, 64, False)
    np.testing.assert_allclose(run(img, scales, model, 64, True), ref, atol=1e-6)
    # above the size limit large patches fall back to the per-patch network
    monkeypatch.setattr(classify, "SHARED_MAX_PIXELS", 0)
    np.testing.assert_allclose(jax.jit(classify_edges, static_argnums=(3, 4))(img, scales, model, 64, True), ref,
                               atol=1e-6)
