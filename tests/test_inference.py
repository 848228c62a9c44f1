"""The public estimator: shapes, units, jit/no-recompile, batch == loop, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dhde.estimation.classify import classify_edges
from dhde.estimation import inference
from dhde.estimation.inference import EstimateOptions, estimate_core, estimate_defocus, estimate_defocus_batch
from dhde.labels import SIGMAS
from dhde.model.network import ModelConfig, init_model
from reference.extract import extract_features

FAST = dict(preconditioner="jacobi", maxiter=300, chunk=256)


@pytest.fixture(scope="module")
def model():
    return init_model(ModelConfig(feature_set="B"), jax.random.key(0))


def _scene(seed, h=48, w=56):
    """Random rectangles on a ramp: plenty of edges."""
    rng = np.random.default_rng(seed)
    img = np.tile(np.linspace(0.2, 0.8, w, dtype=np.float32), (h, 1))[..., None].repeat(3, -1)
    for _ in range(6):
        r, c = rng.integers(0, h - 10), rng.integers(0, w - 10)
        img[r : r + rng.integers(5, 15), c : c + rng.integers(5, 15)] = rng.random(3)
    return img


@pytest.mark.parametrize("which", ["B", "H_patch"])
def test_classify_matches_feature_batch(model, which):
    """classify_edges (value-channel hand features, shared CNN first layer) against per-patch
    features of explicitly cut patches; H_patch is the shipped model's configuration."""
    if which == "H_patch":
        model = init_model(ModelConfig(feature_set="H", normalize="patch"), jax.random.key(1))
    img = _scene(0)
    f = extract_features(img, model.config)
    ok = np.flatnonzero(np.asarray(f.valid))
    ref = np.asarray(model.probabilities(f.hand[ok], f.cnn[ok]))
    from dhde.filters.edges import _scale_map_jit, DEFAULT_SIGMA

    scales = _scale_map_jit(jnp.max(jnp.asarray(img), -1), jnp.asarray(EstimateOptions().thresholds), DEFAULT_SIGMA)
    probs = np.asarray(jax.jit(classify_edges, static_argnums=3)(jnp.asarray(img), scales, model, 64))
    coords = np.asarray(f.coords[ok])
    np.testing.assert_allclose(probs[coords[:, 0], coords[:, 1]], ref, atol=1e-5)
    assert not probs[np.asarray(scales) == 0].any()


def test_estimate_shapes_units_and_no_recompile(model):
    res = estimate_defocus(_scene(1), model, **FAST)
    h, w = 48, 56
    assert res.defocus.shape == (h, w) and res.defocus.dtype == jnp.float32
    assert res.guidance.shape == (h, w, 3) and res.probabilities.shape == (h, w, 11)
    m = np.asarray(res.mask)
    assert m.any() and set(np.unique(np.asarray(res.sparse)[m])) <= set(SIGMAS.tolist())
    d = np.asarray(res.defocus)
    assert np.isfinite(d).all() and d.min() > 0.3 and d.max() < 2.2  # convex-ish combination of sigmas
    assert float(res.residual) < 1e-2
    compiled = dict(inference._COMPILED)
    estimate_defocus(_scene(2), model, **FAST)  # other content and edge count, same size
    assert dict(inference._COMPILED) == compiled  # the same executables, none added
    estimate_defocus(_scene(2)[:40], model, **FAST)  # another size compiles once more
    assert len(inference._COMPILED) == min(len(compiled) + 1, inference.COMPILED_CACHE_SIZE)


def test_option_numbers_are_traced_not_static(model):
    """gamma, eps, tol and the filter sigmas are pytree leaves of EstimateOptions: a change reuses
    the compiled estimator (and changes the map); a static field (maxiter) recompiles."""
    from dhde.estimation.options import TRACED_FIELDS

    base = EstimateOptions(**FAST)
    leaves, tree = jax.tree_util.tree_flatten(base)
    assert len(leaves) == len(TRACED_FIELDS) and jax.tree_util.tree_unflatten(tree, leaves) == base
    img, key = jnp.asarray(_scene(3)), jax.random.key(0)
    f = estimate_core
    ref = np.asarray(f(img, model, key, base).defocus)
    n = f._cache_size()  # the cache is shared with the other tests' calls: count from here
    changed = EstimateOptions(**FAST, gamma=0.05, eps=3e-5, tol=1e-3, rgf_sigma_r=1.0, bf_sigma_s=40.0,
                              bf_sigma_r=50.0, bf_sigma_c=0.5, contrast_floor=0.01, median_sigma_r=0.3)
    other = np.asarray(f(img, model, key, changed).defocus)
    assert f._cache_size() == n
    assert np.abs(other - ref).max() > 1e-3  # the new numbers are used
    f(img, model, key, EstimateOptions(**{**FAST, "maxiter": 301}))
    assert f._cache_size() == n + 1
    # the traced run equals the same options passed as static constants
    static = jax.jit(estimate_core.__wrapped__, static_argnums=3)
    np.testing.assert_allclose(np.asarray(static(img, model, key, changed).defocus), other, atol=1e-5)


def test_size_multiple_crops_back(model):
    res = estimate_defocus(_scene(3, 45, 50), model, size_multiple=16, **FAST)
    assert res.defocus.shape == (45, 50) and res.guidance.shape == (45, 50, 3)


