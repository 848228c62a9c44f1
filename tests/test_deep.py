"""DeepFeature vs a lax.conv reference and a NumPy brute-force loop written here."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dhde.model import cnn as D


def _params(seed=0):
    """Random parameters with ReLUs about half active (so that the test can fail)."""
    rng = np.random.default_rng(seed)
    p = {}
    for name, k, cin, cout in D.LAYERS:
        scale = 1.0 / np.sqrt(k * k * cin) / (255.0 if name == "conv1" else 1.0)
        p[name] = {"kernel": jnp.asarray(rng.normal(0, 2 * scale, (k, k, cin, cout)), jnp.float32),
                   "bias": jnp.asarray(rng.normal(0, 0.3, cout), jnp.float32)}
    return {"params": p}


def _patches(n, seed=1):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (n, 27, 27, 3)), jnp.float32)


class _NNConvRef(nn.Module):
    """The straightforward flax network, with the same submodule names."""

    @nn.compact
    def __call__(self, x):
        def pool(h):  # Caffe ceil mode: pad with -inf at the bottom/right, then floor-mode pool
            pad = -(h.shape[1] - 3) % 3
            h = jnp.pad(h, ((0, 0), (0, pad), (0, pad), (0, 0)), constant_values=-jnp.inf)
            return nn.max_pool(h, (3, 3), strides=(3, 3))

        x = pool(nn.relu(nn.Conv(25, (3, 3), padding="VALID", name="conv1")(x)))
        x = pool(nn.relu(nn.Conv(50, (3, 3), padding="VALID", name="conv2")(x)))
        x = nn.relu(nn.Conv(50, (3, 3), padding="VALID", name="conv3")(x))
        x = nn.relu(nn.Conv(25, (1, 1), padding="VALID", name="conv4")(x))
        return x.reshape(x.shape[0], -1)


def _lax_reference(params, x):
    p = params["params"]

    def conv(h, name):
        y = lax.conv_general_dilated(h, p[name]["kernel"], (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=lax.Precision.HIGHEST)
        return jnp.maximum(y + p[name]["bias"], 0.0)

    def pool(h):
        pad = -(h.shape[1] - 3) % 3
        return lax.reduce_window(h, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 3, 3, 1),
                                 ((0, 0), (0, pad), (0, pad), (0, 0)))

    h = pool(conv(x, "conv1"))
    h = pool(conv(h, "conv2"))
    return conv(conv(h, "conv3"), "conv4").reshape(x.shape[0], 25)


def _numpy_bruteforce(params, x):
    p = {k: {a: np.asarray(b, np.float64) for a, b in v.items()} for k, v in params["params"].items()}
    out = []
    for img in np.asarray(x, np.float64):
        h = img
        for name in ("conv1", "pool", "conv2", "pool", "conv3", "conv4"):
            if name == "pool":  # ceil mode: windows start at 0, 3, 6, ... while start < size
                starts = range(0, h.shape[0], 3)
                h = np.array([[h[i:i + 3, j:j + 3].max(axis=(0, 1)) for j in starts] for i in starts])
                continue
            k = p[name]["kernel"]
            kh = k.shape[0]
            size = h.shape[0] - kh + 1
            y = np.zeros((size, size, k.shape[3]))
            for i in range(size):
                for j in range(size):
                    for o in range(k.shape[3]):
                        y[i, j, o] = np.sum(h[i:i + kh, j:j + kh, :] * k[:, :, :, o]) + p[name]["bias"][o]
            h = np.maximum(y, 0.0)
        out.append(h.reshape(-1))
    return np.array(out)


def test_params_identical_to_nn_conv():
    x = jnp.zeros((2, 27, 27, 3))
    ours = jax.eval_shape(D.DeepFeature().init, jax.random.key(3), x)
    ref = jax.eval_shape(_NNConvRef().init, jax.random.key(3), x)
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), ours) == jax.tree.map(lambda a: (a.shape, a.dtype), ref)
    shapes = {k: v["kernel"].shape for k, v in ours["params"].items()}
    assert shapes == {"conv1": (3, 3, 3, 25), "conv2": (3, 3, 25, 50), "conv3": (3, 3, 50, 50),
                      "conv4": (1, 1, 50, 25)}
    # Same initialisers as nn.Conv: identical values from the same key (one small layer is enough).
    a = D._ConvParams(25, 1, 50).init(jax.random.key(1))
    b = nn.Conv(25, (1, 1)).init(jax.random.key(1), jnp.zeros((1, 1, 1, 50)))
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


@pytest.mark.parametrize("impl, chunk", [("auto", 128), ("fast", 4), ("fast", 0), ("conv", 128)])
def test_matches_lax_reference(impl, chunk):
    params = _params()
    x = _patches(11)
    out = jax.jit(D.DeepFeature(impl=impl, chunk=chunk).apply)(params, x)
    ref = jax.jit(_lax_reference)(params, x)
    assert out.shape == (11, 25) and out.dtype == jnp.float32
    r = np.asarray(ref)
    assert 0.2 < (r > 0).mean() < 0.9  # a meaningful test: some units on, some off
    np.testing.assert_allclose(np.asarray(out), r, rtol=1e-5, atol=1e-5 * np.abs(r).max())


def test_matches_flax_nn_conv_module():
    params = _params(5)
    x = _patches(6, seed=7)
    np.testing.assert_allclose(np.asarray(jax.jit(D.DeepFeature().apply)(params, x)),
                               np.asarray(jax.jit(_NNConvRef().apply)(params, x)), rtol=1e-5, atol=1e-5)


def test_matches_numpy_bruteforce():
    params = _params(2)
    x = _patches(2, seed=4)
    ref = _numpy_bruteforce(params, x)
    for impl in ("fast", "conv"):
        out = np.asarray(jax.jit(D.DeepFeature(impl=impl).apply)(params, x))
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_ceil_pool_uses_the_last_row():
    """The last pooling window covers only row/column 24: a peak there must survive."""
    x = jnp.zeros((1, 25, 25, 1)).at[0, 24, 24, 0].set(5.0)
    y = D.max_pool_ceil(x)
    assert y.shape == (1, 9, 9, 1) and float(y[0, 8, 8, 0]) == 5.0
    assert D.max_pool_ceil(jnp.zeros((1, 7, 7, 2))).shape == (1, 3, 3, 2)


def test_ceil_pool_matches_loop_and_reduce_window_gradient():
    rng = np.random.default_rng(5)
    for h, w in [(25, 25), (7, 7), (9, 8), (4, 11)]:
        x = rng.normal(size=(2, h, w, 3)).astype(np.float32)
        ho, wo = -(-(h - 3) // 3) + 1, -(-(w - 3) // 3) + 1
        ref = np.empty((2, ho, wo, 3), np.float32)
        for i in range(ho):
            for j in range(wo):  # the window clipped to the image (Caffe ceil mode)
                ref[:, i, j] = x[:, 3 * i:3 * i + 3, 3 * j:3 * j + 3].max(axis=(1, 2))
        np.testing.assert_array_equal(np.asarray(D.max_pool_ceil(jnp.asarray(x))), ref)

        def rw(v):  # the reduce_window form (the gradient reference, unique maxima here)
            return lax.reduce_window(v, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 3, 3, 1),
                                     ((0, 0), (0, -(h - 3) % 3), (0, -(w - 3) % 3), (0, 0)))

        cot = jnp.asarray(rng.normal(size=ref.shape).astype(np.float32))
        g = jax.grad(lambda v: jnp.sum(D.max_pool_ceil(v) * cot))(jnp.asarray(x))
        g_ref = jax.grad(lambda v: jnp.sum(rw(v) * cot))(jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-6)


def test_jit_equals_eager_and_no_recompile():
    params = _params()
    model = D.DeepFeature(chunk=4)
    x = _patches(9)
    eager = model.apply(params, x)
    f = jax.jit(model.apply)
    np.testing.assert_allclose(np.asarray(f(params, x)), np.asarray(eager), rtol=1e-6, atol=1e-6)
    f(params, x * 0.5)
    assert f._cache_size() == 1


def test_vmap_equals_loop():
    params = _params()
    x = _patches(6).reshape(3, 2, 27, 27, 3)
    apply = jax.jit(D.DeepFeature().apply)
    f = jax.jit(jax.vmap(lambda b: apply(params, b)))
    loop = np.stack([np.asarray(apply(params, b)) for b in x])
    np.testing.assert_allclose(np.asarray(f(x)), loop, rtol=1e-6, atol=1e-6)


def test_gradients_agree():
    params = _params()
    x = _patches(5)

    def loss(p, impl):
        return jnp.sum(D.DeepFeature(impl=impl, chunk=2).apply(p, x) ** 2)

    g_fast = jax.jit(jax.grad(loss), static_argnums=1)(params, "fast")
    g_conv = jax.jit(jax.grad(loss), static_argnums=1)(params, "conv")
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_conv)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4 * np.abs(np.asarray(b)).max())


def test_uint8_input_accepted():
    params = _params()
    x = _patches(3)
    apply = jax.jit(D.DeepFeature().apply)
    np.testing.assert_allclose(np.asarray(apply(params, np.asarray(x, np.uint8))),
                               np.asarray(apply(params, x)), rtol=1e-6)


@pytest.mark.parametrize("shape", [(27, 27, 3), (2, 15, 15, 3), (2, 27, 27, 1), (0, 27, 27, 3), (2, 27, 28, 3)])
def test_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"\(N, 27, 27, 3\)"):
        jax.eval_shape(D.DeepFeature().init, jax.random.key(0), jnp.zeros(shape))


def test_bad_options():
    x = jnp.zeros((1, 27, 27, 3))
    with pytest.raises(ValueError, match="impl"):
        jax.eval_shape(D.DeepFeature(impl="winograd").init, jax.random.key(0), x)
    with pytest.raises(ValueError, match="chunk"):
        jax.eval_shape(D.DeepFeature(chunk=-1).init, jax.random.key(0), x)
    with pytest.raises(TypeError, match="real-valued"):
        jax.eval_shape(D.DeepFeature().init, jax.random.key(0), jnp.zeros((1, 27, 27, 3), bool))
