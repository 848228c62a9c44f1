"""Up-front check of a training config (``conf/train.yaml``): every key, before any data is built.

:func:`check_train_config` runs first in :func:`dhde.training.loop.train_and_evaluate`; a bad
value raises :class:`dhde.config.check.ConfigError` naming its key, e.g.
``train.steps must be an integer >= 1, got -5`` (before, ``train.steps=-5`` saved an untrained
model and ``train.eval_every=0`` failed with ZeroDivisionError after the data had loaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from dhde.config import check as cc
from dhde.config.check import ConfigError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "inv", "cosine")


def check_train_config(cfg: Mapping) -> None:
    """Validates the training config; see ``conf/train.yaml`` for the keys.

    Raises:
      ConfigError: the first bad value, naming its dotted key.
    """
    from dhde.model.network import ModelConfig

    if not isinstance(cfg, Mapping):
        raise ConfigError(f"the training config must be a mapping, got {type(cfg).__name__}")
    cc.integer(cfg, "seed", 0)
    # train
    cc.integer(cfg, "train.steps", 10000, lo=1)
    cc.integer(cfg, "train.batch_size", 256, lo=1)
    cc.integer(cfg, "train.eval_every", 1000, lo=1)
    cc.integer(cfg, "train.log_every", 100, lo=1)
    cc.integer(cfg, "train.keep_last", 3, lo=1)
    cc.choice(cfg, "train.schedule", ("joint", "two_stage"), "joint")
    cc.number(cfg, "train.stage1_fraction", 0.5, lo=0.0, hi=1.0)
    cc.choice(cfg, "train.select", ("best", "last"), "best")
    cc.number(cfg, "train.cnn_input_scale", 1.0 / 255.0, lo=0.0, lo_open=True)
    cc.choice(cfg, "train.augment", ("none", "dihedral"), "none")
    # model
    m = cc.get(cfg, "model", {}) or {}
    if not isinstance(m, Mapping):
        raise ConfigError(f"model must be a mapping, got {m!r}")
    cc.number(cfg, "model.c_large", 1.0)
    cc.number(cfg, "model.c_small", 1.0)
    cc.number(cfg, "model.dropout", 0.5, lo=0.0, hi=1.0, hi_open=True)
    cc.number(cfg, "model.hand_scale", 1.0, lo=0.0, lo_open=True)
    hidden = m.get("hidden", (300, 150))
    if not isinstance(hidden, (list, tuple)) or not hidden:
        raise ConfigError(f"model.hidden must be a non-empty list of layer widths, got {hidden!r}")
    for k, h in enumerate(hidden):
        cc.as_integer(h, f"model.hidden[{k}]", lo=1)
    features, encoding = cc.get(cfg, "features.set", "B"), cc.get(cfg, "encoding.name", "separate")
    try:
        ModelConfig(feature_set=str(features), encoding=str(encoding), gradient=str(m.get("gradient", "forward")),
                    small_padding=str(m.get("small_padding", "replicate")))
    except ValueError as e:
        key = ("features.set" if "feature" in str(e) else "encoding.name" if "encoding" in str(e)
               else "model.gradient" if "gradient" in str(e) else "model.small_padding")
        raise ConfigError(f"{key}: {e}") from None
    # optimizer
    cc.choice(cfg, "optimizer.name", OPTIMIZERS, "adamw")
    cc.number(cfg, "optimizer.lr", 1e-3, lo=0.0, lo_open=True)
    cc.choice(cfg, "optimizer.schedule", SCHEDULES, "cosine")
    cc.integer(cfg, "optimizer.warmup", 0, lo=0)
    cc.number(cfg, "optimizer.weight_decay", 0.0, lo=0.0)
    cc.number(cfg, "optimizer.momentum", 0.9, lo=0.0, hi=1.0, hi_open=True)
    cc.number(cfg, "optimizer.grad_clip", optional=True, lo=0.0, lo_open=True)
    # data (only when the data set is to be built from the config)
    if cc.get(cfg, "data") is not None:
        check_data_config(cfg)


def check_data_config(cfg: Mapping) -> None:
    """The ``data`` section: source, sizes, downscale, noise, split limits."""
    source = cc.text(cfg, "data.source", optional=True) or "skimage"
    for part in (p.strip() for p in source.split(",")):
        if part.startswith("folder:") or part.startswith("folders:"):
            folder = Path(part.split(":", 1)[1]).expanduser()
            if not folder.is_dir():
                raise ConfigError(f"data.source: training image folder not found: {str(folder)!r}")
            if part.startswith("folders:"):
                for split in ("train", "validation", "test"):
                    if not (folder / split).is_dir():
                        raise ConfigError(f"data.source: {str(folder / split)!r} not found (a 'folders:' "
                                          "source needs train/, validation/ and test/ sub-folders)")
        elif part.startswith("debian:"):
            from dhde.data.debian import check_installed

            try:
                check_installed(part[len("debian:"):])
            except (TypeError, ValueError) as e:
                raise ConfigError(f"data.source: {e}") from None
        elif part != "skimage" and not (part.startswith("tfds:") and len(part) > len("tfds:")):
            raise ConfigError("data.source must be 'skimage', 'debian:PKG+PKG', 'folder:/path', "
                              f"'folders:/path' or 'tfds:name' (several joined by commas), got {source!r}")
    cc.integer(cfg, "data.max_per_scale", 300, lo=1)
    cc.integer(cfg, "data.max_images", optional=True, lo=1)
    cc.integer(cfg, "data.seed", 0)
    cc.integer(cfg, "data.downscale", 3, lo=1)
    phases = cc.get(cfg, "data.phases")
    if phases is not None and not isinstance(phases, bool):
        cc.integer(cfg, "data.phases", lo=1)
    cc.number(cfg, "data.noise", 3.0, lo=0.0)
    from dhde.data.camera import CameraConfig

    d = cc.get(cfg, "data") or {}
    cam = {k: d[k] for k in ("gain_min", "offset", "noise", "jpeg", "jpeg_min", "jpeg_max") if d.get(k) is not None}
    try:
        CameraConfig(**cam)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"data.{str(e).replace('camera option ', '')}") from None
    disk = d.get("disk")
    if disk is not None and (isinstance(disk, bool) or not isinstance(disk, (int, float)) or not 0 <= disk <= 1):
        raise ConfigError(f"data.disk must be a fraction in [0, 1], got {disk!r}")
    if d.get("screen") is not None:
        cc.flag(cfg, "data.screen", False)
    for split in ("train", "validation", "test"):
        cc.integer(cfg, f"data.max_{split}", optional=True, lo=1)
    for key in ("data.data_dir", "data.source_data_dir"):
        cc.text(cfg, key)
