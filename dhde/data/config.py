"""The ``data`` section of a training config (``conf/data/*.yaml``) as one frozen dataclass.

:class:`DataConfig` is the single home of the data defaults: its field defaults are the values
of ``conf/data/skimage.yaml`` (the ``data: skimage`` default of ``conf/train.yaml``), and
``tests/test_config_defaults.py`` checks every shipped ``conf/data/*.yaml`` against its fields.
:meth:`DataConfig.from_mapping` validates a section up front (before any data is built) and
raises :class:`dhde.config.check.ConfigError` naming the dotted key, e.g.
``data.downscale must be an integer >= 1, got 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from dhde.config import check as cc
from dhde.config.check import ConfigError

#: The camera-realism keys, validated together by :class:`dhde.data.camera.CameraConfig`.
CAMERA_KEYS = ("gain_min", "offset", "noise", "jpeg", "jpeg_min", "jpeg_max")
#: The splits whose size ``max_<split>`` may cap.
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class DataConfig:
    """Where the training patches come from and how they are made (``conf/data/*.yaml``).

    Attributes:
      source: ``skimage``, ``debian:PKG+PKG``, ``folder:/path``, ``folders:/path`` (with
        train/, validation/, test/) or ``tfds:name``; several joined by commas.
      max_per_scale: patches per scale per (downscaled, phase) source image, >= 1.
      max_images: use at most this many source images (None = all).
      seed: seed of the patch sampling.
      downscale: box-downscale factor of the sources (>= 1; 1 = native resolution).
      phases: True = all ``downscale**2`` sampling phases, False = one, an int = that many.
      noise: largest std of per-patch Gaussian noise, grey levels of 255 (0 = noise-free).
      gain_min: exposure gain log-uniform in [gain_min, 1] per patch (1 = off).
      offset: exposure offset uniform in +-offset, fraction of the range (0 = off).
      jpeg: probability of JPEG compression per patch (0 = never).
      jpeg_min, jpeg_max: JPEG quality range (integers in [1, 100]).
      disk: fraction of patches blurred by a disk PSF of equal Gaussian-equivalent sigma.
      screen: keep only edge pixels that the re-blur estimate calls sharp.
      data_dir: where the built TFDS data set lives (None = $DHDE_DATA_DIR or ~/.cache/dhde/tfds).
      source_data_dir: TFDS folder of a ``tfds:`` source (None = TFDS's default).
      max_train, max_validation, max_test: load at most this many patches of that split
        (a seeded random subset; None = all).
    """

    source: str = "skimage"
    max_per_scale: int = 300
    max_images: int | None = None
    seed: int = 0
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
    data_dir: str | None = None
    source_data_dir: str | None = None
    max_train: int | None = None
    max_validation: int | None = None
    max_test: int | None = None

    @classmethod
    def from_mapping(cls, section: Mapping | None, key: str = "data") -> "DataConfig":
        """Validates a ``data`` section; absent keys (or None for a key whose default is not
        None) take the field defaults.

        Args:
          section: the mapping under ``data`` (None = all defaults).
          key: its dotted name in the messages.

        Raises:
          ConfigError: the first bad value, naming its dotted key (``data.noise must be >= 0``);
            an unknown source kind, a missing source folder or Debian package.
        """
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {section!r}")
        d, root = cls(), {key: section}
        v: dict[str, Any] = {"source": _check_source(cc.text(root, f"{key}.source", optional=True) or d.source, key)}
        v["max_per_scale"] = cc.integer(root, f"{key}.max_per_scale", d.max_per_scale, lo=1)
        v["max_images"] = cc.integer(root, f"{key}.max_images", optional=True, lo=1)
        v["seed"] = cc.integer(root, f"{key}.seed", d.seed)
        v["downscale"] = cc.integer(root, f"{key}.downscale", d.downscale, lo=1)
        phases = cc.get(root, f"{key}.phases", d.phases)
        v["phases"] = phases if isinstance(phases, bool) else cc.as_integer(phases, f"{key}.phases", lo=1)
        v["noise"] = cc.number(root, f"{key}.noise", d.noise, lo=0.0)
        cam = {k: cc.get(root, f"{key}.{k}", getattr(d, k)) for k in CAMERA_KEYS}
        from dhde.data.camera import CameraConfig

        try:
            CameraConfig(**cam)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{key}.{str(e).replace('camera option ', '')}") from None
        v.update(gain_min=float(cam["gain_min"]), offset=float(cam["offset"]), jpeg=float(cam["jpeg"]),
                 jpeg_min=int(cam["jpeg_min"]), jpeg_max=int(cam["jpeg_max"]))
        disk = cc.get(root, f"{key}.disk", d.disk)
        if isinstance(disk, bool) or not isinstance(disk, (int, float)) or not 0 <= disk <= 1:
            raise ConfigError(f"{key}.disk must be a fraction in [0, 1], got {disk!r}")
        v["disk"] = float(disk)
        v["screen"] = cc.flag(root, f"{key}.screen", d.screen)
        for split in SPLITS:
            v[f"max_{split}"] = cc.integer(root, f"{key}.max_{split}", optional=True, lo=1)
        for name in ("data_dir", "source_data_dir"):
            v[name] = cc.text(root, f"{key}.{name}")
        return cls(**v)


def _check_source(source: str, key: str) -> str:
    """``source`` if every comma-separated part names an existing source; else ConfigError."""
    for part in (p.strip() for p in source.split(",")):
        if part.startswith("folder:") or part.startswith("folders:"):
            folder = Path(part.split(":", 1)[1]).expanduser()
            if not folder.is_dir():
                raise ConfigError(f"{key}.source: training image folder not found: {str(folder)!r}")
            if part.startswith("folders:"):
                for split in SPLITS:
                    if not (folder / split).is_dir():
                        raise ConfigError(f"{key}.source: {str(folder / split)!r} not found (a 'folders:' "
                                          "source needs train/, validation/ and test/ sub-folders)")
        elif part.startswith("debian:"):
            from dhde.data.debian import check_installed

            try:
                check_installed(part[len("debian:"):])
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{key}.source: {e}") from None
        elif part != "skimage" and not (part.startswith("tfds:") and len(part) > len("tfds:")):
            raise ConfigError(f"{key}.source must be 'skimage', 'debian:PKG+PKG', 'folder:/path', "
                              f"'folders:/path' or 'tfds:name' (several joined by commas), got {source!r}")
    return source
