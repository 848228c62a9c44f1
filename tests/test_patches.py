"""Tests for dhde.filters.patches: capacity buckets, edge coordinates, patch extraction, padding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dhde.filters import patches as P
from dhde.filters.patches import (
    LARGE,
    SMALL,
    capacity_for,
    edge_coordinates,
    extract_patches,
    pad_small_to_large,
)


def _patches_loop(image: np.ndarray, coords: np.ndarray, size: int) -> np.ndarray:
    """Brute force clamp indexing, one pixel at a time."""
    h, w = image.shape[:2]
    r = size // 2
    out = np.zeros((len(coords), size, size) + image.shape[2:], image.dtype)
    for n, (row, col) in enumerate(coords):
        for i in range(size):
            for j in range(size):
                rr = min(max(row + i - r, 0), h - 1)
                cc = min(max(col + j - r, 0), w - 1)
                out[n, i, j] = image[rr, cc]
    return out


# --------------------------------------------------------------------------- capacity_for


def test_constants():
    assert (LARGE, SMALL, P.LARGE_RADIUS, P.SMALL_RADIUS) == (27, 15, 13, 7)


@pytest.mark.parametrize(
    "count, cap",
    [(0, 256), (1, 256), (256, 256), (257, 320), (320, 320), (321, 384), (449, 512),
     (512, 512), (513, 640), (1000, 1024), (15000, 16384), (16385, 20480)],
)
def test_capacity_values(count, cap):
    assert capacity_for(count) == cap


def test_capacity_rule_properties():
    counts = np.unique(np.concatenate([np.arange(0, 5000), np.geomspace(1, 1e6, 3000).astype(int)]))
    caps = np.array([capacity_for(int(c)) for c in counts])
    assert np.all(caps >= counts)
    assert np.all(np.diff(caps) >= 0)  # monotone
    for c in np.unique(caps):
        k = int(c).bit_length() - 3
        assert c % (1 << k) == 0 and (c >> k) in (4, 5, 6, 7), c  # form m * 2^k
    big = counts >= P.MIN_CAPACITY
    assert np.all(caps[big] <= 1.25 * counts[big])  # at most 25 % padding
    # distinct buckets between 1 and 1e6: walk the buckets exactly
    n, c = 0, 1
    while c <= 1_000_000:
        c = capacity_for(c) + 1
        n += 1
    assert n == 49


def test_capacity_bad_input():
    with pytest.raises(ValueError):
        capacity_for(-1)
    with pytest.raises(TypeError):
        capacity_for(2.5)
    with pytest.raises(TypeError):
        capacity_for(True)
    assert capacity_for(np.int64(300)) == 320


# ----------------------------------------------------------------------- edge_coordinates


def test_edge_coordinates_matches_nonzero(rng):
    scales = rng.integers(0, 3, size=(20, 31)).astype(np.int32)
    for scale in (1, 2):
        expected = np.argwhere(scales == scale)
        cap = capacity_for(len(expected))
        coords, valid, count = edge_coordinates(scales, scale, cap)
        assert coords.shape == (cap, 2) and coords.dtype == jnp.int32
        assert valid.shape == (cap,) and valid.dtype == jnp.bool_
        assert int(count) == len(expected)
        np.testing.assert_array_equal(np.asarray(coords)[: len(expected)], expected)
        np.testing.assert_array_equal(np.asarray(coords)[len(expected):], 0)
        np.testing.assert_array_equal(np.asarray(valid), np.arange(cap) < len(expected))


def test_edge_coordinates_overflow_and_empty(rng):
    scales = rng.integers(0, 2, size=(12, 9)).astype(np.int32)
    expected = np.argwhere(scales == 1)
    coords, valid, count = edge_coordinates(scales, 1, 5)
    assert int(count) == len(expected) > 5
    np.testing.assert_array_equal(np.asarray(coords), expected[:5])
    assert bool(valid.all())
    coords, valid, count = edge_coordinates(scales, 7, 4)
    assert int(count) == 0 and not bool(valid.any())


def test_edge_coordinates_no_recompilation(rng):
    a = rng.integers(0, 3, size=(16, 17)).astype(np.int32)
    b = rng.integers(0, 3, size=(16, 17)).astype(np.int32)
    edge_coordinates(a, 1, 256)
    before = P._edge_coordinates._cache_size()
    edge_coordinates(b, 2, 256)  # other data, other scale: same compilation
    edge_coordinates(a, 1, 256)
    assert P._edge_coordinates._cache_size() == before


def test_edge_coordinates_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        edge_coordinates(np.zeros((3, 4, 2), np.int32), 1, 8)
    with pytest.raises(TypeError, match="integer dtype"):
        edge_coordinates(np.zeros((3, 4), np.float32), 1, 8)
    with pytest.raises(ValueError, match="capacity"):
        edge_coordinates(np.zeros((3, 4), np.int32), 1, 0)
    with pytest.raises(TypeError):
        edge_coordinates(np.zeros((3, 4), np.int32), 1.0, 8)


# ------------------------------------------------------------------------ extract_patches


@pytest.mark.parametrize("size", [1, 3, SMALL, LARGE])
def test_extract_patches_vs_loop_gray(rng, size):
    img = rng.random((11, 17)).astype(np.float32)
    # interior, all four borders and corners, and centres outside the image
    coords = np.array(
        [[5, 8], [0, 0], [10, 16], [0, 16], [10, 0], [3, 0], [0, 7], [-4, 3], [12, 40], [-99, -99]],
        np.int32,
    )
    out = extract_patches(img, coords, size)
    assert out.shape == (len(coords), size, size) and out.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out), _patches_loop(img, coords, size))


def test_extract_patches_vs_replicate_pad(rng):
    """In-image centres: clamp indexing == cutting from the replicate-padded image."""
    img = rng.random((30, 40, 3)).astype(np.float32)
    r = LARGE // 2
    padded = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    coords = np.stack([rng.integers(0, 30, 50), rng.integers(0, 40, 50)], 1).astype(np.int32)
    out = np.asarray(extract_patches(img, coords, LARGE))
    assert out.shape == (50, LARGE, LARGE, 3)
    for n, (row, col) in enumerate(coords):
        np.testing.assert_array_equal(out[n], padded[row : row + LARGE, col : col + LARGE])


def test_extract_patches_dtype_and_empty(rng):
    img = rng.integers(0, 256, size=(9, 10, 3)).astype(np.uint8)
    coords = np.array([[0, 0], [8, 9]], np.int64)
    out = extract_patches(img, coords, 5)
    assert out.dtype == jnp.uint8
    np.testing.assert_array_equal(np.asarray(out), _patches_loop(img, coords, 5))
    assert extract_patches(img[..., 0], np.zeros((0, 2), np.int32), 7).shape == (0, 7, 7)


def test_extract_patches_jit_eager_vmap(rng):
    imgs = rng.random((3, 12, 14)).astype(np.float32)
    coords = jnp.asarray(np.stack([rng.integers(0, 12, 20), rng.integers(0, 14, 20)], 1), jnp.int32)
    jitted = P._extract_patches(jnp.asarray(imgs[0]), coords, 7)
    with jax.disable_jit():
        eager = P._extract_patches(jnp.asarray(imgs[0]), coords, 7)
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(eager))
    batched = jax.vmap(lambda im: extract_patches(im, coords, 7))(jnp.asarray(imgs))
    loop = np.stack([np.asarray(extract_patches(im, coords, 7)) for im in imgs])
    np.testing.assert_array_equal(np.asarray(batched), loop)


def test_extract_patches_no_recompilation(rng):
    coords = np.stack([rng.integers(0, 20, 30), rng.integers(0, 25, 30)], 1).astype(np.int32)
    extract_patches(rng.random((20, 25)).astype(np.float32), coords, 5)
    before = P._extract_patches._cache_size()
    extract_patches(rng.random((20, 25)).astype(np.float32), coords[::-1].copy(), 5)
    assert P._extract_patches._cache_size() == before


def test_extract_patches_bad_input():
    img = np.zeros((8, 8), np.float32)
    c = np.zeros((3, 2), np.int32)
    with pytest.raises(ValueError, match="odd"):
        extract_patches(img, c, 4)
    with pytest.raises(ValueError, match="odd"):
        extract_patches(img, c, 0)
    with pytest.raises(TypeError, match="integer dtype"):
        extract_patches(img, c.astype(np.float32), 3)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        extract_patches(img, np.zeros((3, 3), np.int32), 3)
    with pytest.raises(ValueError, match="image"):
        extract_patches(np.zeros(8, np.float32), c, 3)
    with pytest.raises(ValueError, match="image"):
        extract_patches(np.zeros((0, 8), np.float32), c, 3)


# --------------------------------------------------------------------- pad_small_to_large


def test_pad_small_to_large(rng):
    p = rng.random((4, SMALL, SMALL)).astype(np.float32)
    rep = np.asarray(pad_small_to_large(p))
    zero = np.asarray(pad_small_to_large(p, mode="zero"))
    assert rep.shape == zero.shape == (4, LARGE, LARGE)
    np.testing.assert_array_equal(rep, np.pad(p, ((0, 0), (6, 6), (6, 6)), mode="edge"))
    np.testing.assert_array_equal(zero, np.pad(p, ((0, 0), (6, 6), (6, 6))))
    # replicate padding of a SMALL patch == a LARGE patch of the SMALL patch seen as an image
    np.testing.assert_array_equal(rep[1], np.asarray(extract_patches(p[1], np.array([[7, 7]]), LARGE))[0])
    rgb = rng.random((2, SMALL, SMALL, 3)).astype(np.float32)
    out = np.asarray(pad_small_to_large(rgb))
    assert out.shape == (2, LARGE, LARGE, 3)
    np.testing.assert_array_equal(out[:, 6:21, 6:21], rgb)
    np.testing.assert_array_equal(out[:, 0, 0], rgb[:, 0, 0])


def test_pad_small_to_large_bad_input():
    with pytest.raises(ValueError, match="mode"):
        pad_small_to_large(np.zeros((1, SMALL, SMALL)), mode="reflect")
    with pytest.raises(ValueError, match="shape"):
        pad_small_to_large(np.zeros((1, LARGE, LARGE)))
    with pytest.raises(ValueError, match="shape"):
        pad_small_to_large(np.zeros((SMALL, SMALL)))
