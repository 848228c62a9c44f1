"""Test helpers: running a function (or a whole test body) under ``jax.jit`` and eagerly.

Every public dhde stage is meant to give the same numbers when a user wraps it in ``jax.jit``
(array arguments become tracers, validation of values is skipped) and when JAX runs it op by
op (``jax.disable_jit()``: no compilation at all, so no fusion and no reassociation). Instead
of writing the two calls out in every test (in the style of chex's ``variants`` and
dm_pix's tests):

* :func:`assert_jit_matches_eager` runs one function both ways and compares the results;
* :data:`jit_and_eager` parametrises a test over ``transform`` in (``jax.jit``, :func:`eager`),
  so that its body runs once compiled and once eagerly::

      @jit_and_eager
      def test_blur(transform):
          out = transform(lambda x: gaussian_blur(x, 1.5))(image)
          np.testing.assert_allclose(out, reference, atol=1e-6)

Tests import this module as ``helpers`` (``tests/`` is on ``sys.path``: it holds the root
``conftest.py``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import numpy as np
import pytest


def eager(fn: Callable) -> Callable:
    """``fn`` run under ``jax.disable_jit()``: every primitive, including those inside dhde's own
    jitted functions and ``lax`` loops, is executed op by op (the counterpart of ``jax.jit``)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with jax.disable_jit():
            return fn(*args, **kwargs)

    return run


#: ``@jit_and_eager`` on a test taking a ``transform`` argument runs it with ``jax.jit`` and eagerly.
jit_and_eager = pytest.mark.parametrize("transform", [pytest.param(jax.jit, id="jit"),
                                                      pytest.param(eager, id="eager")])


def assert_jit_matches_eager(fn: Callable, *args: Any, rtol: float = 1e-7, atol: float = 0.0) -> Any:
    """Runs ``fn(*args)`` under ``jax.jit`` and eagerly and asserts the two agree (every leaf of
    the output pytree, ``np.testing.assert_allclose`` with ``rtol`` / ``atol``).

    ``args`` are traced under jit: close over the static ones (``lambda x: f(x, 13)``).
    Returns the jitted output with NumPy leaves, for further checks.
    """
    jitted = jax.tree.map(np.asarray, jax.jit(fn)(*args))
    ran_eagerly = jax.tree.map(np.asarray, eager(fn)(*args))
    assert jax.tree.structure(jitted) == jax.tree.structure(ran_eagerly)
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(ran_eagerly)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    return jitted
