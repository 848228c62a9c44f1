"""Training patches from one sharp photograph (paper 5.1): pick edge pixels, blur 11 ways, cut.

For one (already box-downscaled) sharp image, :func:`image_examples` does what the data set
:mod:`dhde.data.defocus_patches` does per source photograph:

* the scale map with the *training* thresholds (twice the estimation ones) picks strong-edge
  pixels (scale 2, small patches) and weak-edge pixels (scale 1, large patches); both scales are
  balanced by random subsampling to the smaller count, at most ``max_per_scale`` each
  (:func:`choose_pixels`); with ``screen``, only edge pixels the re-blur estimate calls sharp
  (:func:`dhde.data.screening.sharp_edge_mask`);
* the whole image is blurred with each of the 11 Gaussians (sigma = 0.5 ... 2.0, 27x27 kernel,
  replicate borders, as the authors' code), or per patch with the disk PSF of the same
  Gaussian-equivalent sigma (``disk``), and a 29x29 *context patch* (the 27x27 patch plus a
  one-pixel ring, see ``dhde.features.pipeline``) is cut around each chosen pixel
  (:func:`blurred_context_patches`);
* camera effects (noise, exposure, JPEG: :mod:`dhde.data.camera`) and 8-bit rounding follow.

:func:`image_phases` picks the downscale sampling phases of one photograph. All randomness comes
from a ``numpy.random.Generator`` seeded by (seed, hash of the image key): a build is
reproducible.
"""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np

from dhde import checks
from dhde.data.camera import CameraConfig, camera_patches, disk_kernel, disk_radius_for_sigma
from dhde.filters.edges import TRAINING_THRESHOLDS, scale_map
from dhde.filters.gaussian import gaussian_blur
from dhde.filters.patches import CONTEXT, extract_patches
from dhde.io.image import value_channel
from dhde.labels import NUM_LABELS, SIGMAS

#: Radius of the authors' training blur kernel (27x27).
BLUR_RADIUS = 13


def choose_pixels(scales: np.ndarray, max_per_scale: int, rng: np.random.Generator):
    """Balanced random subsample of scale-1 and scale-2 pixels.

    Args:
      scales: (H, W) int scale map (1 weak edge, 2 strong edge, 0 none).
      max_per_scale: int >= 0, the most pixels kept per scale.
      rng: the randomness of the subsample.

    Returns (coords (M, 2) int32 row/col, scale (M,) int32), M = 2 * min(n1, n2, max_per_scale),
    sorted by (scale, row, col) so the result does not depend on hash order.
    """
    max_per_scale = checks.integer(max_per_scale, "max_per_scale", lo=0)
    picks = []
    n = min(int((scales == 1).sum()), int((scales == 2).sum()), max_per_scale)
    for s in (1, 2):
        rc = np.argwhere(scales == s)
        if n:
            sel = np.sort(rng.choice(len(rc), size=n, replace=False))
            picks.append((rc[sel].astype(np.int32), np.full(n, s, np.int32)))
    if not picks:
        return np.zeros((0, 2), np.int32), np.zeros((0,), np.int32)
    return np.concatenate([p[0] for p in picks]), np.concatenate([p[1] for p in picks])


def disk_patches(img: jax.Array, coords: jax.Array, size: int, radius: float) -> np.ndarray:
    """(M, size, size, 3) patches of the disk-blurred image, cut without blurring the image.

    Each patch is cut ``size + 2R`` wide from the sharp image (clamp indexing = replicate
    borders) and convolved ``valid`` with the kernel: for a fraction of the work, the same
    numbers as blurring the whole image and cutting ``size`` wherever the patch lies inside the
    image (beyond the border the sharp image is replicated before the blur, not after).

    Args:
      img: (H, W, 3) float32 sharp image in [0, 1].
      coords: (M, 2) int row/col patch centres.
      size: patch side in pixels (odd).
      radius: disk radius in pixels (> 0, see :func:`dhde.data.camera.disk_kernel`).
    """
    from scipy.signal import fftconvolve

    k = disk_kernel(radius).astype(np.float32)
    r = k.shape[0] // 2
    big = np.asarray(extract_patches(img, coords, size + 2 * r), np.float32)
    return fftconvolve(big, k[None, :, :, None], mode="valid", axes=(1, 2)).astype(np.float32)


