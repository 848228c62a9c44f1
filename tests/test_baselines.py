"""The Laplacian-energy blur score vs a SciPy reference, and its numbers on the CUHK sample."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from dhde.evaluation import baselines as B


def ref_baseline(img, window=15, eps=1e-6):
    v = np.asarray(img, np.float64).max(-1)
    lap = ndimage.correlate(v, np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float), mode="reflect")
    return -np.log(ndimage.uniform_filter(lap**2, window, mode="reflect") + eps)


def test_matches_scipy_reference(rng):
    img = rng.random((23, 31, 3)).astype(np.float32)
    img[:, :15] = ndimage.gaussian_filter(img[:, :15], (2, 2, 0))
    got = np.asarray(B.laplacian_baseline(img))
    assert got.shape == (23, 31) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref_baseline(img), rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(np.asarray(B.laplacian_baseline(img, window=5, eps=1e-3)),
                               ref_baseline(img, 5, 1e-3), rtol=2e-5, atol=2e-5)
    # blurred half scores higher (more blurred)
    assert got[:, 2:10].mean() > got[:, 20:].mean()


def test_constant_image_and_no_recompilation(rng):
    out = np.asarray(B.laplacian_baseline(np.full((20, 20, 3), 0.5, np.float32)))
    np.testing.assert_allclose(out, -np.log(1e-6), rtol=1e-6)
    size = B._laplacian_baseline._cache_size()
    B.laplacian_baseline(rng.random((20, 20, 3)).astype(np.float32))
    assert B._laplacian_baseline._cache_size() == size


def test_bad_inputs():
    with pytest.raises(ValueError, match="RGB"):
        B.laplacian_baseline(np.zeros((10, 10)))
    with pytest.raises(ValueError, match="odd"):
        B.laplacian_baseline(np.zeros((10, 10, 3)), window=4)
    with pytest.raises(ValueError, match="too large"):
        B.laplacian_baseline(np.zeros((10, 10, 3)), window=21)
    with pytest.raises(ValueError, match="NaN"):
        B.laplacian_baseline(np.full((10, 10, 3), np.nan))
    with pytest.raises(TypeError, match="float"):
        B.laplacian_baseline(np.zeros((10, 10, 3), np.uint8))


def test_cuhk_sample_numbers(shared_data):
    """The given numbers of the baseline on the four CUHK images (alpha 0.3, PR over images)."""
    from dhde.evaluation import evaluate_blur_detection, load_cuhk

    maps, masks = [], []
    for ex in load_cuhk(shared_data / "cuhk"):
        maps.append(np.asarray(B.laplacian_baseline(ex["image"])))
        masks.append(ex["mask"])
    r = evaluate_blur_detection(maps, masks)
    assert r["n_images"] == 4
    assert r["accuracy"] == pytest.approx(0.875, abs=0.002)
    assert r["max_f"] == pytest.approx(0.934, abs=0.002)
    assert r["mae"] == pytest.approx(0.313, abs=0.002)


@pytest.mark.slow
def test_stereo_motorcycle_numbers():
    """Sigma MAE on the rendered stereo_motorcycle scene (full size, near focus, min-max map)."""
    from dhde.evaluation import rescale_map, sigma_mae, stereo_motorcycle_scene

    image, sigma = stereo_motorcycle_scene()
    base = np.asarray(B.laplacian_baseline(image))
    assert sigma_mae(rescale_map(base, (0.5, 2.0)), sigma) == pytest.approx(0.376, abs=0.005)
    assert sigma_mae(np.full_like(sigma, 1.25), sigma) == pytest.approx(0.430, abs=0.002)
