"""Data dependencies that order XLA's schedule (memory), without changing any value.

XLA runs independent parts of a program in whatever order its scheduler picks, and on the CPU
it may run them side by side. Their temporaries then live at the same time: in ``estimate_core``
the matting Laplacian and multigrid setup (which need only the guidance image) overlapped the
bilateral filter, and the two together set the program's peak memory. :func:`after` adds a
dependency: the returned value is ``x`` bit for bit, but it can only be computed once ``deps``
are, so everything that reads it runs after them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def after(x: jax.Array, *deps: jax.Array) -> jax.Array:
    """``x`` (any float array or scalar) unchanged, made to depend on every array in ``deps``.

    The tie is ``x + t`` with a scalar ``t = 0 * (sum of the first element of each dep)``, and
    ``t = 0`` where that sum is not finite, so ``x`` keeps its value (``-0.0`` becomes ``+0.0``).
    XLA cannot fold ``0 * v`` for floats, so the dependency survives compilation. Jit-safe;
    costs one scalar read per dep.
    """
    if not deps:
        return x
    v = sum(jnp.ravel(d)[0].astype(jnp.float32) for d in deps)
    tie = jnp.where(jnp.isfinite(v), 0.0 * v, jnp.float32(0.0))
    return x + tie.astype(x.dtype)
