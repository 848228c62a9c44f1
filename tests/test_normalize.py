"""Per-patch contrast normalisation (model option normalize="patch"): reference, invariance, jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dhde.features.pipeline import (
    NORMALIZE_FLOOR, cnn_input, context_cnn, context_hand, normalize_context, patch_bins, scale_features,
)
from dhde.model.network import ModelConfig


def _ref(ctx, floor=NORMALIZE_FLOOR, over="value"):
    out = np.empty_like(ctx)
    for n in range(len(ctx)):
        v = ctx[n, 1:-1, 1:-1].max(-1) if over == "value" else ctx[n, 1:-1, 1:-1]
        out[n] = (ctx[n] - v.min()) / max(v.max() - v.min(), floor)
    return out


def test_rgb_normalisation_keeps_the_cnn_input_in_range(rng):
    x = _patches(rng)
    x[1, ..., 0] = 0.0  # a saturated patch: red far below the value channel's minimum
    x[1, ..., 2] = 0.9 + 0.02 * rng.random((29, 29)).astype(np.float32)
    got = np.asarray(normalize_context(jnp.asarray(x), over="rgb"))
    np.testing.assert_allclose(got, _ref(x, over="rgb"), rtol=1e-5, atol=1e-6)
    inner = got[:, 1:-1, 1:-1]
    assert inner.min() >= -1e-6 and inner.max() <= 1 + 1e-6
    # the value-channel variant throws red far below zero (what killed the first normalised CNN)
    assert np.asarray(normalize_context(jnp.asarray(x)))[1, 1:-1, 1:-1, 0].min() < -10
    c = np.asarray(cnn_input(jnp.asarray(x), normalize="patch"))
    assert c.min() >= 0 and c.max() <= 255
    np.testing.assert_array_equal(c, np.round(_ref(x, over="rgb")[:, 1:-1, 1:-1] * 255))
    with pytest.raises(ValueError, match="over"):
        normalize_context(jnp.asarray(x), over="hsv")


def _patches(rng, n=6, side=29):
    base = rng.random((n, side, side, 3)).astype(np.float32) * 0.5 + 0.25
    return base


def test_normalize_matches_loop_and_jit(rng):
    x = _patches(rng)
    x[0] = 0.5  # a flat patch: divided by the floor, not by zero
    got = np.asarray(normalize_context(jnp.asarray(x)))
    np.testing.assert_allclose(got, _ref(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.jit(normalize_context)(jnp.asarray(x))), got, atol=1e-6)
    v = got[1:, 1:-1, 1:-1].max(-1)
    np.testing.assert_allclose(v.min(axis=(1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(v.max(axis=(1, 2)), 1, atol=1e-6)
    assert np.isfinite(got[0]).all()
    # vmap over a batch axis == a loop
    vm = jax.vmap(normalize_context)(jnp.asarray(x).reshape(2, 3, 29, 29, 3))
    np.testing.assert_allclose(np.asarray(vm).reshape(got.shape), got, atol=1e-6)


@pytest.mark.parametrize("gain,offset", [(0.25, 0.0), (0.1, 0.05), (0.5, -0.1)])
def test_features_invariant_to_exposure(rng, gain, offset):
    x = _patches(rng)
    y = x * gain + offset + 0.3  # still positive
    for side in (29, 17):
        xs, ys = x[:, :side, :side], y[:, :side, :side]
        a = patch_bins(jnp.asarray(xs), ("D", "G", "S"), normalize="patch")
        b = patch_bins(jnp.asarray(ys), ("D", "G", "S"), normalize="patch")
        for k in a:
            np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), atol=2e-4)
        # the unnormalised features do move (the test can fail)
        a0 = patch_bins(jnp.asarray(xs), ("G",))["G"]
        b0 = patch_bins(jnp.asarray(ys), ("G",))["G"]
        assert np.abs(np.asarray(a0) - np.asarray(b0)).max() > 1e-2
    ca = cnn_input(jnp.asarray(x), normalize="patch")
    cb = cnn_input(jnp.asarray(y), normalize="patch")
    assert np.abs(np.asarray(ca) - np.asarray(cb)).max() <= 1.0  # rounding to 0..255 only


def test_model_option_reaches_both_paths(rng):
    cfg = ModelConfig(normalize="patch")
    x = jnp.asarray(_patches(rng, 4))
    train_hand, train_cnn = context_hand(x, jnp.zeros(4, bool), cfg), context_cnn(x, jnp.zeros(4, bool), cfg)
    f_inf = scale_features(x, False, cfg)
    np.testing.assert_allclose(np.asarray(train_hand), np.asarray(f_inf.hand), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(train_cnn), np.asarray(f_inf.cnn))
    plain = scale_features(x, False, ModelConfig())
    assert np.abs(np.asarray(plain.hand) - np.asarray(f_inf.hand)).max() > 1e-3
    with pytest.raises(ValueError, match="normalize"):
        ModelConfig(normalize="yes")
    with pytest.raises(ValueError, match="normalize"):
        patch_bins(x, ("D",), normalize="bad")


def test_normalized_model_classifies_without_shared_layer(rng):
    from dhde.estimation.classify import classify_edges
    from dhde.model.network import init_model

    model = init_model(ModelConfig(normalize="patch"), jax.random.key(0))
    img = jnp.asarray(rng.random((40, 44, 3)).astype(np.float32))
    scales = jnp.zeros((40, 44), jnp.int32).at[10:30:5, 12].set(1).at[20, 20:30:3].set(2)
    a = classify_edges(img, scales, model, chunk=8)
    b = classify_edges(img, scales, model, chunk=8, shared_first_layer=False)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    # exposure-invariant end to end (patch ranges are well above the floor)
    c = classify_edges(img * 0.3 + 0.1, scales, model, chunk=8)
    np.testing.assert_allclose(np.asarray(a), np.asarray(c), atol=2e-3)


@pytest.mark.parametrize("side", [29, 17])
def test_value_channel_path_is_bit_identical_to_normalising_rgb(rng, side):
    """Inference cuts value-channel patches and normalises one channel: the same bits as the
    RGB route (normalize_context over the value, then the maximum over channels), flat patches
    below the floor included."""
    from dhde.features.dct import dct_feature
    from dhde.features.gradient import gradient_feature
    from dhde.features.pipeline import BINS, normalize_value_context, patch_gradient_magnitude, scale_hand, value_bins
    from dhde.features.singular_values import singular_value_feature

    x = rng.random((6, side, side, 3)).astype(np.float32)
    x[1] = 0.5 + 0.001 * x[1]  # range below NORMALIZE_FLOOR
    x[2] = 0.3  # flat
    x = jnp.asarray(x)
    rgb_route = jnp.max(normalize_context(x), axis=-1)
    np.testing.assert_array_equal(np.asarray(normalize_value_context(jnp.max(x, -1))), np.asarray(rgb_route))
    n = BINS[side - 2]
    g = rgb_route[:, 1:-1, 1:-1]
    ref = {"D": dct_feature(g, n), "G": gradient_feature(patch_gradient_magnitude(rgb_route), n),
           "S": singular_value_feature(g, n)}
    got = jax.jit(lambda v: value_bins(v, ("D", "G", "S"), normalize="patch"))(jnp.max(x, -1))
    for c in "DGS":
        np.testing.assert_array_equal(np.asarray(got[c]), np.asarray(ref[c]))
    cfg = ModelConfig(feature_set="H", normalize="patch")
    small = side == 17
    np.testing.assert_array_equal(np.asarray(scale_hand(jnp.max(x, -1), small, cfg)),
                                  np.asarray(scale_features(x, small, cfg).hand))
