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

import numpy as np
import tensorflow_datasets as tfds
from tqdm.auto import tqdm

from dhde import checks
from dhde.data.camera import CameraConfig
from dhde.data.config import DataConfig
from dhde.data.patch_sampling import image_examples, image_phases
from dhde.data.sources import SPLITS, area_downscale, iter_source, source_entries
from dhde.data.tfds_compat import InPackageBuilderMixin
from dhde.filters.patches import CONTEXT
from dhde.labels import NUM_LABELS

# The module docstring is the data set's TFDS description: kept as it was. This module holds the
# TFDS builder (data set name ``defocus_patches``), its configs and the build / load helpers; the
# per-photograph work (pixel choice, blurs, cutting, camera effects) is dhde.data.patch_sampling.


#: The data defaults, from their one home (:class:`dhde.data.config.DataConfig`).
_DATA = DataConfig()


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

    source: str = _DATA.source
    max_per_scale: int = _DATA.max_per_scale
    max_images: int | None = _DATA.max_images
    seed: int = _DATA.seed
    source_data_dir: str | None = _DATA.source_data_dir
    downscale: int = _DATA.downscale
    phases: bool | int = _DATA.phases
    noise: float = _DATA.noise
    gain_min: float = _DATA.gain_min
    offset: float = _DATA.offset
    jpeg: float = _DATA.jpeg
    jpeg_min: int = _DATA.jpeg_min
    jpeg_max: int = _DATA.jpeg_max
    disk: float = _DATA.disk
    screen: bool = _DATA.screen

    def camera(self) -> CameraConfig:
        return CameraConfig(gain_min=self.gain_min, offset=self.offset, noise=self.noise,
                            jpeg=self.jpeg, jpeg_min=self.jpeg_min, jpeg_max=self.jpeg_max)


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
    source: str = _DATA.source,
    max_per_scale: int = _DATA.max_per_scale,
    max_images: int | None = _DATA.max_images,
    seed: int = _DATA.seed,
    source_data_dir: str | None = _DATA.source_data_dir,
    downscale: int = _DATA.downscale,
    phases: bool | int = _DATA.phases,
    noise: float = _DATA.noise,
    gain_min: float = _DATA.gain_min,
    offset: float = _DATA.offset,
    jpeg: float = _DATA.jpeg,
    jpeg_min: int = _DATA.jpeg_min,
    jpeg_max: int = _DATA.jpeg_max,
    disk: float = _DATA.disk,
    screen: bool = _DATA.screen,
) -> DefocusPatchesConfig:
    """A config whose name encodes its settings, so different settings never share files.

    Every value is validated here, before anything is built (see :class:`DefocusPatchesConfig`).
    """
    import re

    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"data.source must be a non-empty string, got {source!r}")
    slug = re.sub(r"[^A-Za-z0-9]+", "_", source).strip("_")[:40]
    h = hashlib.sha1(f"{source}|{source_data_dir}".encode()).hexdigest()[:6]
    checks.integer(downscale, "data.downscale", lo=1)
    checks.integer(max_per_scale, "data.max_per_scale", lo=1)
    if not isinstance(phases, bool):
        checks.integer(phases, "data.phases (true, false or an integer)", lo=1)
    noise = checks.scalar(noise, "data.noise (a std in grey levels)", lo=0.0)
    checks.scalar(disk, "data.disk (a fraction)", lo=0.0, hi=1.0)
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
