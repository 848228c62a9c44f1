"""Applying a batch function to many rows in fixed-size blocks (``lax.map``).

Used where one call on all rows would build intermediates too large for the cache (the CNN's
first-layer activations) or for memory (the SVD's bidiagonalisation), and the function is
written for a batch (so ``lax.map(..., batch_size=)``, which vmaps a per-row function, does not
apply directly).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def map_in_blocks(fn, x: jax.Array, block: int):
    """``fn(x)`` computed ``block`` rows at a time.

    Args:
      fn: (B, ...) -> pytree of (B, ...) arrays, row-wise (row i of the output depends on row i
        of the input only).
      x: (N, ...) array.
      block: rows per block (static); ``block <= 0`` or ``N <= block``: a single call.

    Returns:
      ``fn(x)``: the rows of the last block are zero-padded on the way in and cut off again.
    """
    n = x.shape[0]
    if block <= 0 or n <= block:
        return fn(x)
    nb = -(-n // block)
    xb = jnp.pad(x, ((0, nb * block - n),) + ((0, 0),) * (x.ndim - 1)).reshape((nb, block) + x.shape[1:])
    out = lax.map(fn, xb)
    return jax.tree.map(lambda o: o.reshape((nb * block,) + o.shape[2:])[:n], out)
