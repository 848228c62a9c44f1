"""What a camera does to a blurred edge patch: disk PSF, exposure, noise, 8 bits, JPEG.

The paper blurs sharp ImageNet patches with Gaussians and nothing else. A photograph the model
meets later was also exposed (a gain and an offset), carries sensor noise, is rounded to 8 bits
and usually JPEG-compressed, and real defocus is closer to a disk (pillbox) than to a Gaussian.
A classifier that never saw these reads them as blur (a photograph darkened to 0.25x read 1.01 px
instead of 0.53 with the model trained without them). This module applies them to training
patches, each one an option of the data set (``dhde.data.defocus_patches``):

* :func:`disk_kernel` / :func:`disk_radius_for_sigma`: the pillbox PSF whose Gaussian-equivalent
  sigma is the label. The equivalence (:func:`disk_equivalent_sigma`) is an edge-spread-function
  fit plus 0.305 px in quadrature, which reproduces the RTF data set's conversion table within
  0.015 px (the table itself cannot ship with dhde).
* :func:`camera_patches`: per patch, exposure ``gain * x + offset`` (gain log-uniform in
  [``gain_min``, 1], offset uniform in +-``offset``), then Gaussian noise (std uniform in [0,
  ``noise``] grey levels), then rounding to uint8, then JPEG at a quality uniform in
  [``jpeg_min``, ``jpeg_max``] with probability ``jpeg``. Gain and offset come before noise and
  rounding, as in a camera.

All functions are NumPy (host side, data building); the randomness comes from an explicit
``numpy.random.Generator``, so a build is reproducible from its seed.
"""

from __future__ import annotations

import dataclasses
import io
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq, minimize_scalar
from scipy.special import erf

from dhde import checks

#: Supersampling per pixel side when integrating the disk over each pixel.
_SUPERSAMPLE = 64


def disk_kernel(radius: float) -> np.ndarray:
    """Anti-aliased pillbox PSF (as MATLAB's ``fspecial('disk', r)``): pixel-area coverage.

    Args:
      radius: disk radius in pixels, > 0.

    Returns:
      (2R+1, 2R+1) float64 kernel summing to 1, R = ceil(radius - 0.5). Each entry is the
      fraction of that pixel's square covered by the disk (integrated on a 64x64 sub-grid).
    """
    radius = checks.scalar(radius, "disk radius (pixels)", lo=0.0, lo_open=True)
    big = int(np.ceil(radius - 0.5))
    n = 2 * big + 1
    s = _SUPERSAMPLE
    sub = (np.arange(n * s) + 0.5) / s - big - 0.5  # sub-sample centres, pixel 0 at the middle
    inside = (sub[:, None] ** 2 + sub[None, :] ** 2) <= radius * radius
    k = inside.reshape(n, s, n, s).mean(axis=(1, 3))
    if k.sum() == 0:  # radius below half a sub-sample: a delta
        k[big, big] = 1.0
    return k / k.sum()


def _gaussian_esf(x: np.ndarray, sigma: float) -> np.ndarray:
    return 0.5 * (1.0 + erf(x / (sigma * np.sqrt(2.0))))


#: The RTF data set's disk-to-Gaussian conversion table is reproduced (within 0.015 px at all
#: of its 23 radii, 0.5-6 px) by the edge-spread fit below plus this sigma in quadrature: the
#: table was calibrated with about 0.3 px of blur of its own. Labels follow the table.
RTF_BASE_SIGMA = 0.305


def _esf_fit_sigma(radius: float) -> float:
    k = disk_kernel(radius)
    lsf = k.sum(axis=0)
    half = len(lsf) // 2
    pad = int(np.ceil(4 * radius)) + 4
    lsf = np.pad(lsf, pad)
    x = np.arange(len(lsf)) - (half + pad)
    esf = np.cumsum(lsf)  # value after pixel x: the step blurred, sampled at x + 0.5
    xs = x + 0.5

    def cost(sigma):
        return float(np.sum((esf - _gaussian_esf(xs, sigma)) ** 2))

    res = minimize_scalar(cost, bounds=(0.01, 2.0 * radius + 1.0), method="bounded",
                          options={"xatol": 1e-5})
    return float(res.x)


@lru_cache(maxsize=None)
def disk_equivalent_sigma(radius: float, base: float = RTF_BASE_SIGMA) -> float:
    """Gaussian sigma (pixels) equivalent to a disk PSF of ``radius`` pixels.

    A least-squares fit of a Gaussian edge-spread function to the disk kernel's, both sampled
    at pixel centres (a blurred step edge, as an edge-based estimator sees it), combined in
    quadrature with ``base``: sqrt(fit^2 + base^2). With the default base this reproduces the
    RTF data set's conversion table (``convertion.mat``) within 0.015 px for radii 0.5-6 px;
    ``base=0`` gives the pure fit (about 0.543 r for large r).
    """
    return float(np.hypot(_esf_fit_sigma(radius), base))


def disk_radius_for_sigma(sigma: float) -> float:
    """Disk radius (pixels) whose Gaussian-equivalent sigma (:func:`disk_equivalent_sigma`) is ``sigma``.

    Args:
      sigma: Gaussian sigma in pixels, in [0.35, 6].
    """
    sigma = checks.scalar(sigma, "sigma (px, of a disk equivalent)", lo=0.35, hi=6.0)
    return float(brentq(lambda r: disk_equivalent_sigma(round(r, 6)) - sigma, 0.3, 13.0, xtol=1e-4))


