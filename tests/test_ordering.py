"""Tests of dhde.ordering.after: the value is unchanged, and the dependency survives XLA."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dhde.ordering import after


@pytest.mark.parametrize("dep", [np.float32(3.5), np.float32(np.nan), np.float32(np.inf), np.float32(-np.inf)])
def test_value_is_unchanged(dep):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32))
    d = jnp.full((3, 2), dep)
    for f in (after, jax.jit(after)):
        np.testing.assert_array_equal(f(x, d), x)
        np.testing.assert_array_equal(f(x, d, jnp.ones(2, bool)), x)
    assert after(x) is x


def test_scalar_and_dtype():
    one = jnp.float32(1.0)
    out = jax.jit(after)(one, jnp.arange(6.0).reshape(2, 3))
    assert out.dtype == jnp.float32 and out.shape == () and float(out) == 1.0


def test_dependency_survives_compilation():
    """XLA must not fold the tie away: the optimised program still reads the dependency."""
    text = jax.jit(lambda x, d: after(x, d) * 2.0).lower(jnp.ones(4), jnp.ones((3, 3))).compile().as_text()
    entry = text[text.index("ENTRY"):]
    param = re.search(r"(\S+) = f32\[3,3\]\{1,0\} parameter\(1\)", entry)
    assert param is not None, entry
    uses = entry.count(param.group(1))
    assert uses >= 2, f"parameter 1 is defined but never read:\n{entry}"


def test_vmap_equals_loop():
    xs = jnp.asarray(np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32))
    ds = jnp.asarray([1.0, np.nan, 2.0], jnp.float32)
    batched = jax.vmap(after)(xs, ds)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], after(xs[i], ds[i]))
