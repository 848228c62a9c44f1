"""Screening of candidate training sources: photographs only, and only their sharp regions.

Packages such as ``plasma-workspace-wallpapers`` mix photographs with renderings and
illustrations, and photographs have out-of-focus regions (bokeh backgrounds). A blurred region
labelled "sharp + sigma" teaches the classifier wrong labels, and a rendering's perfectly flat
colours and synthetic gradients are not what a camera sees. Two measurements, both made on the
box-downscaled image the patches are cut from, decide:

* per image (:func:`image_stats`, :func:`screen`): the fraction of exactly flat pixels (an 8-bit
  Laplacian of 0 in every channel: renderings and illustrations have large noise-free areas,
  photographs have sensor noise and texture), the number of distinct colours per pixel, the
  strong-edge density at the training thresholds, and the share of strong-edge pixels that the
  re-blur estimate calls sharp;
* per edge pixel (:func:`reblur_sigma`, :func:`sharp_edge_mask`): the re-blur ratio estimate of
  Zhuo and Sim (2011), sigma = s0 / sqrt(R^2 - 1) with R the ratio of the gradient magnitude to
  that of the image re-blurred by s0 = 1 px. It is model-free (no classifier's opinion enters
  the data set), and it reads about 0.84 on an ideal step, 1.0 at a true sigma of 0.7 and 1.22
  at 1.0 (central differences; see the tests). Edge pixels above ``max_sigma`` are not used.

The thresholds (:data:`RULES`) were chosen from a survey of every candidate of the four Debian
packages (see the README's data section); :func:`screen` returns the reason of every decision,
and the data set's manifest records it.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from dhde import checks

#: Screening thresholds (measured; see the module docstring).
RULES = {
    "min_side": 96,          # px after downscaling: smaller images give too few patches
    "max_flat": 0.20,        # fraction of pixels with an 8-bit Laplacian of exactly 0
    "min_colors": 0.12,      # distinct colours per pixel
    "min_strong": 0.0005,    # strong-edge pixels per pixel at the training thresholds
    "min_sharp_share": 0.5,  # share of strong-edge pixels whose re-blur sigma <= max_sigma
    "max_sigma": 1.0,        # re-blur estimate above which an edge pixel counts as blurred
}


#: Sources whose measurements look like a photograph's but which are paintings, illustrations or
#: synthetic images (found by looking at every kept candidate; name -> what it is).
NOT_PHOTOGRAPHS = {
    "mate-backgrounds/abstract/Elephants": "painting",
    "mate-backgrounds/desktop/Float-into-MATE": "rendering",
    "opencv-doc/pic2.png": "synthetic shapes with added noise",
    "opencv-doc/starry_night.jpg": "painting",
    "plasma-workspace-wallpapers/Autumn": "painting",
    "plasma-workspace-wallpapers/SafeLanding": "illustration",
}


def reblur_sigma(gray: np.ndarray, s0: float = 1.0) -> np.ndarray:
    """Zhuo-Sim re-blur estimate of the local Gaussian blur (pixels), meaningful at edges.

    Args:
      gray: (H, W) float image (any range).
      s0: the re-blur sigma in pixels.

    Returns:
      (H, W) float32 sigma estimates, s0 / sqrt(max(R^2 - 1, 1e-6)) with R = |grad I| / |grad
      (I * G_s0)|, gradients by central differences. Large where there is no edge.
    """
    gray = np.asarray(checks.as_array(gray, "gray", "reblur_sigma"), np.float64)
    s0 = checks.scalar(s0, "s0 (px)", lo=0.0, lo_open=True, where="reblur_sigma")
    if gray.ndim != 2:
        raise ValueError(f"reblur_sigma expects an (H, W) image, got shape {gray.shape}")
    g1 = np.hypot(*np.gradient(gray))
    g2 = np.hypot(*np.gradient(gaussian_filter(gray, s0, mode="nearest")))
    r = g1 / np.maximum(g2, 1e-12)
    return (s0 / np.sqrt(np.maximum(r * r - 1.0, 1e-6))).astype(np.float32)


def sharp_edge_mask(gray: np.ndarray, scales: np.ndarray, max_sigma: float = RULES["max_sigma"]) -> np.ndarray:
    """(H, W) bool: edge pixels (``scales > 0``) whose re-blur estimate is at most ``max_sigma``.

    Args:
      gray: (H, W) float image. scales: (H, W) int scale map (0 = no edge).
      max_sigma: the largest re-blur sigma (px) that counts as sharp, > 0.
    """
    max_sigma = checks.scalar(max_sigma, "max_sigma (px)", lo=0.0, lo_open=True, where="sharp_edge_mask")
    if np.shape(gray) != np.shape(scales):
        raise ValueError(f"gray {np.shape(gray)} and scales {np.shape(scales)} differ in shape")
    return (np.asarray(scales) > 0) & (reblur_sigma(gray) <= max_sigma)


def image_stats(rgb: np.ndarray, scales: np.ndarray) -> dict:
    """Screening measurements of one downscaled source image.

    Args:
      rgb: (H, W, 3) float in [0, 1].
      scales: (H, W) int training scale map (1 weak, 2 strong, 0 none).

    Returns:
      dict with ``h``, ``w``, ``flat``, ``colors``, ``strong``, ``sharp_share`` (floats).
    """
    u8 = np.round(np.clip(rgb, 0, 1) * 255).astype(np.int32)
    h, w = u8.shape[:2]
    lap = np.abs(4 * u8[1:-1, 1:-1] - u8[:-2, 1:-1] - u8[2:, 1:-1] - u8[1:-1, :-2] - u8[1:-1, 2:]).max(-1)
    codes = (u8[..., 0] << 16) | (u8[..., 1] << 8) | u8[..., 2]
    strong = np.asarray(scales) == 2
    gray = u8.max(-1) / 255.0
    sharp = sharp_edge_mask(gray, strong.astype(np.int32))
    return {
        "h": int(h), "w": int(w),
        "flat": float((lap == 0).mean()) if lap.size else 1.0,
        "colors": float(len(np.unique(codes)) / codes.size),
        "strong": float(strong.mean()),
        "sharp_share": float(sharp.sum() / max(int(strong.sum()), 1)),
    }


def screen(stats: dict, rules: dict = RULES, name: str | None = None) -> tuple[bool, str]:
    """(kept, reason) for an image's :func:`image_stats`; the reason names the failed rule.

    ``name``: the source's name, checked against :data:`NOT_PHOTOGRAPHS` first.
    """
    if name in NOT_PHOTOGRAPHS:
        return False, f"not a photograph (inspected: {NOT_PHOTOGRAPHS[name]})"
    if min(stats["h"], stats["w"]) < rules["min_side"]:
        return False, f"too small after downscaling ({stats['h']}x{stats['w']} < {rules['min_side']})"
    if stats["flat"] > rules["max_flat"]:
        return False, f"rendering/illustration: {stats['flat']:.2f} of pixels exactly flat (> {rules['max_flat']})"
    if stats["colors"] < rules["min_colors"]:
        return False, f"rendering/illustration: {stats['colors']:.3f} colours per pixel (< {rules['min_colors']})"
    if stats["strong"] < rules["min_strong"]:
        return False, f"few strong edges: density {stats['strong']:.4f} (< {rules['min_strong']})"
    if stats["sharp_share"] < rules["min_sharp_share"]:
        return False, (f"mostly out of focus: {stats['sharp_share']:.2f} of strong edges sharp "
                       f"(< {rules['min_sharp_share']})")
    return True, "photograph"
