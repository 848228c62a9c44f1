"""Evaluation data: direct loaders and TFDS builders that read the data in place.

Three sources, each giving dicts with the same keys from a direct loader and from TFDS:

* CUHK blur detection (Shi et al. 2014): ``root/image/<stem>.jpg`` and ``root/gt/<stem>.png``
  (white = blurred) -> ``{"image", "mask", "name"}``. The paper uses the 704 ``out_of_focus*``
  images (the full set also holds 296 ``motion*`` images), hence the default ``pattern``.
* RTF (D'Andres et al. 2016): ``root/image_NN.png``, ``root/map_NN.mat`` (variable ``blurMap``,
  disk radius in pixels) and ``root/convertion.mat`` ([sigma, radius] table)
  -> ``{"image", "sigma_map", "name"}``.
* ``stereo_motorcycle`` rendered with a known sigma map (:mod:`dhde.evaluation.synthetic`)
  -> ``{"image", "sigma_map", "name"}``.

Direct loaders (:func:`load_cuhk`, :func:`load_rtf`, :func:`load_stereo_motorcycle`) yield
NumPy dicts: ``image`` float32 (H, W, 3) in [0, 1], ``mask`` bool (H, W), ``sigma_map`` float32
(H, W) in pixels, ``name`` str.

TFDS builders (:class:`CuhkBlurDetection` ``dhde_cuhk``, :class:`RtfDefocus` ``dhde_rtf``,
:class:`StereoMotorcycleDefocus` ``dhde_stereo_motorcycle``) take ``root=`` (the folder above)
and ``data_dir=`` (where TFDS writes) and write ``array_record`` files with one ``test`` split,
in sorted name order. TensorFlow is not needed: every feature is a NumPy ``Tensor`` feature
(``tfds.features.Image`` would need TensorFlow to encode PNGs), so ``image`` is stored as uint8
(CUHK, RTF) or float32 (the synthetic render), and ``name`` comes back as bytes. Use
:func:`build_data_source` to prepare and open one, and :func:`decode_record` to turn a record into
the loaders' dict. A prepared data set is reused as is: after changing the files under ``root``,
use a fresh ``data_dir``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from dhde import checks
from dhde.evaluation import metrics, synthetic
from dhde.io.image import load_image
from dhde.data.tfds_compat import InPackageBuilderMixin

PathLike = str | os.PathLike

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_RTF_IMAGE = re.compile(r"^image_(\w+)\.png$", re.IGNORECASE)
CUHK_PATTERN = "out_of_focus*"

_CUHK_CITATION = """@inproceedings{shi2014discriminative,
  title={Discriminative Blur Detection Features}, author={Shi, Jianping and Xu, Li and Jia, Jiaya},
  booktitle={CVPR}, year={2014}}"""
_RTF_CITATION = """@article{dandres2016nonparametric,
  title={Non-Parametric Blur Map Regression for Depth of Field Extension},
  author={D'Andres, Laurent and Salvador, Jordi and Kochale, Axel and S{\\"u}sstrunk, Sabine},
  journal={IEEE Transactions on Image Processing}, year={2016}}"""
_MIDDLEBURY_CITATION = """@inproceedings{scharstein2014high,
  title={High-Resolution Stereo Datasets with Subpixel-Accurate Ground Truth},
  author={Scharstein, Daniel and others}, booktitle={GCPR}, year={2014}}"""


# --------------------------------------------------------------------------- file discovery


def _root(root: PathLike, what: str) -> Path:
    if root is None:
        raise ValueError(f"{what}: root folder is required (root=...)")
    path = Path(root)
    if not path.is_dir():
        raise ValueError(f"{what} root folder not found: {str(path)!r}")
    return path


def cuhk_files(root: PathLike, pattern: str = CUHK_PATTERN) -> list[tuple[str, Path, Path]]:
    """Sorted (stem, image path, gt path) of a CUHK-layout folder.

    Args:
      root: folder with ``image/`` and ``gt/``.
      pattern: glob on the image stems (default ``out_of_focus*``; ``"*"`` = all images).

    Raises:
      ValueError: missing folders, no matching image, or images without a ``gt/<stem>.png``.
    """
    root = _root(root, "CUHK")
    img_dir, gt_dir = root / "image", root / "gt"
    for d in (img_dir, gt_dir):
        if not d.is_dir():
            raise ValueError(f"CUHK layout needs {str(d)!r} (image/*.jpg and gt/*.png)")
    images = sorted(
        p for p in img_dir.glob(pattern)
        if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES
    )
    if not images:
        raise ValueError(f"no image matching {pattern!r} in {str(img_dir)!r}")
    gts = {p.stem: p for p in gt_dir.iterdir() if p.is_file() and p.suffix.lower() == ".png"}
    missing = [p.name for p in images if p.stem not in gts]
    if missing:
        raise ValueError(
            f"{len(missing)} CUHK image(s) without a gt/<stem>.png mask, e.g. {missing[:5]}"
        )
    return [(p.stem, p, gts[p.stem]) for p in images]


def rtf_files(root: PathLike) -> list[tuple[str, Path, Path]]:
    """Sorted (name, image path, map path) of an RTF folder (``image_NN.png`` + ``map_NN.mat``)."""
    root = _root(root, "RTF")
    out = []
    for p in sorted(root.iterdir()):
        m = _RTF_IMAGE.match(p.name)
        if not (m and p.is_file()):
            continue
        mat = root / f"map_{m.group(1)}.mat"
        if not mat.is_file():
            raise ValueError(f"RTF image {p.name} has no {mat.name}")
        out.append((p.stem, p, mat))
    if not out:
        raise ValueError(f"no image_NN.png in RTF folder {str(root)!r}")
    if not (root / "convertion.mat").is_file():
        raise ValueError(f"RTF folder {str(root)!r} has no convertion.mat")
    return out


def _read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return metrics.as_binary_mask(np.asarray(im.convert("L")), name=f"mask {path.name}")


def _read_blur_map(path: Path) -> np.ndarray:
    import scipy.io

    mat = scipy.io.loadmat(str(path))
    if metrics.RTF_MAP_KEY not in mat:
        raise ValueError(f"{path}: no variable {metrics.RTF_MAP_KEY!r}")
    r = np.asarray(mat[metrics.RTF_MAP_KEY], np.float64)
    if r.ndim != 2:
        raise ValueError(f"{path}: {metrics.RTF_MAP_KEY} must be 2-D, got {r.shape}")
    return r


# --------------------------------------------------------------------------- direct loaders


def _cuhk_example(name: str, img_path: Path, gt_path: Path) -> dict:
    image = load_image(img_path, min_side=1)
    mask = _read_mask(gt_path)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"{name}: image {image.shape[:2]} and mask {mask.shape} differ in size")
    return {"image": image, "mask": mask, "name": name}


def load_cuhk(root: PathLike, pattern: str = CUHK_PATTERN) -> Iterator[dict]:
    """Yields CUHK examples in name order (files are read lazily, one at a time).

    Args:
      root: folder with ``image/*.jpg`` and ``gt/*.png`` (matching stems, white = blurred).
      pattern: glob on image stems, default ``out_of_focus*``.

    Yields:
      ``{"image": float32 (H, W, 3) in [0, 1], "mask": bool (H, W) True = blurred, "name": str}``.
    """
    files = cuhk_files(root, pattern)
    return (_cuhk_example(*f) for f in files)


def _rtf_example(name: str, img_path: Path, map_path: Path, table: np.ndarray) -> dict:
    image = load_image(img_path, min_side=1)
    radius = _read_blur_map(map_path)
    if radius.shape != image.shape[:2]:
        raise ValueError(f"{name}: image {image.shape[:2]} and blur map {radius.shape} differ in size")
    return {"image": image, "sigma_map": metrics.disk_radius_to_sigma(radius, table), "name": name}


def load_rtf(root: PathLike) -> Iterator[dict]:
    """Yields RTF examples with the disk-radius map converted to Gaussian sigma.

    Args:
      root: folder with ``image_NN.png``, ``map_NN.mat`` (``blurMap``, disk radius in pixels)
        and ``convertion.mat`` (``convertion``: [sigma, radius] rows).

    Yields:
      ``{"image": float32 (H, W, 3) in [0, 1], "sigma_map": float32 (H, W) sigma in pixels,
      "name": str}`` (e.g. ``"image_01"``).
    """
    files = rtf_files(root)
    table = metrics.load_conversion_table(Path(root) / "convertion.mat")
    return (_rtf_example(*f, table) for f in files)


def load_stereo_motorcycle(focus: str = "near", sigma_range=(0.5, 2.0), downscale: int = 1,
                           clip_percentile: float = 0.0, noise: float = 0.0) -> Iterator[dict]:
    """Yields the one rendered ``stereo_motorcycle`` scene (see
    :func:`dhde.evaluation.synthetic.stereo_motorcycle_scene`) as
    ``{"image", "sigma_map", "name": "stereo_motorcycle_<focus>"}``."""
    image, sigma = synthetic.stereo_motorcycle_scene(
        focus=focus, sigma_range=sigma_range, downscale=downscale, clip_percentile=clip_percentile,
        noise=noise,
    )
    yield {"image": image, "sigma_map": sigma, "name": f"stereo_motorcycle_{focus}"}


# --------------------------------------------------------------------------- TFDS


def _tensor(shape, dtype):
    return tfds.features.Tensor(shape=shape, dtype=dtype, encoding=tfds.features.Encoding.ZLIB)


class _InPlaceBuilder(InPackageBuilderMixin, tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base: a builder that reads local files under ``root`` (no download), array_record out."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}

    def __init__(self, *, root: PathLike | None = None, data_dir: PathLike | None = None,
                 file_format: str = "array_record", **kwargs):
        self._root = None if root is None else Path(root)
        super().__init__(data_dir=None if data_dir is None else os.fspath(data_dir),
                         file_format=file_format, **kwargs)

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing is downloaded
        return {"test": self._generate_examples()}


class CuhkBlurDetection(_InPlaceBuilder):
    """CUHK blur detection data set read in place (``root/image/*.jpg``, ``root/gt/*.png``).

    Records: ``image`` uint8 (H, W, 3), ``mask`` bool (H, W) True = blurred, ``name`` bytes.
    Keyword ``pattern`` (default ``out_of_focus*``) selects images by stem.
    """

    name = "dhde_cuhk"

    def __init__(self, *, pattern: str = CUHK_PATTERN, **kwargs):
        self._pattern = pattern
        super().__init__(**kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="CUHK blur detection (defocus subset): images with binary blur masks.",
            features=tfds.features.FeaturesDict({
                "image": _tensor((None, None, 3), np.uint8),
                "mask": _tensor((None, None), np.bool_),
                "name": tfds.features.Text(),
            }),
            homepage="https://www.cse.cuhk.edu.hk/leojia/projects/dblurdetect/",
            citation=_CUHK_CITATION,
            disable_shuffling=True,
        )

    def _generate_examples(self):
        for name, img_path, gt_path in cuhk_files(self._root, self._pattern):
            ex = _cuhk_example(name, img_path, gt_path)
            ex["image"] = _to_uint8(ex["image"])
            yield name, ex


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 (exact for images read from 8-bit files)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


class RtfDefocus(_InPlaceBuilder):
    """RTF real-defocus images with per-pixel sigma (disk radius converted by convertion.mat).

    Records: ``image`` uint8 (H, W, 3), ``sigma_map`` float32 (H, W) in pixels, ``name`` bytes.
    """

    name = "dhde_rtf"

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="RTF defocus images with per-pixel blur maps in Gaussian sigma (pixels).",
            features=tfds.features.FeaturesDict({
                "image": _tensor((None, None, 3), np.uint8),
                "sigma_map": _tensor((None, None), np.float32),
                "name": tfds.features.Text(),
            }),
            citation=_RTF_CITATION,
            disable_shuffling=True,
        )

    def _generate_examples(self):
        files = rtf_files(self._root)
        table = metrics.load_conversion_table(self._root / "convertion.mat")
        for name, img_path, map_path in files:
            ex = _rtf_example(name, img_path, map_path, table)
            ex["image"] = _to_uint8(ex["image"])
            yield name, ex


@dataclasses.dataclass
class StereoMotorcycleConfig(tfds.core.BuilderConfig):
    """Rendering options of :func:`dhde.evaluation.synthetic.stereo_motorcycle_scene`."""

    focus: str = "near"
    sigma_min: float = 0.5
    sigma_max: float = 2.0
    downscale: int = 1
    clip_percentile: float = 0.0
    noise: float = 0.0  # Gaussian noise std, grey levels of 255


class StereoMotorcycleDefocus(_InPlaceBuilder):
    """``skimage.data.stereo_motorcycle`` rendered with a disparity-linear sigma map.

    Configs ``near`` (default), ``far``, ``near_half`` / ``far_half`` (downscale 2); or pass
    ``config=StereoMotorcycleConfig(...)``. No ``root`` is needed. Records: ``image`` float32
    (H, W, 3) in [0, 1], ``sigma_map`` float32 (H, W), ``name`` bytes.
    """

    name = "dhde_stereo_motorcycle"
    BUILDER_CONFIGS = [
        StereoMotorcycleConfig(name="near", description="nearest plane in focus"),
        StereoMotorcycleConfig(name="far", focus="far", description="farthest plane in focus"),
        StereoMotorcycleConfig(name="near_half", downscale=2, description="near, half size"),
        StereoMotorcycleConfig(name="far_half", focus="far", downscale=2, description="far, half size"),
    ]
    DEFAULT_CONFIG_NAME = "near"

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="Middlebury 2014 motorcycle (scikit-image) with rendered defocus of known sigma.",
            features=tfds.features.FeaturesDict({
                "image": _tensor((None, None, 3), np.float32),
                "sigma_map": _tensor((None, None), np.float32),
                "name": tfds.features.Text(),
            }),
            citation=_MIDDLEBURY_CITATION,
            disable_shuffling=True,
        )

    def _generate_examples(self):
        c = self.builder_config
        for ex in load_stereo_motorcycle(c.focus, (c.sigma_min, c.sigma_max), c.downscale,
                                         c.clip_percentile, c.noise):
            yield ex["name"], ex


BUILDERS = {
    "cuhk": CuhkBlurDetection,
    "rtf": RtfDefocus,
    "stereo_motorcycle": StereoMotorcycleDefocus,
}


def build_data_source(kind: str, data_dir: PathLike, root: PathLike | None = None, **kwargs):
    """Prepares (once) and opens a builder's ``test`` split as a random-access data source.

    Args:
      kind: ``"cuhk"``, ``"rtf"`` or ``"stereo_motorcycle"``.
      data_dir: folder where TFDS writes / finds the array_record files.
      root: the source folder (CUHK, RTF); unused for ``stereo_motorcycle``.
      kwargs: passed to the builder (``pattern=`` for CUHK, ``config=`` for the synthetic one).

    Returns:
      a ``tfds`` ``ArrayRecordDataSource`` (``len``, ``[i]`` -> record dict of NumPy arrays).
    """
    checks.choice(kind, "kind", tuple(BUILDERS), where="build_data_source")
    if kind != "stereo_motorcycle":
        _root(root, kind)
    builder = BUILDERS[kind](root=root, data_dir=data_dir, **kwargs)
    builder.download_and_prepare()
    return builder.as_data_source(split="test")


def decode_record(record: dict) -> dict:
    """A TFDS record -> the direct loaders' dict (float32 image in [0, 1], str name)."""
    out = dict(record)
    image = np.asarray(out["image"])
    out["image"] = (image.astype(np.float32) / 255.0) if image.dtype == np.uint8 else image.astype(np.float32)
    name = out.get("name")
    if isinstance(name, (bytes, np.bytes_)):
        out["name"] = name.decode("utf-8")
    if "mask" in out:
        out["mask"] = np.asarray(out["mask"], bool)
    if "sigma_map" in out:
        out["sigma_map"] = np.asarray(out["sigma_map"], np.float32)
    return out