def blurred_context_patches(rgb: np.ndarray, coords: np.ndarray, noise: float = 0.0,
                            rng: np.random.Generator | None = None,
                            camera: CameraConfig | None = None, disk: float = 0.0) -> np.ndarray:
    """(11, M, 29, 29, 3) uint8 context patches of the image blurred with each sigma.

    Args:
      rgb: (H, W, 3) float image in [0, 1].
      coords: (M, 2) int row/col patch centres.
      noise: largest noise std in grey levels of 255; each of the 11 x M patches gets i.i.d.
        Gaussian noise of std ``noise * u``, u ~ U(0, 1), before it is rounded to uint8.
        Ignored when ``camera`` is given (its ``noise`` field counts).
      rng: source of the randomness (required when anything random is on).
      camera: exposure, noise, 8-bit rounding and JPEG per patch (``dhde.data.camera``); None:
        noise only.
      disk: fraction of the patches (drawn per patch and sigma) blurred with the disk PSF of the
        same Gaussian-equivalent sigma instead of the Gaussian.
    """
    camera = CameraConfig(noise=checks.scalar(noise, "noise", lo=0.0)) if camera is None else camera
    disk = checks.scalar(disk, "disk (a fraction)", lo=0.0, hi=1.0)
    if (camera.active or disk > 0) and rng is None:
        raise ValueError("noise, exposure, JPEG or disk blur need an rng")
    margin = 8 if camera.jpeg > 0 else 0
    out = []
    img = jnp.asarray(rgb)
    cj = jnp.asarray(coords)
    for sigma in SIGMAS:
        b = gaussian_blur(img, float(sigma), radius=BLUR_RADIUS)
        p = np.array(extract_patches(b, cj, CONTEXT + 2 * margin), np.float32)
        if disk > 0:
            use = rng.random(len(coords)) < disk
            if use.any():
                p[use] = disk_patches(img, cj[np.flatnonzero(use)], CONTEXT + 2 * margin,
                                       disk_radius_for_sigma(float(sigma)))
        if camera.active:
            out.append(camera_patches(p, camera, rng, jpeg_margin=margin))
        else:
            out.append(np.clip(np.round(p * 255.0), 0, 255).astype(np.uint8))
    return np.stack(out)


def image_examples(name: str, rgb: np.ndarray, max_per_scale: int, seed: int, key: str | None = None,
                   noise: float = 0.0, camera: CameraConfig | None = None, disk: float = 0.0,
                   screen: bool = False):
    """Yields (key, example) pairs for one sharp image; ``name`` is its source photograph and
    ``key`` (default ``name``) tells apart the downscaled phases of one photograph.

    ``screen``: only edge pixels that ``dhde.data.screening.sharp_edge_mask`` calls sharp.
    """
    key = name if key is None else key
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    rng = np.random.default_rng([seed, h])
    gray = value_channel(jnp.asarray(rgb))
    scales = np.asarray(scale_map(gray, TRAINING_THRESHOLDS))
    if screen:
        from dhde.data.screening import sharp_edge_mask

        scales = np.where(sharp_edge_mask(np.asarray(gray), scales), scales, 0)
    coords, scale = choose_pixels(scales, max_per_scale, rng)
    if len(coords) == 0:
        return
    patches = blurred_context_patches(rgb, coords, noise, rng, camera, disk)
    for label in range(NUM_LABELS):
        for i in range(len(coords)):
            yield f"{key}/{label}/{i}", {
                "patch": patches[label, i],
                "scale": int(scale[i]),
                "label": label,
                "sigma": float(SIGMAS[label]),
                "row": int(coords[i, 0]),
                "col": int(coords[i, 1]),
                "source": name,
                "image": key,
            }


def image_phases(name: str, factor: int, phases: bool | int, seed: int = 0) -> list[tuple[int, int]]:
    """The downscale sampling phases used for one source image.

    Args:
      name: the source photograph's name (hashed with ``seed`` to draw the phases).
      factor: the box-downscale factor, an int >= 1.
      phases: True: all ``factor**2`` phases; False: only (0, 0); an int n >= 1: n of them, drawn
        from a hash of (seed, name) (all of them when n >= factor**2).

    Returns:
      sorted list of (row, col) phase offsets in [0, factor).
    """
    factor = checks.integer(factor, "factor", lo=1)
    allp = [(dy, dx) for dy in range(factor) for dx in range(factor)]
    if phases is True:
        return allp
    if phases is False:
        return [(0, 0)]
    n = checks.integer(phases, "phases (True, False or an int)", lo=1)
    if n >= len(allp):
        return allp
    h = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")
    pick = np.random.default_rng([seed, h]).choice(len(allp), n, replace=False)
    return [allp[i] for i in sorted(pick)]
