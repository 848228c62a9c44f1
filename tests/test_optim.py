"""Input-scaled training of the CNN's first layer (dhde.training.optim.input_scaled)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dhde.training.optim import input_scaled, make_optimizer, scale_initial_kernel

S = 1.0 / 255.0


def _params(rng):
    return {"deep": {"conv1": {"kernel": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
                               "bias": jnp.asarray(rng.normal(size=3), jnp.float32)}},
            "classifier": {"fc1": {"kernel": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}}}


def _loss(p, x, y, input_scale):
    """A two-layer net whose first layer sees x * input_scale."""
    h = jax.nn.relu((x * input_scale) @ p["deep"]["conv1"]["kernel"] + p["deep"]["conv1"]["bias"])
    return jnp.mean((h @ p["classifier"]["fc1"]["kernel"] - y) ** 2)


@pytest.mark.parametrize("name,kw", [
    ("adamw", dict(weight_decay=0.0, grad_clip=1.0)),
    ("sgd", dict(momentum=0.9, grad_clip=None)),
])
def test_equals_training_on_scaled_input(rng, name, kw):
    """Reference: the same net trained on x / 255 with the plain optimiser; the wrapped one
    trains the stored kernel v = w / 255 on raw x. Every step, v == w / 255."""
    x = jnp.asarray(rng.uniform(0, 255, size=(16, 4)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(16, 2)), jnp.float32)
    w = _params(rng)
    v = scale_initial_kernel(w, S)
    tx_ref = make_optimizer(name, 1e-2, 20, schedule="constant", **kw)
    tx = input_scaled(make_optimizer(name, 1e-2, 20, schedule="constant", **kw), S)
    sw, sv = tx_ref.init(w), tx.init(v)
    step_ref = jax.jit(lambda p, s: tx_ref.update(jax.grad(_loss)(p, x, y, S), s, p))
    step = jax.jit(lambda p, s: tx.update(jax.grad(_loss)(p, x, y, 1.0), s, p))
    for _ in range(20):
        u, sw = step_ref(w, sw)
        w = optax.apply_updates(w, u)
        u, sv = step(v, sv)
        v = optax.apply_updates(v, u)
    np.testing.assert_allclose(np.asarray(v["deep"]["conv1"]["kernel"]),
                               np.asarray(w["deep"]["conv1"]["kernel"]) * S, rtol=2e-4, atol=1e-9)
    for path in (("deep", "conv1", "bias"), ("classifier", "fc1", "kernel")):
        a, b = v, w
        for k in path:
            a, b = a[k], b[k]
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=1e-6)
    # and the plain optimiser on the raw input does something else (the test can fail)
    u, _ = tx_ref.update(jax.grad(_loss)(v, x, y, 1.0), tx_ref.init(v), v)
    u2, _ = tx.update(jax.grad(_loss)(v, x, y, 1.0), tx.init(v), v)
    assert not np.allclose(np.asarray(u["deep"]["conv1"]["kernel"]), np.asarray(u2["deep"]["conv1"]["kernel"]))


def test_scale_one_and_bad_scale(rng):
    tx = optax.adam(1e-3)
    assert input_scaled(tx, 1.0) is tx
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="input scale"):
            input_scaled(tx, bad)


def test_models_without_a_cnn_pass_through(rng):
    p = {"classifier": {"fc1": {"kernel": jnp.ones((3, 2))}}}
    tx = input_scaled(optax.sgd(0.1), S)
    g = {"classifier": {"fc1": {"kernel": jnp.full((3, 2), 2.0)}}}
    u, _ = tx.update(g, tx.init(p), p)
    np.testing.assert_allclose(np.asarray(u["classifier"]["fc1"]["kernel"]), -0.2)
    assert scale_initial_kernel(p, S) == p
