"""Features end to end: training path == inference path == an independent NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft

from dhde.features.pipeline import context_cnn, context_hand, scale_features
from dhde.model.network import ModelConfig
from dhde.filters.patches import CONTEXT, extract_patches
from reference.extract import edge_features, extract_features, prepare_scales


def _ref_bins(gray, r, c, w, n):
    """Authors' definitions, written independently: the grey image replicate-padded by w // 2,
    forward differences on the padded image (backward on its last row/column)."""
    rad = w // 2
    gp = np.pad(gray, rad + 1, mode="edge")  # +1 so that the forward difference exists
    patch = gp[r + 1 : r + 1 + w, c + 1 : c + 1 + w]
    # DCT ring spectrum
    N = 32 if w == 27 else 16
    P = np.zeros((N, N))
    P[:w, :w] = patch
    D = np.abs(scipy.fft.dctn(P, norm="ortho"))
    u, v = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    rho = np.sqrt(u**2 + v**2)
    b = np.linspace(0, N - 1, n + 1)
    d = (N - 1) / n
    dct = np.array([D[(rho >= b[k] - 0.1 * d) & (rho <= b[k + 1] + 0.1 * d)].mean() for k in range(n)])
    # gradient histogram
    gx = gp[r + 1 : r + 1 + w, c + 2 : c + 2 + w] - patch
    gy = gp[r + 2 : r + 2 + w, c + 1 : c + 1 + w] - patch
    mag = np.sqrt(gx**2 + gy**2) / np.sqrt(2)
    centres = (np.arange(n) + 0.5) / n
    edges = np.concatenate([[-np.inf], (centres[:-1] + centres[1:]) / 2, [np.inf]])
    hist = np.array([((mag > edges[k]) & (mag <= edges[k + 1])).sum() for k in range(n)], float)
    # singular values
    sv = np.linalg.svd(patch.astype(np.float64), compute_uv=False)[:n]
    norm = lambda x: np.log1p(x) / np.log1p(x).sum()  # noqa: E731
    return norm(dct), norm(hist), norm(sv)


@pytest.fixture(scope="module")
def image():
    import skimage.data
    from skimage.transform import resize

    return resize(skimage.data.astronaut()[100:260, 150:330], (64, 72), anti_aliasing=True).astype(np.float32)


def test_inference_features_match_reference(image):
    cfg = ModelConfig(feature_set="H")
    f = extract_features(image, cfg)
    gray = image.max(-1).astype(np.float64)
    valid = np.asarray(f.valid)
    idx = np.flatnonzero(valid)
    assert len(idx) > 20
    rng = np.random.default_rng(0)
    # include border pixels (replicate padding) and both scales
    for i in rng.choice(idx, size=12, replace=False):
        r, c = np.asarray(f.coords[i])
        small = bool(f.small[i])
        w, n = (15, 13) if small else (27, 25)
        ref = _ref_bins(gray, r, c, w, n)
        hand = np.asarray(f.hand[i])
        for k, rv in enumerate(ref):
            seg = hand[40 * k : 40 * (k + 1)]
            got = seg[26:39] if small else seg[:25]
            np.testing.assert_allclose(got, rv, atol=2e-4, err_msg=f"component {k} at {(r, c)}")
            if small:
                assert seg[39] == 1.0 and not seg[:26].any()
            else:
                assert seg[25] == 1.0 and not seg[26:].any()


def test_training_path_equals_inference_path(image):
    cfg = ModelConfig(feature_set="B")
    img = jnp.asarray(image)
    scales, cl, cs, _ = prepare_scales(img, cfg)
    f = edge_features(img, scales, cl, cs, cfg)
    ok = np.flatnonzero(np.asarray(f.valid))
    coords = f.coords[ok]
    ctx = extract_patches(img, coords, CONTEXT)
    hand = context_hand(ctx, f.small[ok], cfg)
    cnn = context_cnn(ctx, f.small[ok], cfg)
    np.testing.assert_allclose(np.asarray(hand), np.asarray(f.hand[ok]), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(cnn), np.asarray(f.cnn[ok]))


def test_uint8_context_roundtrip_matches(image):
    """Training stores 8-bit patches; features of the 8-bit image equal those of its patches."""
    cfg = ModelConfig(feature_set="H")
    img8 = np.round(image * 255).astype(np.uint8)
    coords = jnp.asarray([[0, 0], [10, 20], [63, 71], [30, 5]], jnp.int32)
    ctx8 = extract_patches(jnp.asarray(img8), coords, CONTEXT)
    a = context_hand(ctx8.astype(jnp.float32) / 255.0, jnp.asarray([False, True, False, True]), cfg)
    ctxf = extract_patches(jnp.asarray(img8 / 255.0, jnp.float32), coords, CONTEXT)
    b = context_hand(ctxf, jnp.asarray([False, True, False, True]), cfg)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.parametrize("encoding, width", [("separate", 145), ("separate_no_constants", 139),
                                             ("shared", 103), ("single_scale", 103)])
def test_widths_and_jit_equals_eager(image, encoding, width):
    cfg = ModelConfig(feature_set="B", encoding=encoding)
    assert cfg.input_width == width
    ctx = extract_patches(jnp.asarray(image), jnp.asarray([[5, 6], [30, 40]], jnp.int32), CONTEXT)
    small = jnp.asarray([False, True])
    eager = context_hand(ctx, small, cfg)
    jitted = jax.jit(context_hand, static_argnums=2)(ctx, small, cfg)
    assert eager.shape == (2, cfg.hand_width)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), atol=1e-6)
    if encoding == "single_scale":  # every patch is large, whatever its scale
        np.testing.assert_allclose(np.asarray(eager), np.asarray(scale_features(ctx, False, cfg).hand), atol=1e-6)


def test_no_recompilation_and_no_edges(image):
    cfg = ModelConfig(feature_set="H")
    img = jnp.asarray(image)
    scales, cl, cs, _ = prepare_scales(img, cfg)
    edge_features(img, scales, cl, cs, cfg)
    before = edge_features._cache_size()
    img2 = jnp.asarray(np.ascontiguousarray(image[::-1]))  # same size, different content
    s2, _, _, _ = prepare_scales(img2, cfg)
    edge_features(img2, s2, cl, cs, cfg)
    assert edge_features._cache_size() == before
    flat = extract_features(np.full((40, 40, 3), 0.5, np.float32), cfg)
    assert not np.asarray(flat.valid).any()