def test_batch_equals_loop(model):
    imgs = [_scene(4), _scene(5)]
    b = estimate_defocus_batch(imgs, model, **FAST)
    for i, im in enumerate(imgs):
        r = estimate_defocus(im, model, **FAST)
        np.testing.assert_allclose(np.asarray(b.sparse[i]), np.asarray(r.sparse), atol=1e-6)
        np.testing.assert_allclose(np.asarray(b.defocus[i]), np.asarray(r.defocus), atol=2e-3)


def test_errors(model):
    with pytest.raises(ValueError, match="no edges"):
        estimate_defocus(np.full((40, 40, 3), 0.3, np.float32), model, **FAST)
    with pytest.raises(ValueError, match="at least 27x27"):
        estimate_defocus(np.zeros((20, 40, 3), np.float32), model, **FAST)
    bad = _scene(6)
    bad[3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        estimate_defocus(bad, model, **FAST)
    with pytest.raises(TypeError, match="unknown estimate_defocus options"):
        estimate_defocus(_scene(6), model, gama=0.1)
    with pytest.raises(ValueError, match="thresholds"):
        EstimateOptions(thresholds=((0.3, 0.2),))
    with pytest.raises(TypeError, match="DefocusModel"):
        estimate_defocus(_scene(6), model={"params": 1})
    with pytest.raises(ValueError, match="one size"):
        estimate_defocus_batch([_scene(7), _scene(8, 40, 40)], model, **FAST)


def test_random_seed_points_fill_flat_regions(model):
    img = np.full((48, 120, 3), 0.5, np.float32)
    img[:, :56] = _scene(9)  # structure on the left, a wide flat region on the right
    r = estimate_defocus(img, model, seeds=16, seed_min_distance=20, **FAST)
    seeds = np.asarray(r.mask) & (np.asarray(r.scales) == 0)
    assert 0 < seeds.sum() <= 16
    er, ec = np.nonzero(np.asarray(r.scales) > 0)
    for sr, sc in zip(*np.nonzero(seeds)):  # Chebyshev distance to every edge pixel > 20
        assert np.min(np.maximum(np.abs(er - sr), np.abs(ec - sc))) > 20
    np.testing.assert_allclose(np.asarray(r.confidence)[seeds], 1 / 11, rtol=1e-6)
    r0 = estimate_defocus(img, model, **FAST)
    assert not (np.asarray(r0.mask) & (np.asarray(r0.scales) == 0)).any()


def test_weighted_median_option_post_filters_the_propagated_map(model):
    from dhde.filters.weighted_median import joint_weighted_median

    img = _scene(3)
    plain = estimate_defocus(img, model, **FAST)
    med = estimate_defocus(img, model, **FAST, median_iterations=2, median_radius=3, median_sigma_r=0.2)
    ref = joint_weighted_median(plain.defocus, plain.guidance, 3, 0.2, 2)
    # The two calls compile different graphs, whose float32 solves round differently: their
    # propagated maps differ by up to ~3e-5 px (measured; ~1.5e-5 even at tol 1e-6).
    np.testing.assert_allclose(np.asarray(med.defocus), np.asarray(ref), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(med.sparse), np.asarray(plain.sparse))
    with pytest.raises(ValueError, match="median"):
        EstimateOptions(median_iterations=-1)


def test_sparse_value_mean_option(model):
    img = _scene(4)
    r = estimate_defocus(img, model, sparse_value="mean", **FAST)
    m = np.asarray(r.mask)
    probs = np.asarray(r.probabilities, np.float64)[m]
    np.testing.assert_allclose(np.asarray(r.sparse)[m], probs @ np.asarray(SIGMAS, np.float64), rtol=1e-5)
    plain = estimate_defocus(img, model, **FAST)
    np.testing.assert_array_equal(np.asarray(plain.sparse)[m], np.asarray(SIGMAS)[probs.argmax(-1)])
    with pytest.raises(ValueError, match="sparse_value"):
        EstimateOptions(sparse_value="mode")


def test_clip_option_bounds_the_map_to_the_label_range(model):
    img = _scene(5)
    raw = estimate_defocus(img, model, clip=False, **FAST)
    clipped = estimate_defocus(img, model, **FAST)  # clip=True is the default
    np.testing.assert_allclose(np.asarray(clipped.defocus), np.clip(np.asarray(raw.defocus), 0.5, 2.0), atol=1e-6)
    assert 0.5 <= float(clipped.defocus.min()) and float(clipped.defocus.max()) <= 2.0
    np.testing.assert_array_equal(np.asarray(clipped.sparse), np.asarray(raw.sparse))


def test_ahead_of_time_path_equals_estimate_core(model):
    """estimate_defocus runs estimate_core compiled ahead of time (then trims the heap): the same
    numbers bit for bit as the jitted function, for every field."""
    img = _scene(5)
    opts = EstimateOptions(**FAST)
    res = estimate_defocus(img, model, options=opts)
    ref = estimate_core(jnp.asarray(img), model, jax.random.key(0), opts)
    for name in res._fields:
        np.testing.assert_array_equal(np.asarray(getattr(res, name)), np.asarray(getattr(ref, name)), err_msg=name)
    inference._release_heap()  # callable any time; a no-op where glibc is absent


def test_compiled_cache_is_bounded(model, monkeypatch):
    monkeypatch.setattr(inference, "COMPILED_CACHE_SIZE", 2)
    inference._COMPILED.clear()
    for h in (40, 44, 48):
        estimate_defocus(_scene(1)[:h], model, **FAST)
    assert len(inference._COMPILED) == 2
    assert [k[0][0] for k in inference._COMPILED] == [44, 48]  # the most recent two, oldest first
