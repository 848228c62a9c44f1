"""Saving and loading trained models (orbax), and the model that ships with the package."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from dhde.model import DefocusModel, ModelConfig

#: Where the default model lives inside the installed package.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "default_model"


def save_model(model: DefocusModel, directory: str | Path, extra: dict | None = None) -> Path:
    """Writes ``config.json`` and an orbax ``params`` checkpoint under ``directory``.

    An existing model directory is never overwritten: pick a new directory.
    """
    d = Path(directory).absolute()
    if (d / "params").exists():
        raise FileExistsError(f"a model already exists at {d}; refusing to overwrite it")
    d.mkdir(parents=True, exist_ok=True)
    params = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), model.params)
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(d / "params", params)
    meta = {"config": dataclasses.asdict(model.config), **(extra or {})}
    (d / "config.json").write_text(json.dumps(meta, indent=2, default=str))
    return d


def load_model(directory: str | Path | None = None) -> DefocusModel:
    """Loads a model saved by :func:`save_model`; ``None`` loads the shipped default model.

    Raises:
      ValueError: the directory is missing, lacks ``config.json``/``params``, or is corrupt.
    """
    d = DEFAULT_MODEL_DIR if directory is None else Path(directory).absolute()
    if not (d / "config.json").is_file() or not (d / "params").is_dir():
        raise ValueError(f"no dhde model at {d} (expected config.json and params/)")
    try:
        meta = json.loads((d / "config.json").read_text())
        cfg = dict(meta["config"])
        cfg["hidden"] = tuple(cfg.get("hidden", (300, 150)))
        config = ModelConfig(**cfg)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"model config {d / 'config.json'} is corrupt: {e}") from e
    try:
        with ocp.StandardCheckpointer() as ckpt:
            params = ckpt.restore(d / "params")
    except Exception as e:
        raise ValueError(f"model parameters at {d / 'params'} are corrupt: {type(e).__name__}: {e}") from e
    params = jax.tree_util.tree_map(lambda x: jax.numpy.asarray(x, jax.numpy.float32), params)
    return DefocusModel(params=params, config=config)


def model_metadata(directory: str | Path | None = None) -> dict:
    """The JSON metadata saved beside a model (training command, accuracy, ...)."""
    d = DEFAULT_MODEL_DIR if directory is None else Path(directory)
    return json.loads((d / "config.json").read_text())
