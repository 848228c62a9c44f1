"""The multi-scale estimator (EstimateOptions.levels) and the blur-probability output."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dhde.filters import bilateral
from dhde.propagation import matting
from dhde.propagation import solver as propagation
from dhde.estimation import pyramid
from dhde.filters import rolling_guidance
from dhde.estimation import sparse_map
from dhde.estimation.classify import classify_edges
from dhde.filters.edges import DEFAULT_SIGMA, _scale_map_jit
from dhde.estimation.inference import estimate_core, estimate_defocus
from dhde.estimation.options import EstimateOptions, effective_levels, output_ceiling
from dhde.estimation.probability import blur_probability, point_exceedance
from dhde.labels import NUM_LABELS, SIGMA_MAX, SIGMA_MIN, SIGMAS
from dhde.model.network import ModelConfig, init_model

FAST = dict(preconditioner="jacobi", maxiter=300, chunk=256)


@pytest.fixture(scope="module")
def model():
    return init_model(ModelConfig(feature_set="B"), jax.random.key(0))


def _scene(seed, h=112, w=120):
    """Random rectangles, some blurred strongly: edges at every level."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    img = np.tile(np.linspace(0.2, 0.8, w, dtype=np.float32), (h, 1))[..., None].repeat(3, -1)
    for _ in range(8):
        r, c = rng.integers(0, h - 16), rng.integers(0, w - 16)
        img[r : r + rng.integers(6, 16), c : c + rng.integers(6, 16)] = rng.random(3)
    img[:, w // 2 :] = gaussian_filter(img[:, w // 2 :], (3.0, 3.0, 0))
    return img


def _paper_pipeline(image, model, opts):
    """The single-scale estimator as it was before the pyramid (verbatim), for bit-identity."""
    gray = jnp.max(image, axis=-1)
    scales = _scale_map_jit(gray, jnp.asarray(opts.thresholds, jnp.float32), DEFAULT_SIGMA)
    probs = classify_edges(image, scales, model, opts.chunk)
    mask = scales > 0
    sparse = jnp.where(mask, sparse_map.point_sigma(probs, opts.sparse_value), 0.0)
    conf = jnp.where(mask, jnp.max(probs, -1), 0.0)
    guide = rolling_guidance.rolling_guidance_filter(
        image, opts.rgf_sigma_s, opts.rgf_sigma_r, opts.rgf_iterations, per_channel=opts.rgf_per_channel)
    filtered = bilateral.probability_joint_bilateral_filter(
        sparse, mask, conf, guide, sigma_s=jnp.float32(opts.bf_sigma_s), sigma_r=jnp.float32(opts.bf_sigma_r),
        sigma_c=jnp.float32(opts.bf_sigma_c), window=opts.bf_window, range_channels=opts.range_channels)
    n = jnp.maximum(jnp.sum(mask), 1)
    x0 = jnp.full(gray.shape, jnp.sum(filtered) / n, jnp.float32)
    x, _, residual = propagation.propagate_arrays(
        filtered, mask, guide, x0, jnp.float32(opts.gamma), jnp.float32(matting.regularizer(opts.eps, "code")),
        jnp.float32(opts.tol), maxiter=opts.maxiter, preconditioner=opts.preconditioner, solver="jax_cg",
    )
    x = jnp.clip(x, SIGMA_MIN, SIGMA_MAX)
    return x, sparse, conf, filtered, mask, scales, guide, probs, residual


def test_levels_1_is_bit_identical_to_the_paper_pipeline(model):
    opts = EstimateOptions(**FAST)
    assert opts.levels == 1 or EstimateOptions().levels >= 1
    img = jnp.asarray(_scene(0))
    res = estimate_core(img, model, jax.random.key(0), EstimateOptions(levels=1, **FAST))
    ref = jax.jit(_paper_pipeline, static_argnums=2)(img, model, EstimateOptions(levels=1, **FAST))
    for name, a, b in zip(res._fields, res, ref):
        assert np.array_equal(np.asarray(a), np.asarray(b)), name
    assert np.array_equal(np.asarray(res.level), np.where(np.asarray(res.mask), 0, -1))


def test_multiscale_shapes_range_levels_and_no_recompile(model):
    opts = EstimateOptions(levels=3, **FAST)
    res = estimate_defocus(_scene(1), model, options=opts)
    h, w = 112, 120
    assert effective_levels((h, w), 3) == 3
    assert res.defocus.shape == (h, w) and res.defocus.dtype == jnp.float32
    assert res.level.shape == (h, w) and res.level.dtype == jnp.int32
    lv, m = np.asarray(res.level), np.asarray(res.mask)
    assert set(np.unique(lv[m])) <= {0, 1, 2} and (lv[~m] == -1).all()
    ceiling = output_ceiling(opts, (h, w))
    assert ceiling == pytest.approx(pyramid.sigma_ceiling(3)) and ceiling > 7.5
    d = np.asarray(res.defocus)
    assert np.isfinite(d).all() and d.min() >= SIGMA_MIN and d.max() <= ceiling + 1e-6
    s = np.asarray(res.sparse)
    assert (s[m] >= SIGMA_MIN).all() and (s[m] <= ceiling + 1e-5).all() and not s[~m].any()
    # the level-0 points keep their own estimate wherever it is unsaturated
    p = np.asarray(res.probabilities)
    lab = p.argmax(-1)
    zero = lv == 0
    np.testing.assert_allclose(s[zero], SIGMAS[lab[zero]], rtol=1e-6)
    # coarse points: the converted sigma of their label
    for k in (1, 2):
        sel = lv == k
        if sel.any():
            np.testing.assert_allclose(
                s[sel], np.maximum(pyramid.to_full_sigma(SIGMAS[lab[sel]].astype(np.float64), k), SIGMA_MIN), rtol=1e-5)
    n = estimate_core._cache_size()
    estimate_defocus(_scene(2), model, options=opts)
    assert estimate_core._cache_size() == n


def test_multiscale_reads_large_blur_with_an_oracle_classifier():
    """With a classifier that answers the true blur of the patch, a sigma-4 edge (beyond the
    labels) is read at a coarse level and converted back to about 4 px; a sharp one stays sharp."""
    from scipy.special import erf

    h, w = 96, 128
    x = np.arange(w)
    row = np.where(x < 64, 0.2 + 0.6 * ((x >= 24) & (x < 44)), 0.2 + 0.6 * 0.5 * (1 + erf((x - 96) / (np.sqrt(2) * 4.0))))
    img = np.tile(row, (h, 1)).astype(np.float32)
    img3 = np.repeat(img[..., None], 3, -1)

    def oracle_level(k):
        # the blur each column has at level k (in level px), as the perfect classifier would answer
        true_full = np.where(x < 64, 0.0, 4.0)
        s = pyramid.to_level_sigma(true_full, k) if k else np.maximum(true_full, 0.5)
        return s

    opts = EstimateOptions(levels=3)
    points = []
    for k in range(3):
        imk = img3 if k == 0 else np.asarray(pyramid.downscale(img3, k))
        gray = jnp.asarray(imk.max(-1))
        scales = np.asarray(_scale_map_jit(gray, jnp.asarray(opts.thresholds, jnp.float32), DEFAULT_SIGMA))
        mask = scales > 0
        cols = np.minimum(np.arange(mask.shape[1]) * 2**k + 2 ** k // 2, w - 1)
        sig = np.broadcast_to(oracle_level(k)[cols], mask.shape)
        lab = np.clip(np.round((sig - 0.5) / 0.15), 0, 10).astype(int)
        probs = np.eye(NUM_LABELS, dtype=np.float32)[lab] * mask[..., None]
        points.append(pyramid.LevelPoints(k, jnp.asarray(mask), jnp.asarray(probs),
                                          jnp.asarray(mask.astype(np.float32))))
    sparse, conf, mask, probs, level = pyramid.merge_levels(points, (h, w), pre_blur=0.5, value="argmax")
    s, m, lv = np.asarray(sparse), np.asarray(mask), np.asarray(level)
    right = m & (np.arange(w)[None] >= 80)
    left = m & (np.arange(w)[None] < 52)
    assert right.any() and left.any()
    assert abs(np.median(s[right]) - 4.0) < 0.5 and lv[right].max() >= 1
    assert np.median(s[left]) == pytest.approx(0.5)


def test_levels_capped_with_a_warning(model):
    img = _scene(3, 40, 60)  # 40x60: level 1 is 20x30 < 27 -> one level only
    assert effective_levels((40, 60), 3) == 1
    with pytest.warns(UserWarning, match="too many"):
        res = estimate_defocus(img, model, levels=3, **FAST)
    ref = estimate_defocus(img, model, levels=1, **FAST)
    np.testing.assert_array_equal(np.asarray(res.defocus), np.asarray(ref.defocus))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimate_defocus(img, model, levels=1, **FAST)  # no warning when it fits


def test_no_edges_at_any_level(model):
    with pytest.raises(ValueError, match="no edges"):
        estimate_defocus(np.full((112, 120, 3), 0.4, np.float32), model, levels=3, **FAST)


@pytest.mark.parametrize("kw,err,msg", [
    (dict(levels=0), ValueError, "levels"),
    (dict(levels=9), ValueError, "levels"),
    (dict(levels=2.0), TypeError, "levels"),
    (dict(levels=True), TypeError, "levels"),
    (dict(pre_blur=0.2), ValueError, "pre_blur"),
    (dict(pre_blur=float("nan")), ValueError, "pre_blur"),
    (dict(pre_blur="a"), TypeError, "pre_blur"),
    (dict(level_thresholds="own"), ValueError, "level_thresholds"),
    (dict(level_rule="best"), ValueError, "level_rule"),
    (dict(coarse_points="some"), ValueError, "coarse_points"),
    (dict(coarse_seeds=-1), ValueError, "coarse_seeds"),
    (dict(coarse_seeds=1.5), TypeError, "coarse_seeds"),
])
def test_new_options_validated(kw, err, msg):
    with pytest.raises(err, match=msg):
        EstimateOptions(**kw)


def test_point_exceedance_against_numpy(rng):
    p = rng.random((50, NUM_LABELS)).astype(np.float32)
    p /= p.sum(-1, keepdims=True)
    level = rng.integers(-1, 3, 50)
    for tau in (0.3, 0.8, 1.33, 2.5, 6.0):
        got = np.asarray(point_exceedance(jnp.asarray(p), jnp.asarray(level), tau, 3, 0.5))
        ref = np.zeros(50)
        for i in range(50):
            if level[i] < 0:
                continue
            for lab in range(NUM_LABELS):  # uniform over the label's interval, converted
                lo = 0.0 if lab == 0 else SIGMAS[lab] - 0.075
                hi = SIGMAS[lab] + 0.075
                if level[i]:
                    k = level[i]
                    lo, hi = (2**k * np.sqrt(max(v * v - 0.25, 0)) for v in (lo, hi))
                ref[i] += p[i, lab] * np.clip((hi - tau) / (hi - lo), 0, 1)
        np.testing.assert_allclose(got, ref, atol=1e-5)
        assert (got >= 0).all() and (got <= 1 + 1e-6).all()


def test_blur_probability(model):
    img = _scene(4)
    opts = EstimateOptions(levels=2, **FAST)
    res = estimate_defocus(img, model, options=opts)
    p1 = np.asarray(blur_probability(res, 0.8, options=opts))
    p2 = np.asarray(blur_probability(res, 1.6, options=opts))
    assert p1.shape == img.shape[:2] and p1.dtype == np.float32
    assert p1.min() >= 0 and p1.max() <= 1
    assert p1.mean() >= p2.mean()  # P(sigma > tau) falls with tau
    with pytest.raises(ValueError, match="tau"):
        blur_probability(res, -1.0, options=opts)
    with pytest.raises(TypeError, match="tau"):
        blur_probability(res, "1", options=opts)
    with pytest.raises(TypeError, match="DefocusResult"):
        blur_probability(np.zeros((4, 4)), 1.0)
    if int(jnp.max(res.level)) >= 1:
        with pytest.raises(ValueError, match="level"):
            blur_probability(res, 1.0, options=EstimateOptions(levels=1, **FAST))
