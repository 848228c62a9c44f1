"""TFDS builder of the synthetic training set (paper 5.1): sharp edge patches, blurred 11 ways.

Every source photograph is first box-downscaled by ``downscale`` (default 3, all
``downscale**2`` sampling phases, see ``dhde.data.sources.area_downscale``) so that the "sharp"
patches really are sharp: at native resolution the bundled photographs carry sigma ~0.5-0.8 of
blur of their own, which shifts labels by one class or more. For every such sharp image:
the scale map with the *training* thresholds (twice the
estimation ones) picks strong-edge pixels (scale 2, small patches) and weak-edge pixels (scale 1,
large patches); both scales are balanced by random subsampling to the smaller count (at most
``max_per_scale`` each). The whole image is then blurred with each of the 11 Gaussians
(sigma = 0.5 ... 2.0, 27x27 kernel, replicate borders, as the authors' code) and a 29x29
*context patch* (the 27x27 patch plus a one-pixel ring, see ``dhde.features.pipeline``) is cut
around each chosen pixel. Gaussian sensor noise is added to it (std drawn per patch uniformly in
[0, ``noise``] grey levels of 255; the authors trained on noise-free patches) and it is
quantised to 8 bits like a photograph. Splits are by whole source image.

Why the noise: the downscaled, blurred sources are practically noise-free, and a model trained on
them reads noise as sharpness. With the previous noise-free model a uniform sigma = 3 blur
measured 1.97 clean but 1.69 with noise of std 1 grey level and 1.20 with std 2, which is what
real photographs (JPEG, a grey level or two of noise) carry.

The data set is written as array_record and read with ``tfds.data_source`` (no TensorFlow):

    builder = DefocusPatches(config=DefocusPatchesConfig(name="default"), data_dir=...)
    builder.download_and_prepare()
    train = builder.as_data_source()["train"]
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds
from tqdm.auto import tqdm

from dhde.data.camera import CameraConfig, camera_patches, disk_radius_for_sigma
from dhde.data.sources import SPLITS, area_downscale, iter_source, source_entries
from dhde.data.tfds_compat import InPackageBuilderMixin
from dhde.filters.edges import TRAINING_THRESHOLDS, scale_map
from dhde.filters.gaussian import gaussian_blur
from dhde.io.image import value_channel
from dhde.labels import NUM_LABELS, SIGMAS
from dhde.filters.patches import CONTEXT, extract_patches

#: Radius of the authors' training blur kernel (27x27).
BLUR_RADIUS = 13


@dataclasses.dataclass
class DefocusPatchesConfig(tfds.core.BuilderConfig):
    """What to build.

    Attributes:
      source: "skimage" (photographs in scikit-image's wheel), "folder:/path/to/images", or
        "tfds:name" (any TFDS image data set, e.g. "tfds:imagenet2012" after its manual download).
      max_per_scale: at most this many patches per scale per (downscaled, phase) image, before
        the x 11 blurs.
      max_images: at most this many source images per split (None: all).
      downscale: box-downscale factor applied to every source photograph (1 = native).
      phases: True: all ``downscale**2`` sampling phases; False: only phase (0, 0); an integer
        n: n of them, drawn per image from a hash of its name (large photographs need fewer).
      noise: largest std of the Gaussian noise added to each blurred patch, in grey levels of 255
        (per patch uniform in [0, noise]; 0 = noise-free, as the authors' data).
      gain_min, offset: exposure jitter per patch, gain log-uniform in [gain_min, 1] and offset
        uniform in +-offset (fraction of the range), before noise and rounding (1, 0 = off).
      jpeg, jpeg_min, jpeg_max: probability of JPEG compression per patch and its quality range.
      disk: fraction of the patches blurred with a disk (pillbox) PSF instead of the Gaussian;
        its radius has the label's sigma as Gaussian equivalent (``dhde.data.camera``).
      screen: screen the sources (``dhde.data.screening``): keep photographs only and, in them,
        only edge pixels the re-blur estimate calls sharp. A ``manifest.json`` records every
        source file's decision.
      seed: seed of the subsampling, the noise and the folder/TFDS split assignment.
      source_data_dir: TFDS data_dir of a "tfds:" source.
    """

    source: str = "skimage"
    max_per_scale: int = 300
    max_images: int | None = None
    seed: int = 0
    source_data_dir: str | None = None
    downscale: int = 3
    phases: bool | int = True
    noise: float = 3.0
    gain_min: float = 1.0
    offset: float = 0.0
    jpeg: float = 0.0
    jpeg_min: int = 60
    jpeg_max: int = 95
    disk: float = 0.0
    screen: bool = False

    def camera(self) -> CameraConfig:
        return CameraConfig(gain_min=self.gain_min, offset=self.offset, noise=self.noise,
                            jpeg=self.jpeg, jpeg_min=self.jpeg_min, jpeg_max=self.jpeg_max)


def choose_pixels(scales: np.ndarray, max_per_scale: int, rng: np.random.Generator):
    """Balanced random subsample of scale-1 and scale-2 pixels.

    Returns (coords (M, 2) int32 row/col, scale (M,) int32), M = 2 * min(n1, n2, max_per_scale),
    sorted by (scale, row, col) so the result does not depend on hash order.
    """
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


def _check_noise(noise) -> float:
    noise = float(noise)
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite std >= 0 (grey levels), got {noise!r}")
    return noise


def _disk_patches(img: jax.Array, coords: jax.Array, size: int, radius: float) -> np.ndarray:
    """(M, size, size, 3) patches of the disk-blurred image, cut without blurring the image.

    Each patch is cut ``size + 2R`` wide from the sharp image (clamp indexing = replicate
    borders) and convolved ``valid`` with the kernel: for a fraction of the work, the same
    numbers as blurring the whole image and cutting ``size`` wherever the patch lies inside the
    image (beyond the border the sharp image is replicated before the blur, not after).
    """
    from scipy.signal import fftconvolve

    from dhde.data.camera import disk_kernel

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
    camera = CameraConfig(noise=_check_noise(noise)) if camera is None else camera
    if not (0.0 <= float(disk) <= 1.0):
        raise ValueError(f"disk must be a fraction in [0, 1], got {disk!r}")
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
                p[use] = _disk_patches(img, cj[np.flatnonzero(use)], CONTEXT + 2 * margin,
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
    """The downscale sampling phases used for one source image (see ``DefocusPatchesConfig.phases``)."""
    allp = [(dy, dx) for dy in range(factor) for dx in range(factor)]
    if phases is True:
        return allp
    if phases is False:
        return [(0, 0)]
    n = int(phases)
    if n < 1:
        raise ValueError(f"phases must be True, False or an integer >= 1, got {phases!r}")
    if n >= len(allp):
        return allp
    h = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")
    pick = np.random.default_rng([seed, h]).choice(len(allp), n, replace=False)
    return [allp[i] for i in sorted(pick)]


class DefocusPatches(InPackageBuilderMixin, tfds.core.GeneratorBasedBuilder):
    """Synthetically blurred multi-scale edge patches with 11 blur labels."""

    VERSION = tfds.core.Version("1.3.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Sources box-downscaled 3x (all nine phases); blurry sources left out.",
        "1.2.0": "Gaussian noise (std uniform in [0, noise] grey levels) on every blurred patch.",
        "1.3.0": "Debian photograph sources with screening and a manifest; camera realism "
                 "(exposure, JPEG) and disk PSF options.",
    }
    BUILDER_CONFIGS = [
        DefocusPatchesConfig(name="default", description="scikit-image photographs, 3x, 300/scale/phase"),
        DefocusPatchesConfig(name="tiny", description="smoke tests", max_per_scale=20, max_images=2),
    ]
    DEFAULT_CONFIG_NAME = "default"

    def __init__(self, *, file_format="array_record", **kwargs):
        super().__init__(file_format=file_format, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "patch": tfds.features.Tensor(shape=(CONTEXT, CONTEXT, 3), dtype=np.uint8),
                    "scale": tfds.features.Scalar(dtype=np.int32, doc="1 = large 27x27, 2 = small 15x15"),
                    "label": tfds.features.ClassLabel(num_classes=NUM_LABELS),
                    "sigma": tfds.features.Scalar(dtype=np.float32, doc="Gaussian blur sigma, pixels"),
                    "row": tfds.features.Scalar(dtype=np.int32),
                    "col": tfds.features.Scalar(dtype=np.int32),
                    "source": tfds.features.Text(doc="source photograph (the unit of the split)"),
                    "image": tfds.features.Text(doc="source@{factor}x{row phase}{col phase}"),
                }
            ),
            supervised_keys=("patch", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing is downloaded
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str):
        cfg = self.builder_config
        images = iter_source(
            cfg.source, split, data_dir=cfg.source_data_dir, max_images=cfg.max_images, seed=cfg.seed,
            downscale=int(cfg.downscale),
        )
        k = int(cfg.downscale)
        camera = cfg.camera()
        for name, rgb in tqdm(images, desc=f"{split} source images", unit="img"):
            for phase in image_phases(name, k, cfg.phases, cfg.seed):
                small = area_downscale(rgb, k, phase)
                if min(small.shape[:2]) < CONTEXT:
                    print(f"skipping {name}: smaller than a {CONTEXT}x{CONTEXT} patch after {k}x downscale")
                    break
                key = name if k == 1 else f"{name}@{k}x{phase[0]}{phase[1]}"
                yield from image_examples(name, small, cfg.max_per_scale, cfg.seed, key, cfg.noise,
                                          camera, cfg.disk, cfg.screen)


def make_config(
    source: str = "skimage",
    max_per_scale: int = 300,
    max_images: int | None = None,
    seed: int = 0,
    source_data_dir: str | None = None,
    downscale: int = 3,
    phases: bool | int = True,
    noise: float = 3.0,
    gain_min: float = 1.0,
    offset: float = 0.0,
    jpeg: float = 0.0,
    jpeg_min: int = 60,
    jpeg_max: int = 95,
    disk: float = 0.0,
    screen: bool = False,
) -> DefocusPatchesConfig:
    """A config whose name encodes its settings, so different settings never share files.

    Every value is validated here, before anything is built (see :class:`DefocusPatchesConfig`).
    """
    import re

    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"data.source must be a non-empty string, got {source!r}")
    slug = re.sub(r"[^A-Za-z0-9]+", "_", source).strip("_")[:40]
    h = hashlib.sha1(f"{source}|{source_data_dir}".encode()).hexdigest()[:6]
    if isinstance(downscale, bool) or not isinstance(downscale, (int, np.integer)) or downscale < 1:
        raise ValueError(f"data.downscale must be an integer >= 1, got {downscale!r}")
    if isinstance(max_per_scale, bool) or not isinstance(max_per_scale, (int, np.integer)) or max_per_scale < 1:
        raise ValueError(f"data.max_per_scale must be an integer >= 1, got {max_per_scale!r}")
    if not isinstance(phases, (bool, int, np.integer)) or (not isinstance(phases, bool) and phases < 1):
        raise ValueError(f"data.phases must be true, false or an integer >= 1, got {phases!r}")
    noise = _check_noise(noise)
    if not (isinstance(disk, (int, float)) and not isinstance(disk, bool) and 0.0 <= disk <= 1.0):
        raise ValueError(f"data.disk must be a fraction in [0, 1], got {disk!r}")
    CameraConfig(gain_min=gain_min, offset=offset, noise=noise, jpeg=jpeg, jpeg_min=jpeg_min,
                 jpeg_max=jpeg_max)  # validates
    ph = "p" if phases is True else "" if phases is False else f"p{int(phases)}"
    name = (f"{slug}_{h}_m{max_per_scale}_i{max_images or 'all'}_s{seed}_d{downscale}"
            f"{ph}_n{noise:g}".replace(".", "p"))
    extra = ""
    if gain_min < 1 or offset > 0:
        extra += f"_g{gain_min:g}o{offset:g}"
    if jpeg > 0:
        extra += f"_j{jpeg:g}q{jpeg_min}-{jpeg_max}"
    if disk > 0:
        extra += f"_k{disk:g}"
    if screen:
        extra += "_scr"
    name += extra.replace(".", "p")
    return DefocusPatchesConfig(
        name=name, source=source, max_per_scale=int(max_per_scale), max_images=max_images,
        seed=seed, source_data_dir=source_data_dir, downscale=int(downscale),
        phases=phases if isinstance(phases, bool) else int(phases), noise=noise,
        gain_min=float(gain_min), offset=float(offset), jpeg=float(jpeg), jpeg_min=int(jpeg_min),
        jpeg_max=int(jpeg_max), disk=float(disk), screen=bool(screen),
    )


def build(config: DefocusPatchesConfig | str = "default", data_dir: str | None = None):
    """Builds (if needed) and returns ``{split: data source}`` for a config or config name."""
    b = DefocusPatches(config=config, data_dir=data_dir)
    b.download_and_prepare()
    write_manifest(b)
    return b.as_data_source()


def write_manifest(builder) -> Path | None:
    """Writes ``manifest.json`` (every source file's sha256, size, decision, reason, split) beside
    a built data set whose source is screened; returns its path (None for unscreened sources)."""
    import json

    cfg = builder.builder_config
    path = Path(builder.data_dir) / "manifest.json"
    if path.exists():
        return path
    entries = source_entries(cfg.source, int(cfg.downscale), cfg.seed)
    if entries is None:
        return None
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"source": cfg.source, "downscale": cfg.downscale, "seed": cfg.seed,
                               "files": entries}, indent=1))
    os.replace(tmp, path)
    kept = sum(e["kept"] for e in entries)
    print(f"manifest: {kept} of {len(entries)} source files kept -> {path}")
    return path


def load_arrays(source, indices=None, desc: str = "loading patches") -> dict[str, np.ndarray]:
    """Reads a split (or the given indices of it) into NumPy arrays: patch, scale, label."""
    n = len(source)
    idx = np.arange(n) if indices is None else np.asarray(indices)
    patch = np.empty((len(idx), CONTEXT, CONTEXT, 3), np.uint8)
    scale = np.empty((len(idx),), np.int32)
    label = np.empty((len(idx),), np.int32)
    chunk = 4096
    for s in tqdm(range(0, len(idx), chunk), desc=desc, unit="chunk", leave=False):
        exs = source.__getitems__(idx[s : s + chunk].tolist())
        for j, ex in enumerate(exs):
            patch[s + j] = ex["patch"]
            scale[s + j] = ex["scale"]
            label[s + j] = ex["label"]
    return {"patch": patch, "scale": scale, "label": label}


def default_data_dir() -> str:
    """``$DHDE_DATA_DIR`` or ``~/.cache/dhde/tfds``: shared by all runs of a sweep."""
    import os

    return os.environ.get("DHDE_DATA_DIR", os.path.expanduser("~/.cache/dhde/tfds"))


def build_locked(config: DefocusPatchesConfig | str = "default", data_dir: str | None = None):
    """:func:`build` under a file lock, so parallel sweep jobs build the data set only once."""
    import fcntl
    import os

    data_dir = data_dir or default_data_dir()
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, ".dhde_build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return build(config, data_dir)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
