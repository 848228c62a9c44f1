"""dhde.estimation.pyramid: the known pre-blur (verified on synthetic edges), downscaling against NumPy,
sigma conversion, level counts, the level merge against a brute-force loop, jit == eager."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from dhde.estimation import pyramid
from dhde.filters import edges
from dhde.filters.edges import DEFAULT_SIGMA, _scale_map_jit
from dhde.labels import NUM_LABELS, SIGMAS


def _edge_image(sigma, h=64, w=256, x0=127.3):
    """A vertical step edge blurred by a Gaussian of std ``sigma`` (point-sampled erf profile)."""
    x = np.arange(w, dtype=np.float64)
    row = 0.2 + 0.6 * 0.5 * (1.0 + erf((x - x0) / (math.sqrt(2.0) * sigma)))
    return np.tile(row, (h, 1))


def _edge_sigma(row):
    """Blur std of a 1-D edge profile from its first differences: variance - 1/12 (the unit
    sampling interval), the differences read as a distribution."""
    d = np.diff(row)
    d = d / d.sum()
    x = np.arange(d.size) + 0.5
    m = (d * x).sum()
    return math.sqrt((d * (x - m) ** 2).sum() - 1.0 / 12.0)


@pytest.mark.parametrize("sigma_full", [1.0, 2.5, 4.0, 6.0])
@pytest.mark.parametrize("k", [1, 2])
def test_pre_blur_formula_on_synthetic_edges(sigma_full, k):
    img = _edge_image(sigma_full)
    assert _edge_sigma(img[0]) == pytest.approx(sigma_full, rel=0.01)  # the measurement itself
    level = np.asarray(pyramid.downscale(img.astype(np.float32), k))
    sigma_k = _edge_sigma(level[level.shape[0] // 2].astype(np.float64))
    pre = pyramid.DEFAULT_PRE_BLUR
    assert sigma_k**2 == pytest.approx(sigma_full**2 / 4**k + pre**2, rel=0.03)
    assert pyramid.to_full_sigma(sigma_k, k) == pytest.approx(sigma_full, rel=0.05, abs=0.1)


def test_pre_blur_formula_other_pre_blur():
    img = _edge_image(3.0)
    level = np.asarray(pyramid.downscale(img.astype(np.float32), 1, pre_blur=0.8))
    sigma_k = _edge_sigma(level[10].astype(np.float64))
    assert sigma_k**2 == pytest.approx(9.0 / 4 + 0.64, rel=0.03)
    assert pyramid.to_full_sigma(sigma_k, 1, 0.8) == pytest.approx(3.0, rel=0.05)


def _numpy_downscale(img, k, pre):
    f = 2**k
    s = math.sqrt((pre * f) ** 2 - (f * f - 1) / 12.0)
    r = max(1, math.ceil(4 * s))
    x = np.arange(-r, r + 1)
    g = np.exp(-(x**2) / (2 * s * s))
    g /= g.sum()
    h, w = img.shape[:2]
    hp, wp = -(-h // f) * f, -(-w // f) * f
    a = np.pad(img.astype(np.float64), ((0, hp - h), (0, wp - w)) + ((0, 0),) * (img.ndim - 2), mode="edge")
    out = np.empty_like(a)  # brute-force separable correlation with replicate borders
    ap = np.pad(a, ((r, r), (0, 0)) + ((0, 0),) * (img.ndim - 2), mode="edge")
    out = sum(g[i] * ap[i:i + hp] for i in range(2 * r + 1))
    ap = np.pad(out, ((0, 0), (r, r)) + ((0, 0),) * (img.ndim - 2), mode="edge")
    out = sum(g[i] * ap[:, i:i + wp] for i in range(2 * r + 1))
    res = np.zeros((hp // f, wp // f) + img.shape[2:])
    for i in range(hp // f):
        for j in range(wp // f):
            res[i, j] = out[i * f:(i + 1) * f, j * f:(j + 1) * f].mean(axis=(0, 1))
    return res


@pytest.mark.parametrize("k,shape", [(1, (13, 18, 3)), (2, (21, 16)), (0, (5, 7))])
def test_downscale_matches_numpy(rng, k, shape):
    img = rng.random(shape).astype(np.float32)
    got = np.asarray(pyramid.downscale(img, k))
    assert got.shape == pyramid.level_shape(shape, k) + shape[2:] and got.dtype == np.float32
    ref = img if k == 0 else _numpy_downscale(img, k, pyramid.DEFAULT_PRE_BLUR)
    np.testing.assert_allclose(got, ref, atol=2e-6)


def test_downscale_errors():
    with pytest.raises(TypeError, match="float"):
        pyramid.downscale(np.zeros((8, 8), np.uint8), 1)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        pyramid.downscale(np.zeros((8,), np.float32), 1)
    with pytest.raises(ValueError, match="level"):
        pyramid.downscale(np.zeros((8, 8), np.float32), -1)
    with pytest.raises(ValueError, match="pre_blur"):
        pyramid.downscale(np.zeros((8, 8), np.float32), 1, pre_blur=0.2)
    with pytest.raises(TypeError, match="pre_blur"):
        pyramid.downscale(np.zeros((8, 8), np.float32), 1, pre_blur="0.5")


def test_sigma_conversion_and_ceiling():
    s = np.linspace(0.5, 8.0, 20)
    for k in (1, 2, 3):
        np.testing.assert_allclose(pyramid.to_full_sigma(pyramid.to_level_sigma(s, k), k), s, rtol=1e-12)
        np.testing.assert_allclose(pyramid.to_full_sigma(s, k), 2**k * np.sqrt(np.maximum(s**2 - 0.25, 0)))
    assert pyramid.to_full_sigma(0.3, 2) == 0.0  # below the pre-blur: sharp
    assert pyramid.to_full_sigma(1.7, 0) == 1.7
    jx = pyramid.to_full_sigma(jnp.asarray(s, jnp.float32), 2)
    assert isinstance(jx, jax.Array)
    np.testing.assert_allclose(np.asarray(jx), pyramid.to_full_sigma(s, 2), rtol=1e-6)
    assert pyramid.sigma_ceiling(1) == 2.0
    assert pyramid.sigma_ceiling(3) == pytest.approx(4 * math.sqrt(4 - 0.25))
    assert pyramid.sigma_ceiling(2) == pytest.approx(2 * math.sqrt(3.75))
    with pytest.raises(ValueError):
        pyramid.sigma_ceiling(0)


def test_max_levels_brute_force():
    for h, w in [(20, 300), (27, 27), (53, 60), (54, 54), (107, 200), (108, 216), (480, 640), (500, 741)]:
        n = 1
        while math.ceil(h / 2**n) >= 27 and math.ceil(w / 2**n) >= 27 and min(h, w) >= 27:
            n += 1
        assert pyramid.max_levels((h, w)) == n, (h, w)
    assert pyramid.max_levels((480, 640)) == 5


def test_level_gaussian_std():
    assert pyramid.gaussian_std(0) == 0.0
    for k in (1, 2, 3):
        f = 2**k
        s = pyramid.gaussian_std(k, 0.5)
        assert (s**2 + (f * f - 1) / 12) / f**2 == pytest.approx(0.25)


def test_scale_map_absolute_equals_relative_at_own_max(rng):
    img = np.zeros((40, 40), np.float32)
    img[10:30, 12:25] = 0.8
    img[5:15, 28:35] = 0.25
    img += 0.01 * rng.random((40, 40)).astype(np.float32)
    thr = jnp.asarray(((0.117, 0.176), (0.234, 0.351)), jnp.float32)
    ref = edges.peak_gradient(jnp.asarray(img), DEFAULT_SIGMA)
    a = edges.scale_map_absolute(jnp.asarray(img), thr, DEFAULT_SIGMA, ref)
    b = _scale_map_jit(jnp.asarray(img), thr, DEFAULT_SIGMA)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c = edges.scale_map_absolute(jnp.asarray(img), thr, DEFAULT_SIGMA, 2.0 * ref)  # twice the reference:
    assert np.asarray(c > 0).sum() < np.asarray(b > 0).sum()  # fewer edges


def test_coverage_brute_force(rng):
    for h, w in [(9, 12), (10, 10), (7, 5)]:
        cov = rng.random((h, w)) < 0.1
        hn, wn = -(-h // 2), -(-w // 2)
        got = np.asarray(pyramid.coverage(jnp.asarray(cov), (hn, wn), margin=1))
        ref = np.zeros((hn, wn), bool)
        for i in range(hn):
            for j in range(wn):
                for a in range(2 * i - 1, 2 * i + 3):
                    for b in range(2 * j - 1, 2 * j + 3):
                        if 0 <= a < h and 0 <= b < w and cov[a, b]:
                            ref[i, j] = True
        np.testing.assert_array_equal(got, ref)


# ----------------------------------------------------------------------------- merge


def _random_level(rng, shape, density, k):
    mask = rng.random(shape) < density
    logits = rng.normal(size=shape + (NUM_LABELS,)) * 2.0
    # force some saturated points: top label and bottom label
    sel = rng.random(shape)
    logits[sel < 0.2, -1] += 8.0
    logits[(sel > 0.8), 0] += 8.0
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p = (p / p.sum(-1, keepdims=True)).astype(np.float32)
    p[~mask] = 0
    conf = np.where(mask, p.max(-1), 0).astype(np.float32)
    return pyramid.LevelPoints(k, jnp.asarray(mask), jnp.asarray(p), jnp.asarray(conf))


def _merge_reference(levels, shape, pre, rule):
    """The documented rule, as plain Python loops."""
    h, w = shape
    n = len(levels)
    masks = [np.asarray(lp.mask) for lp in levels]
    probs = [np.asarray(lp.probs) for lp in levels]
    confs = [np.asarray(lp.conf) for lp in levels]
    points = masks[0].copy()
    for lp, m in zip(levels[1:], masks[1:]):
        f = 2**lp.k
        for i, j in zip(*np.nonzero(m)):
            points[min(i * f + f // 2, h - 1), min(j * f + f // 2, w - 1)] = True
    sparse = np.zeros(shape, np.float32)
    level = np.full(shape, -1)
    for r in range(h):
        for c in range(w):
            if not points[r, c]:
                continue
            best = None
            for lp, m, p, cf in zip(levels, masks, probs, confs):
                k, f = lp.k, 2**lp.k
                if k == 0:
                    if not m[r, c]:
                        continue
                    q = (r, c)
                else:
                    i, j = r // f, c // f
                    cands = [(a, b) for a in range(i - 1, i + 2) for b in range(j - 1, j + 2)
                             if 0 <= a < m.shape[0] and 0 <= b < m.shape[1] and m[a, b]]
                    if not cands:
                        continue
                    q = max(cands, key=lambda ab: (cf[ab], -cands.index(ab)))
                lab = int(np.argmax(p[q]))
                sig = float(SIGMAS[lab])
                if k:
                    sig = 2**k * math.sqrt(max(sig * sig - pre * pre, 0.0))
                if lab != NUM_LABELS - 1 and not (lab == 0 and k > 0):
                    score = 2 + (cf[q] if rule == "confidence" else (n - k) / (n + 1))
                elif lab == NUM_LABELS - 1:
                    score = 1 + (k + 1) / (n + 1)
                else:
                    score = (n - k) / (n + 1)
                if best is None or score > best[0]:
                    best = (score, max(sig, 0.5), k)
            if best is not None:
                sparse[r, c], level[r, c] = best[1], best[2]
    return sparse, level


@pytest.mark.parametrize("rule", ["confidence", "finest"])
@pytest.mark.parametrize("shape", [(16, 16), (13, 19)])
def test_merge_levels_matches_loop(rng, rule, shape):
    levels = [_random_level(rng, shape, 0.3, 0)]
    for k in (1, 2):
        levels.append(_random_level(rng, pyramid.level_shape(shape, k), 0.3, k))
    sparse, conf, mask, probs, level = pyramid.merge_levels(levels, shape, pre_blur=0.5, value="argmax", rule=rule)
    ref_sparse, ref_level = _merge_reference(levels, shape, 0.5, rule)
    np.testing.assert_array_equal(np.asarray(level), ref_level)
    np.testing.assert_allclose(np.asarray(sparse), ref_sparse, rtol=1e-6)
    assert np.array_equal(np.asarray(mask), ref_level >= 0)
    m = np.asarray(mask)
    np.testing.assert_allclose(np.asarray(probs)[m].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(conf)[m], np.asarray(probs)[m].max(-1), rtol=1e-6)
    assert not np.asarray(conf)[~m].any() and not np.asarray(sparse)[~m].any()


def test_merge_jit_equals_eager_and_no_recompile(rng):
    shape = (12, 14)
    levels = [_random_level(rng, shape, 0.3, 0), _random_level(rng, pyramid.level_shape(shape, 1), 0.3, 1)]

    def f(m0, p0, c0, m1, p1, c1):
        return pyramid.merge_levels([pyramid.LevelPoints(0, m0, p0, c0), pyramid.LevelPoints(1, m1, p1, c1)], shape,
                                    pre_blur=0.5, value="mean")

    args = [x for lp in levels for x in (lp.mask, lp.probs, lp.conf)]
    jf = jax.jit(f)
    got = jf(*args)
    with jax.disable_jit():
        ref = f(*args)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    levels2 = [_random_level(rng, shape, 0.5, 0), _random_level(rng, pyramid.level_shape(shape, 1), 0.5, 1)]
    n = jf._cache_size()
    jf(*[x for lp in levels2 for x in (lp.mask, lp.probs, lp.conf)])
    assert jf._cache_size() == n


def test_downscale_jit_no_recompile(rng):
    a = rng.random((20, 24, 3)).astype(np.float32)
    pyramid.downscale(a, 1)
    n = pyramid._downscale._cache_size()
    pyramid.downscale(rng.random((20, 24, 3)).astype(np.float32), 1)
    assert pyramid._downscale._cache_size() == n
    with jax.disable_jit():
        eager = pyramid._downscale(jnp.asarray(a), k=1, pre_blur=0.5)
    np.testing.assert_allclose(np.asarray(pyramid.downscale(a, 1)), np.asarray(eager), atol=1e-6)


def test_label_edges():
    lo, hi = pyramid.label_edges(0)
    np.testing.assert_allclose(hi - lo, np.r_[0.575, np.full(10, 0.15)], atol=1e-6)
    lo2, hi2 = pyramid.label_edges(2)
    np.testing.assert_allclose(hi2, 4 * np.sqrt((SIGMAS + 0.075) ** 2 - 0.25), rtol=1e-6)
    assert lo2[0] == 0 and np.all(np.diff(hi2) > 0)
