"""Sparse defocus map scatter and random seed points vs loop references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dhde.estimation import sparse_map as sm
from dhde.labels import NUM_LABELS, SIGMAS
from dhde.estimation.sparse_map import SEED_CONFIDENCE, add_seed_points, random_seed_points, sparse_defocus_map

SHAPE = (20, 24)


@pytest.fixture
def points(rng):
    n = 30
    flat = rng.choice(SHAPE[0] * SHAPE[1], n, replace=False)
    coords = np.stack([flat // SHAPE[1], flat % SHAPE[1]], axis=-1).astype(np.int32)
    probs = rng.dirichlet(np.ones(NUM_LABELS) * 0.5, n).astype(np.float32)
    valid = rng.random(n) < 0.7
    return probs, coords, valid


def _reference(probs, coords, valid, shape):
    sparse, conf, mask = np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, bool)
    for p, (r, c), v in zip(probs, coords, valid):
        if v:
            sparse[r, c] = SIGMAS[int(np.argmax(p))]
            conf[r, c] = p.max()
            mask[r, c] = True
    return sparse, conf, mask


def test_sparse_map_matches_loop(points):
    probs, coords, valid = points
    got = sparse_defocus_map(probs, coords, valid, SHAPE)
    ref = _reference(probs, coords, valid, SHAPE)
    assert [g.dtype for g in got] == [jnp.float32, jnp.float32, jnp.bool_]
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(np.asarray(g), r)


def test_mean_value_is_the_expected_sigma(points):
    probs, coords, valid = points
    sparse, conf, mask = sparse_defocus_map(probs, coords, valid, SHAPE, value="mean")
    _, ref_conf, ref_mask = _reference(probs, coords, valid, SHAPE)
    ref = np.zeros(SHAPE, np.float64)
    for p, (r, c), v in zip(probs, coords, valid):
        if v:
            ref[r, c] = sum(float(p[k]) * float(SIGMAS[k]) for k in range(NUM_LABELS))
    np.testing.assert_allclose(np.asarray(sparse), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(conf), ref_conf)
    np.testing.assert_array_equal(np.asarray(mask), ref_mask)
    one_hot = np.eye(NUM_LABELS, dtype=np.float32)  # a sure prediction: mean = argmax
    np.testing.assert_allclose(np.asarray(sm.point_sigma(one_hot, "mean")),
                               np.asarray(sm.point_sigma(one_hot, "argmax")), rtol=1e-6)
    with pytest.raises(ValueError, match="value"):
        sparse_defocus_map(probs, coords, valid, SHAPE, value="median")


def test_invalid_rows_dropped_even_with_bad_coords(points):
    probs, coords, valid = points
    coords = coords.copy()
    coords[~valid] = -5  # garbage in invalid rows is fine
    got = sparse_defocus_map(probs, coords, valid, SHAPE)
    assert int(np.asarray(got[2]).sum()) == int(valid.sum())


def test_jit_equals_eager_and_no_recompilation(points, rng):
    probs, coords, valid = points
    f = jax.jit(sparse_defocus_map, static_argnums=3)
    got = f(probs, coords, valid, SHAPE)
    with jax.disable_jit():
        eager = sparse_defocus_map(probs, coords, valid, SHAPE)
    for g, e in zip(got, eager):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(e))
    # Under jit, out-of-range valid points are dropped (documented).
    bad = coords.copy()
    bad[0] = (SHAPE[0], 0)
    valid2 = valid.copy()
    valid2[0] = True
    assert int(f(probs, bad, valid2, SHAPE)[2].sum()) == int(valid.sum()) - int(valid[0])
    sparse_defocus_map(probs, coords, valid, SHAPE)  # the first call compiles (whatever ran before on this worker)
    before = sm._sparse_map._cache_size()
    sparse_defocus_map(rng.dirichlet(np.ones(NUM_LABELS), 30).astype(np.float32), coords, ~valid, SHAPE)
    assert sm._sparse_map._cache_size() == before


def test_sparse_map_validation(points):
    probs, coords, valid = points
    with pytest.raises(ValueError, match="probabilities"):
        sparse_defocus_map(probs[:, :10], coords, valid, SHAPE)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sparse_defocus_map(probs * 3, coords, valid, SHAPE)
    with pytest.raises(ValueError, match="coords"):
        sparse_defocus_map(probs, coords.astype(np.float32), valid, SHAPE)
    with pytest.raises(ValueError, match="valid"):
        sparse_defocus_map(probs, coords, valid.astype(np.int32), SHAPE)
    dup = coords.copy()
    dup[1] = dup[0]
    both = valid.copy()
    both[:2] = True
    with pytest.raises(ValueError, match="distinct"):
        sparse_defocus_map(probs, dup, both, SHAPE)
    with pytest.raises(ValueError, match="inside"):
        sparse_defocus_map(probs, coords + 100, np.ones_like(valid), SHAPE)
    with pytest.raises(ValueError, match="shape"):
        sparse_defocus_map(probs, coords, valid, (0, 5))


@pytest.fixture
def edge_mask():
    mask = np.zeros((40, 60), bool)
    mask[:, 10] = True  # a vertical edge on the left
    mask[30, :] = True  # a horizontal edge at the bottom
    return mask


def _free(mask, d):
    """Loop reference: pixels with no mask pixel within Chebyshev distance d."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    for y in range(h):
        for x in range(w):
            out[y, x] = not mask[max(0, y - d) : y + d + 1, max(0, x - d) : x + d + 1].any()
    return out


