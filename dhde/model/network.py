"""The defocus classifier (paper 4.1): optional deep feature tower + fc 300-150-11.

A :class:`DefocusModel` is the one object the rest of dhde passes around: its ``config``
(static, hashable) says which features and encoding it expects and how its input is scaled;
its ``params`` are a plain pytree
``{"deep": {"conv1".."conv4": {"kernel", "bias"}}, "classifier": {"fc1".."fc3": ...}}``.
Both our own trained models and the authors' imported Caffe model are DefocusModels.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dhde.model.cnn import DeepFeature
from dhde.features.encoding import ENCODINGS, input_width, parse_feature_set
from dhde.labels import NUM_LABELS

Params = Any


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Static description of a model: which input it expects and how it is computed.

    Attributes:
      feature_set: "B" (= D+G+S+C), "H", "C", "D+S+C", ... (see ``parse_feature_set``).
      encoding: scale encoding name, one of ``ENCODINGS``.
      c_large, c_small: the scale-encoding constants C_L, C_S (paper: 1).
      gradient: "forward" (authors' code) or "sobel" (paper) gradients for f_G.
      small_padding: "replicate" (code) or "zero" (paper): how 15x15 patches reach 27x27 for f_C.
      hidden: classifier widths (paper: 300, 150).
      dropout: dropout rate of the classifier (paper: 0.5).
      hand_scale: hand-crafted features are multiplied by this before the network (released
        model: 255).
      quantize_uint8: round and saturate the scaled hand-crafted features to 0..255 (released
        model: True).
      relu_logits: ReLU on the 11 logits (released model: True).
      normalize: "none" (paper) or "patch": every patch is contrast-normalised to its own value
        range before all features (``dhde.features.pipeline.normalize_context``), which makes the
        features invariant to exposure gain and offset.
    """

    feature_set: str = "B"
    encoding: str = "separate"
    c_large: float = 1.0
    c_small: float = 1.0
    gradient: str = "forward"
    small_padding: str = "replicate"
    hidden: tuple[int, ...] = (300, 150)
    dropout: float = 0.5
    hand_scale: float = 1.0
    quantize_uint8: bool = False
    relu_logits: bool = False
    normalize: str = "none"

    def __post_init__(self):
        parse_feature_set(self.feature_set)  # raises on unknown names
        if self.encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {self.encoding!r}; choose one of {ENCODINGS}")
        if self.gradient not in ("forward", "sobel"):
            raise ValueError(f"gradient must be 'forward' or 'sobel', got {self.gradient!r}")
        if self.small_padding not in ("replicate", "zero"):
            raise ValueError(
                f"small_padding must be 'replicate' or 'zero', got {self.small_padding!r}"
            )
        if self.normalize not in ("none", "patch"):
            raise ValueError(f"normalize must be 'none' or 'patch', got {self.normalize!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    @property
    def components(self) -> tuple[str, ...]:
        return parse_feature_set(self.feature_set)

    @property
    def uses_deep(self) -> bool:
        return "C" in self.components

    @property
    def hand_components(self) -> tuple[str, ...]:
        return tuple(c for c in self.components if c != "C")

    @property
    def input_width(self) -> int:
        return input_width(self.feature_set, self.encoding)

    @property
    def hand_width(self) -> int:
        return self.input_width - (25 if self.uses_deep else 0)


class Classifier(nn.Module):
    """fc 300 -> ReLU -> dropout -> fc 150 -> ReLU -> dropout -> fc 11 (logits)."""

    hidden: tuple[int, ...] = (300, 150)
    dropout: float = 0.5
    relu_logits: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for i, h in enumerate(self.hidden):
            x = nn.relu(nn.Dense(h, name=f"fc{i + 1}")(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.Dense(NUM_LABELS, name=f"fc{len(self.hidden) + 1}")(x)
        return nn.relu(x) if self.relu_logits else x


class DefocusNet(nn.Module):
    """Feature tower + classifier.

    Inputs:
      hand: (N, config.hand_width) float32 scale-encoded hand-crafted features (may be width 0).
      cnn: (N, 27, 27, 3) float32 RGB patches in 0..255 (ignored when the set has no "C").
    Output: (N, 11) float32 logits.
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, hand: jax.Array, cnn: jax.Array, train: bool = False) -> jax.Array:
        cfg = self.config
        deep = DeepFeature(name="deep")(cnn) if cfg.uses_deep else None
        x = _classifier_input(cfg, hand, deep)
        return Classifier(cfg.hidden, cfg.dropout, cfg.relu_logits, name="classifier")(x, train)


def _classifier_input(cfg: "ModelConfig", hand: jax.Array, deep: jax.Array | None) -> jax.Array:
    """The classifier's input: scaled (optionally uint8-quantised) hand features, then f_C."""
    parts = []
    if cfg.hand_width:
        h = hand * cfg.hand_scale
        if cfg.quantize_uint8:
            h = jnp.clip(jnp.floor(h + 0.5), 0.0, 255.0)
        parts.append(h)
    if cfg.uses_deep:
        parts.append(deep)
    return jnp.concatenate(parts, axis=-1)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DefocusModel:
    """A classifier ready for inference: static ``config`` plus a ``params`` pytree."""

    params: Params
    config: ModelConfig = dataclasses.field(metadata=dict(static=True))

    @property
    def net(self) -> DefocusNet:
        return DefocusNet(self.config)

    def logits(self, hand: jax.Array, cnn: jax.Array) -> jax.Array:
        return self.net.apply({"params": self.params}, hand, cnn, train=False)

    def probabilities(self, hand: jax.Array, cnn: jax.Array) -> jax.Array:
        """(N, 11) softmax probabilities over the blur levels."""
        return jax.nn.softmax(self.logits(hand, cnn), axis=-1)

    def probabilities_from_deep(self, hand: jax.Array, deep: jax.Array | None) -> jax.Array:
        """(N, 11) probabilities from an already computed deep feature ``deep`` (N, 25) (None
        when the set has no "C"); same result as :meth:`probabilities` on the patches it came
        from. Used by inference, which shares the CNN's first layer between patches."""
        c = self.config
        x = _classifier_input(c, hand, deep)
        head = Classifier(c.hidden, c.dropout, c.relu_logits)
        return jax.nn.softmax(head.apply({"params": self.params["classifier"]}, x, False), axis=-1)


def init_model(config: ModelConfig, key: jax.Array) -> DefocusModel:
    """Initialises a model's parameters (Flax defaults: LeCun-normal kernels, zero biases)."""
    hand = jnp.zeros((1, config.hand_width), jnp.float32)
    cnn = jnp.zeros((1, 27, 27, 3), jnp.float32)
    params = DefocusNet(config).init(key, hand, cnn, train=False)["params"]
    return DefocusModel(params=params, config=config)
