"""The training config (``conf/train.yaml``) as frozen dataclasses: the one home of its defaults.

Sections and their dataclasses (field names = config keys; the defaults are the values a
Hydra-composed ``conf/train.yaml`` gives, and ``tests/test_config_defaults.py`` checks every
shipped YAML file against the fields):

    seed, features.set, encoding.name   :class:`RunConfig` (the whole config)
    model:                              :class:`ModelSection` (defaults: ``ModelConfig``'s)
    train:                              :class:`TrainConfig`
    optimizer:                          :class:`OptimizerConfig` (fields = ``make_optimizer`` keywords)
    data:                               :class:`dhde.data.config.DataConfig`

Each ``from_mapping`` validates its section up front (:func:`check_train_config` runs them all
first in :func:`dhde.training.loop.train_and_evaluate`, before any data is built); a bad value
raises :class:`dhde.config.check.ConfigError` naming its key, e.g.
``train.steps must be an integer >= 1, got -5``. A key that is absent, or None where None means
nothing (all but ``optimizer.grad_clip``, whose None turns clipping off), takes the default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from dhde.config import check as cc
from dhde.config.check import ConfigError
from dhde.data.config import DataConfig
from dhde.model.network import ModelConfig

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "inv", "cosine")
TRAIN_SCHEDULES = ("joint", "two_stage")
SELECT = ("best", "last")
AUGMENT = ("none", "dihedral")


def _section(section: Any, key: str) -> Mapping:
    """``section`` as a mapping (None = empty); anything else raises ConfigError."""
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{key} must be a mapping, got {section!r}")
    return section


@dataclass(frozen=True)
class TrainConfig:
    """The ``train:`` section: length, batches, logging and which model is kept.

    Attributes:
      steps: training steps (>= 1).
      batch_size: global batch (>= 1; a multiple of the device count).
      schedule: "joint" (authors' code) or "two_stage" (paper 5.1: f_C first, then f_H added).
      stage1_fraction: fraction of ``steps`` of the first stage of "two_stage", in [0, 1].
      eval_every: validate and checkpoint every this many steps (>= 1).
      cnn_input_scale: train the CNN as if its 0..255 input were multiplied by this (> 0; 1/255:
        as if scaled to [0, 1]; 1.0: raw, as the authors' Caffe solver),
        see :func:`dhde.training.optim.input_scaled`.
      augment: "none" or "dihedral" (each patch's CNN input under a random flip / transpose).
      select: the model kept and tested: "best" (by validation accuracy) or "last".
      log_every: write the loss to ``history.jsonl`` every this many steps (>= 1).
      keep_last: checkpoints kept besides the best (>= 1).
    """

    steps: int = 12000
    batch_size: int = 256
    schedule: str = "joint"
    stage1_fraction: float = 0.5
    eval_every: int = 1000
    cnn_input_scale: float = 1.0 / 255.0
    augment: str = "none"
    select: str = "best"
    log_every: int = 100
    keep_last: int = 3

    @classmethod
    def from_mapping(cls, section: Mapping | None, key: str = "train") -> "TrainConfig":
        """The validated ``train`` section (absent keys: the defaults). Raises ConfigError."""
        d, root = cls(), {key: _section(section, key)}
        v = {
            "steps": cc.integer(root, f"{key}.steps", d.steps, lo=1),
            "batch_size": cc.integer(root, f"{key}.batch_size", d.batch_size, lo=1),
            "eval_every": cc.integer(root, f"{key}.eval_every", d.eval_every, lo=1),
            "log_every": cc.integer(root, f"{key}.log_every", d.log_every, lo=1),
            "keep_last": cc.integer(root, f"{key}.keep_last", d.keep_last, lo=1),
            "schedule": cc.choice(root, f"{key}.schedule", TRAIN_SCHEDULES, d.schedule),
            "stage1_fraction": cc.number(root, f"{key}.stage1_fraction", d.stage1_fraction, lo=0.0, hi=1.0),
            "select": cc.choice(root, f"{key}.select", SELECT, d.select),
            "cnn_input_scale": cc.number(root, f"{key}.cnn_input_scale", d.cnn_input_scale, lo=0.0, lo_open=True),
            "augment": cc.choice(root, f"{key}.augment", AUGMENT, d.augment),
        }
        return cls(**v)

    @property
    def stage1_steps(self) -> int:
        """Steps of the first (CNN-only) stage: 0 unless ``schedule == "two_stage"``."""
        return int(self.steps * self.stage1_fraction) if self.schedule == "two_stage" else 0


@dataclass(frozen=True)
class OptimizerConfig:
    """The ``optimizer:`` section (``conf/optimizer/*.yaml``); the defaults are ``adamw.yaml``'s.

    The field names are the keyword names of :func:`dhde.training.optim.make_optimizer`, so
    ``make_optimizer(**dataclasses.asdict(o), steps=n)`` builds it (:meth:`make`).

    Attributes:
      name: "adamw" (decoupled weight decay) or "sgd" (momentum, coupled L2 decay as Caffe).
      lr: peak learning rate (> 0).
      schedule: "constant", "inv" (Caffe) or "cosine" (with linear warm-up).
      warmup: warm-up steps of the cosine schedule (>= 0).
      weight_decay: weight decay (>= 0).
      momentum: SGD momentum in [0, 1).
      grad_clip: global-norm gradient clipping (> 0), or None for none.
    """

    name: str = "adamw"
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup: int = 200
    weight_decay: float = 1e-4
    momentum: float = 0.9
    grad_clip: float | None = 1.0

    @classmethod
    def from_mapping(cls, section: Mapping | None, key: str = "optimizer") -> "OptimizerConfig":
        """The validated ``optimizer`` section (absent keys: the defaults; an explicit
        ``grad_clip: null`` turns clipping off). Raises ConfigError."""
        section = _section(section, key)
        d, root = cls(), {key: section}
        v = {
            "name": cc.choice(root, f"{key}.name", OPTIMIZERS, d.name),
            "lr": cc.number(root, f"{key}.lr", d.lr, lo=0.0, lo_open=True),
            "schedule": cc.choice(root, f"{key}.schedule", SCHEDULES, d.schedule),
            "warmup": cc.integer(root, f"{key}.warmup", d.warmup, lo=0),
            "weight_decay": cc.number(root, f"{key}.weight_decay", d.weight_decay, lo=0.0),
            "momentum": cc.number(root, f"{key}.momentum", d.momentum, lo=0.0, hi=1.0, hi_open=True),
        }
        clip = section["grad_clip"] if "grad_clip" in section else d.grad_clip
        v["grad_clip"] = None if clip is None else cc.as_number(clip, f"{key}.grad_clip", lo=0.0, lo_open=True)
        return cls(**v)

    def make(self, steps: int):
        """The optax optimiser for a run of ``steps`` steps (:func:`~dhde.training.optim.make_optimizer`)."""
        from dhde.training.optim import make_optimizer

        return make_optimizer(self.name, self.lr, steps, schedule=self.schedule, weight_decay=self.weight_decay,
                              momentum=self.momentum, warmup=self.warmup, grad_clip=self.grad_clip)


@dataclass(frozen=True)
class ModelSection:
    """The ``model:`` section: the :class:`~dhde.model.network.ModelConfig` fields a training
    config sets (the feature set and encoding come from ``features.set`` / ``encoding.name``).
    The defaults are ``ModelConfig``'s own."""

    c_large: float = ModelConfig.c_large
    c_small: float = ModelConfig.c_small
    gradient: str = ModelConfig.gradient
    small_padding: str = ModelConfig.small_padding
    hidden: tuple[int, ...] = ModelConfig.hidden
    dropout: float = ModelConfig.dropout
    hand_scale: float = ModelConfig.hand_scale
    normalize: str = ModelConfig.normalize

    @classmethod
    def from_mapping(cls, section: Mapping | None, key: str = "model") -> "ModelSection":
        """The ``model`` section with its numbers checked (absent keys: the defaults); the
        string choices are checked by :meth:`model_config`. Raises ConfigError."""
        d, root = cls(), {key: _section(section, key)}
        v = {
            "c_large": cc.number(root, f"{key}.c_large", d.c_large),
            "c_small": cc.number(root, f"{key}.c_small", d.c_small),
            "dropout": cc.number(root, f"{key}.dropout", d.dropout, lo=0.0, hi=1.0, hi_open=True),
            "hand_scale": cc.number(root, f"{key}.hand_scale", d.hand_scale, lo=0.0, lo_open=True),
        }
        hidden = cc.get(root, f"{key}.hidden", d.hidden)
        if not isinstance(hidden, (list, tuple)) or not hidden:
            raise ConfigError(f"{key}.hidden must be a non-empty list of layer widths, got {hidden!r}")
        v["hidden"] = tuple(cc.as_integer(h, f"{key}.hidden[{k}]", lo=1) for k, h in enumerate(hidden))
        for name in ("gradient", "small_padding", "normalize"):
            v[name] = str(cc.get(root, f"{key}.{name}", getattr(d, name)))
        return cls(**v)

    def model_config(self, feature_set: str = ModelConfig.feature_set,
                     encoding: str = ModelConfig.encoding) -> ModelConfig:
        """The ModelConfig; a bad feature set, encoding or choice raises ConfigError naming its key."""
        try:
            return ModelConfig(feature_set=feature_set, encoding=encoding, **dataclasses.asdict(self))
        except ValueError as e:
            msg = str(e)
            key = ("features.set" if "feature" in msg else "encoding.name" if "encoding" in msg
                   else "model.gradient" if "gradient" in msg else "model.small_padding" if "small_padding" in msg
                   else "model.normalize" if "normalize" in msg else "model")
            raise ConfigError(f"{key}: {e}") from None


@dataclass(frozen=True)
class RunConfig:
    """A whole training config, validated: ``seed``, ``features.set``, ``encoding.name`` and
    the sections. ``data`` is None when the config has no ``data`` section (preloaded splits)."""

    seed: int = 0
    feature_set: str = ModelConfig.feature_set
    encoding: str = ModelConfig.encoding
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig | None = None

    @classmethod
    def from_mapping(cls, cfg: Mapping) -> "RunConfig":
        """Validates every key of a training config (see ``conf/train.yaml``) and fills the
        absent ones with the defaults.

        Raises:
          ConfigError: the first bad value, naming its dotted key.
        """
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"the training config must be a mapping, got {type(cfg).__name__}")
        d = cls()
        seed = cc.integer(cfg, "seed", d.seed)
        train = TrainConfig.from_mapping(cc.get(cfg, "train"))
        model = ModelSection.from_mapping(cc.get(cfg, "model"))
        feature_set = str(cc.get(cfg, "features.set", d.feature_set))
        encoding = str(cc.get(cfg, "encoding.name", d.encoding))
        model.model_config(feature_set, encoding)  # validates the choices
        optimizer = OptimizerConfig.from_mapping(cc.get(cfg, "optimizer"))
        data = cc.get(cfg, "data")
        data = None if data is None else DataConfig.from_mapping(data)
        return cls(seed=seed, feature_set=feature_set, encoding=encoding, model=model, train=train,
                   optimizer=optimizer, data=data)

    @property
    def model_config(self) -> ModelConfig:
        """The :class:`~dhde.model.network.ModelConfig` of the run."""
        return self.model.model_config(self.feature_set, self.encoding)


def check_train_config(cfg: Mapping) -> RunConfig:
    """Validates the training config; see ``conf/train.yaml`` for the keys.

    Returns:
      the :class:`RunConfig` (absent keys filled with the defaults).

    Raises:
      ConfigError: the first bad value, naming its dotted key.
    """
    return RunConfig.from_mapping(cfg)


def check_data_config(cfg: Mapping) -> DataConfig:
    """The ``data`` section of ``cfg``: source, sizes, downscale, noise, split limits
    (:meth:`dhde.data.config.DataConfig.from_mapping`)."""
    return DataConfig.from_mapping(cc.get(cfg, "data"))