def test_seeds_only_in_edge_free_regions(edge_mask):
    d = 6
    free = _free(edge_mask, d)
    coords, valid = random_seed_points(jax.random.key(1), edge_mask, 50, min_distance=d)
    coords, valid = np.asarray(coords), np.asarray(valid)
    assert coords.shape == (50, 2) and coords.dtype == np.int32 and valid.all()
    assert free[coords[:, 0], coords[:, 1]].all()
    assert len({tuple(c) for c in coords}) == 50  # without replacement
    # All candidates are reachable: asking for more than exist returns exactly the free set.
    n_free = int(free.sum())
    coords, valid = random_seed_points(jax.random.key(2), edge_mask, n_free + 7, min_distance=d)
    coords, valid = np.asarray(coords), np.asarray(valid)
    assert valid.sum() == n_free and valid[:n_free].all()
    got = np.zeros_like(free)
    got[coords[valid, 0], coords[valid, 1]] = True
    np.testing.assert_array_equal(got, free)
    assert (coords[~valid] == 0).all()


def test_seeds_deterministic_and_key_dependent(edge_mask):
    a = random_seed_points(jax.random.key(3), edge_mask, 20, min_distance=4)
    b = random_seed_points(jax.random.key(3), edge_mask, 20, min_distance=4)
    c = random_seed_points(jax.random.key(4), edge_mask, 20, min_distance=4)
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))


def test_seed_count_density_and_no_candidates(edge_mask):
    d = 4
    n_free = int(_free(edge_mask, d).sum())
    _, valid = random_seed_points(jax.random.key(0), edge_mask, 30, min_distance=d, density=10.0 / n_free)
    assert int(np.asarray(valid).sum()) == 10
    _, valid = random_seed_points(jax.random.key(0), edge_mask, 30, min_distance=d, density=0.0)
    assert not np.asarray(valid).any()
    full = np.ones_like(edge_mask)
    _, valid = random_seed_points(jax.random.key(0), full, 5, min_distance=0)
    assert not np.asarray(valid).any()
    coords, valid = random_seed_points(jax.random.key(0), edge_mask, 0)
    assert coords.shape == (0, 2) and valid.shape == (0,)
    # No recompilation when the key, mask or density change.
    before = sm._seed_points._cache_size()
    random_seed_points(jax.random.key(9), ~edge_mask, 30, min_distance=d, density=0.5)
    assert sm._seed_points._cache_size() == before


def test_seed_validation(edge_mask):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="bool"):
        random_seed_points(key, edge_mask.astype(np.float32), 3)
    with pytest.raises(ValueError, match="n_seeds"):
        random_seed_points(key, edge_mask, -1)
    with pytest.raises(ValueError, match="n_seeds"):
        random_seed_points(key, edge_mask, edge_mask.size + 1)
    with pytest.raises(ValueError, match="min_distance"):
        random_seed_points(key, edge_mask, 3, min_distance=1.5)
    with pytest.raises(ValueError, match="density"):
        random_seed_points(key, edge_mask, 3, density=-1.0)


def test_add_seed_points(points, rng):
    probs, coords, valid = points
    sparse, conf, mask = sparse_defocus_map(probs, coords, valid, SHAPE)
    seeds, seed_valid = random_seed_points(jax.random.key(5), mask, 6, min_distance=1)
    seeds, seed_valid = np.asarray(seeds), np.array(seed_valid)
    seed_valid[-1] = False
    seed_probs = rng.dirichlet(np.ones(NUM_LABELS), 6).astype(np.float32)
    s2, c2, m2 = (np.asarray(x) for x in add_seed_points(sparse, conf, mask, seed_probs, seeds, seed_valid))
    mask = np.asarray(mask)
    np.testing.assert_array_equal(s2[mask], np.asarray(sparse)[mask])  # existing points kept
    np.testing.assert_array_equal(c2[mask], np.asarray(conf)[mask])
    for p, (r, c), v in zip(seed_probs, seeds, seed_valid):
        if v:
            assert m2[r, c] and s2[r, c] == SIGMAS[int(np.argmax(p))]
            assert c2[r, c] == pytest.approx(SEED_CONFIDENCE)
    assert m2.sum() == mask.sum() + seed_valid.sum()
    # A seed on an existing point is ignored.
    on_point = np.argwhere(mask)[:1].astype(np.int32)
    s3, c3, m3 = add_seed_points(sparse, conf, mask, seed_probs[:1], on_point, np.array([True]))
    np.testing.assert_array_equal(np.asarray(s3), np.asarray(sparse))
    np.testing.assert_array_equal(np.asarray(m3), mask)
    with pytest.raises(ValueError, match="seed_confidence"):
        add_seed_points(sparse, conf, mask, seed_probs, seeds, seed_valid, seed_confidence=2.0)
