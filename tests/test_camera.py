"""Camera realism of training patches: disk PSF, its Gaussian equivalent, exposure, noise, JPEG."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.io
import scipy.signal
from PIL import Image

from dhde.data.camera import (
    CameraConfig, camera_patches, disk_blur, disk_equivalent_sigma, disk_kernel,
    disk_radius_for_sigma, jpeg_roundtrip,
)


def _disk_blur_jax(img, radius):
    """Reference: the whole image convolved with the disk kernel by lax.conv, replicate borders."""
    import jax
    import jax.numpy as jnp

    k = jnp.asarray(disk_kernel(radius), jnp.float32)
    r = k.shape[0] // 2
    x = jnp.pad(jnp.asarray(img), ((r, r), (r, r), (0, 0)), mode="edge")
    x = jnp.moveaxis(x, -1, 0)[:, None]  # (C, 1, H, W)
    y = jax.lax.conv_general_dilated(x, k[None, None], (1, 1), "VALID", precision=jax.lax.Precision.HIGHEST)
    return jnp.moveaxis(y[:, 0], 0, -1)


def _coverage_brute(radius, n_sub=128):
    big = int(np.ceil(radius - 0.5))
    k = np.zeros((2 * big + 1, 2 * big + 1))
    t = (np.arange(n_sub) + 0.5) / n_sub - 0.5
    for i in range(-big, big + 1):
        for j in range(-big, big + 1):
            y, x = np.meshgrid(i + t, j + t, indexing="ij")
            k[i + big, j + big] = np.mean(x * x + y * y <= radius * radius)
    return k / k.sum()


@pytest.mark.parametrize("radius", [0.8, 1.5, 2.7, 4.0])
def test_disk_kernel_is_pixel_coverage(radius):
    k = disk_kernel(radius)
    assert k.shape[0] == k.shape[1] == 2 * int(np.ceil(radius - 0.5)) + 1
    np.testing.assert_allclose(k.sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(k, k.T)
    np.testing.assert_allclose(k, k[::-1, ::-1])
    np.testing.assert_allclose(k, _coverage_brute(radius), atol=4e-3)


def test_disk_kernel_rejects_bad_radius():
    for bad in (0, -1, np.nan, np.inf):
        with pytest.raises(ValueError, match="radius"):
            disk_kernel(bad)


def test_equivalent_sigma_continuous_limit():
    # a continuous disk's Gaussian-equivalent by an ESF fit (independent, in the test): ~0.543 r
    from scipy.optimize import minimize_scalar
    from scipy.special import erf

    r = 6.0
    x = np.linspace(-15, 15, 30001)
    lsf = np.where(np.abs(x) < r, 2 * np.sqrt(np.maximum(r * r - x * x, 0)) / (np.pi * r * r), 0)
    esf = np.cumsum(lsf) * (x[1] - x[0])
    s = minimize_scalar(lambda s: np.sum((esf - 0.5 * (1 + erf(x / (s * np.sqrt(2))))) ** 2),
                        bounds=(0.1, 10), method="bounded").x
    assert abs(disk_equivalent_sigma(r, base=0.0) - s) < 0.03
    assert disk_equivalent_sigma(r) == pytest.approx(np.hypot(disk_equivalent_sigma(r, base=0.0), 0.305))


def test_equivalent_sigma_matches_rtf_table(shared_data):
    table = scipy.io.loadmat(shared_data / "rtf" / "convertion.mat")["convertion"]
    for sigma, radius in table:
        assert abs(disk_equivalent_sigma(float(radius)) - sigma) <= 0.02, (radius, sigma)


@pytest.mark.parametrize("sigma", [0.5, 0.95, 1.4, 2.0])
def test_radius_for_sigma_inverts(sigma):
    r = disk_radius_for_sigma(sigma)
    assert abs(disk_equivalent_sigma(round(r, 6)) - sigma) < 1e-3
    with pytest.raises(ValueError, match="sigma"):
        disk_radius_for_sigma(10.0)


def test_disk_blur_matches_scipy_and_jax(rng):
    img = rng.random((20, 23, 3)).astype(np.float32)
    r = 2.3
    k = disk_kernel(r)
    b = k.shape[0] // 2
    ref = np.stack([scipy.signal.convolve2d(np.pad(img[..., c], b, mode="edge"), k, mode="valid")
                    for c in range(3)], -1)
    np.testing.assert_allclose(disk_blur(img, r), ref, atol=1e-5)
    np.testing.assert_allclose(np.asarray(_disk_blur_jax(img, r)), ref, atol=1e-5)


def test_camera_off_is_rounding(rng):
    p = rng.random((5, 9, 9, 3)).astype(np.float32)
    out = camera_patches(p, CameraConfig(), rng)
    np.testing.assert_array_equal(out, np.clip(np.round(p * 255), 0, 255).astype(np.uint8))


def test_noise_only_reproduces_the_noise_formula():
    p = np.random.default_rng(1).random((6, 9, 9, 3)).astype(np.float32)
    out = camera_patches(p, CameraConfig(noise=3.0), np.random.default_rng(5))
    r = np.random.default_rng(5)  # dhde 1.2.0's formula, written out
    std = (3.0 * r.random(6)).astype(np.float32)[:, None, None, None]
    ref = p * 255.0 + std * r.standard_normal(p.shape, dtype=np.float32)
    np.testing.assert_array_equal(out, np.clip(np.round(ref), 0, 255).astype(np.uint8))


def test_gain_and_offset_ranges(rng):
    p = np.full((400, 4, 4, 3), 0.8, np.float32)
    out = camera_patches(p, CameraConfig(gain_min=0.1), rng).astype(np.float64)
    g = out[:, 0, 0, 0] / (0.8 * 255)
    assert g.min() >= 0.1 - 0.01 and g.max() <= 1.0 + 0.01
    # log-uniform: the median gain is sqrt(0.1)
    assert abs(np.median(g) - np.sqrt(0.1)) < 0.05
    out = camera_patches(np.full((400, 4, 4, 3), 0.5, np.float32), CameraConfig(offset=0.1), rng)
    d = out[:, 0, 0, 0].astype(np.float64) / 255 - 0.5
    assert d.min() >= -0.1 - 0.005 and d.max() <= 0.1 + 0.005 and d.std() > 0.04


def test_jpeg_matches_pil_with_random_grid_phase(rng):
    p = rng.random((30, 45, 45, 3)).astype(np.float32)
    cfg = CameraConfig(jpeg=1.0, jpeg_min=70, jpeg_max=70)
    out = camera_patches(p, cfg, np.random.default_rng(3), jpeg_margin=8)
    assert out.shape == (30, 29, 29, 3)
    u8 = np.clip(np.round(p * 255), 0, 255).astype(np.uint8)
    r = np.random.default_rng(3)
    r.random(30), r.integers(70, 71, 30)
    phase = r.integers(0, 8, (30, 2))
    for i in range(30):
        dy, dx = phase[i]
        sub = u8[i, 8 - dy: 8 - dy + 37, 8 - dx: 8 - dx + 37]
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(sub)).save(buf, format="JPEG", quality=70)
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        np.testing.assert_array_equal(out[i], dec[dy: dy + 29, dx: dx + 29])
    assert np.abs(out.astype(int) - u8[:, 8:-8, 8:-8]).mean() > 1  # it did compress
    np.testing.assert_array_equal(jpeg_roundtrip(u8[0], 70).shape, u8[0].shape)


@pytest.mark.parametrize("kw,match", [
    (dict(gain_min=0), "gain_min"), (dict(offset=-0.1), "offset"), (dict(noise=np.nan), "noise"),
    (dict(jpeg=2), "jpeg"), (dict(jpeg_min=90, jpeg_max=80), "jpeg_min"), (dict(gain_min="a"), "gain_min"),
    (dict(jpeg_min=60.5), "integer"),
])
def test_camera_config_validates(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        CameraConfig(**kw)


def test_jpeg_margin_validated(rng):
    with pytest.raises(ValueError, match="jpeg_margin"):
        camera_patches(rng.random((1, 20, 20, 3)), CameraConfig(jpeg=1.0), rng, jpeg_margin=3)


def test_disk_patches_equal_whole_image_blur_inside(rng):
    import jax.numpy as jnp

    from dhde.data.patch_sampling import disk_patches
    from dhde.filters.patches import extract_patches

    img = rng.random((60, 70, 3)).astype(np.float32)
    coords = np.array([[20, 25], [30, 40], [16, 54]], np.int32)  # 29x29 patches inside
    a = disk_patches(jnp.asarray(img), jnp.asarray(coords), 29, 2.2)
    b = np.asarray(extract_patches(jnp.asarray(disk_blur(img, 2.2)), jnp.asarray(coords), 29))
    np.testing.assert_allclose(a, b, atol=1e-5)