def disk_blur(image: np.ndarray, radius: float) -> np.ndarray:
    """(H, W[, C]) float image convolved with :func:`disk_kernel`, replicate borders (float32)."""
    from scipy.ndimage import convolve

    image = np.asarray(image, np.float32)
    k = disk_kernel(radius).astype(np.float32)
    if image.ndim == 2:
        return convolve(image, k, mode="nearest")
    if image.ndim == 3:
        return np.stack([convolve(image[..., c], k, mode="nearest") for c in range(image.shape[-1])], -1)
    raise ValueError(f"disk_blur expects (H, W) or (H, W, C), got shape {image.shape}")


@dataclasses.dataclass(frozen=True)
class CameraConfig:
    """Camera realism of the training patches (all off = the authors' clean patches).

    Attributes:
      gain_min: exposure gain drawn log-uniformly in [gain_min, 1] per patch (1 = off).
      offset: exposure offset uniform in [-offset, offset], fraction of the range (0 = off).
      noise: largest std of Gaussian sensor noise, grey levels of 255 (std uniform in [0, noise]).
      jpeg: probability that a patch is JPEG-compressed (0 = never).
      jpeg_min, jpeg_max: JPEG quality range (uniform integers).
    """

    gain_min: float = 1.0
    offset: float = 0.0
    noise: float = 0.0
    jpeg: float = 0.0
    jpeg_min: int = 60
    jpeg_max: int = 95

    def __post_init__(self):
        def num(name, lo, hi):
            checks.scalar(getattr(self, name), f"camera option {name}", lo=lo, hi=hi)

        num("gain_min", 0.01, 1.0)
        num("offset", 0.0, 0.5)
        num("noise", 0.0, 50.0)
        num("jpeg", 0.0, 1.0)
        num("jpeg_min", 1, 100)
        num("jpeg_max", 1, 100)
        if int(self.jpeg_min) != self.jpeg_min or int(self.jpeg_max) != self.jpeg_max:
            raise ValueError(f"JPEG qualities must be integers, got {self.jpeg_min}, {self.jpeg_max}")
        if self.jpeg_min > self.jpeg_max:
            raise ValueError(f"jpeg_min ({self.jpeg_min}) must not exceed jpeg_max ({self.jpeg_max})")

    @property
    def active(self) -> bool:
        return self.gain_min < 1 or self.offset > 0 or self.noise > 0 or self.jpeg > 0


def jpeg_roundtrip(patch_u8: np.ndarray, quality: int) -> np.ndarray:
    """(h, w, 3) uint8 -> the same patch JPEG-encoded at ``quality`` (PIL, 4:2:0) and decoded."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(patch_u8).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), np.uint8)


def camera_patches(patches: np.ndarray, cfg: CameraConfig, rng: np.random.Generator,
                   jpeg_margin: int = 0) -> np.ndarray:
    """Applies exposure, noise, 8-bit rounding and JPEG to blurred patches.

    Args:
      patches: (M, h, w, 3) float in [0, 1] (blurred, not yet rounded).
      cfg: what to apply (see :class:`CameraConfig`).
      rng: the randomness (one draw per patch of gain, offset, noise std, JPEG and quality).
      jpeg_margin: the patches carry this many extra pixels on each side, used only to place the
        JPEG 8x8 grid at a random phase; the result is cropped by it.

    Returns:
      (M, h - 2 jpeg_margin, w - 2 jpeg_margin, 3) uint8.
    """
    p = np.asarray(checks.as_array(patches, "patches"), np.float32)
    if p.ndim != 4 or p.shape[-1] != 3:
        raise ValueError(f"patches must be (M, h, w, 3), got {p.shape}")
    e = checks.integer(jpeg_margin, "jpeg_margin", lo=0)
    if e not in (0,) and e < 8:
        raise ValueError(f"jpeg_margin must be 0 or >= 8 (one JPEG block), got {jpeg_margin!r}")
    m = len(p)
    x = p * 255.0
    # draws in a fixed order (noise first: a noise-only config reproduces dhde's earlier data)
    if cfg.noise > 0:
        std = (cfg.noise * rng.random(m)).astype(np.float32)[:, None, None, None]
        noise = std * rng.standard_normal(x.shape, dtype=np.float32)
    if cfg.gain_min < 1:
        gain = np.exp(rng.uniform(np.log(cfg.gain_min), 0.0, m)).astype(np.float32)
        x = x * gain[:, None, None, None]
    if cfg.offset > 0:
        off = rng.uniform(-cfg.offset, cfg.offset, m).astype(np.float32)
        x = x + 255.0 * off[:, None, None, None]
    if cfg.noise > 0:
        x = x + noise
    x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    if cfg.jpeg > 0:
        use_jpeg = rng.random(m) < cfg.jpeg
        quality = rng.integers(int(cfg.jpeg_min), int(cfg.jpeg_max) + 1, m)
        phase = rng.integers(0, 8, (m, 2))
    else:
        use_jpeg = np.zeros(m, bool)
    h, w = x.shape[1] - 2 * e, x.shape[2] - 2 * e
    out = np.empty((m, h, w, 3), np.uint8)
    for i in range(m):
        if use_jpeg[i]:
            dy, dx = phase[i] if e else (0, 0)
            # the JPEG grid starts dy, dx pixels before the centre crop: a random block phase
            sub = x[i, e - dy: e - dy + h + 8, e - dx: e - dx + w + 8] if e else x[i]
            dec = jpeg_roundtrip(np.ascontiguousarray(sub), quality[i])
            out[i] = dec[dy: dy + h, dx: dx + w]
        else:
            out[i] = x[i, e: e + h, e: e + w]
    return out
