"""Saving and loading trained models (orbax), and the model that ships with the package.

A model directory holds ``config.json`` (the :class:`ModelConfig`, metadata, and
``params_sha256``: a SHA-256 content hash of the parameters, see :func:`tree_sha256`) and an
orbax ``params`` checkpoint. :func:`load_model` checks the parameter shapes against the config
and the hash against the parameters, so a damaged file is an error, not a silently different
network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from dhde.io import atomic
from dhde.model.network import DefocusModel, ModelConfig, init_model

#: Where the default model lives inside the installed package.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "default_model"
#: config.json key of the parameters' content hash.
CHECKSUM_KEY = "params_sha256"


def host_array(x) -> np.ndarray:
    """A NumPy copy of a leaf; for a replicated multi-host jax.Array its local replica."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = x.addressable_data(0)
    return np.asarray(x)


def quiet_closed_loop_noise() -> None:
    """Drops the "Event loop is closed" RuntimeErrors that TensorStore's pending callbacks
    report (as unraisable exceptions, one traceback each) after orbax gives up on a damaged
    checkpoint (model or training state); they would bury the one-line warning. Every other unraisable exception goes to
    the previous hook. Installed once per process."""
    previous = sys.unraisablehook
    if getattr(previous, "_dhde_quiet", False):
        return

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        previous(unraisable)

    hook._dhde_quiet = True
    sys.unraisablehook = hook


def tree_sha256(tree) -> str:
    """SHA-256 hex digest of a pytree of arrays, independent of how the tree is stored.

    Canonical order: leaves sorted by their key path (``jax.tree_util.keystr``); each leaf
    contributes its path, dtype (little-endian), shape and C-order little-endian bytes. Two
    trees have the same digest exactly when they hold the same arrays bit for bit under the
    same names.
    """
    h = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    for key, leaf in sorted(((jax.tree_util.keystr(p), v) for p, v in leaves), key=lambda kv: kv[0]):
        a = host_array(leaf)
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype)
        h.update(f"{key}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def expected_param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """{key path: shape} of the parameters a model with ``config`` has (no weights computed)."""
    shapes = jax.eval_shape(lambda: init_model(config, jax.random.key(0)).params)
    return {jax.tree_util.keystr(p): tuple(v.shape) for p, v in jax.tree_util.tree_flatten_with_path(shapes)[0]}


def _check_shapes(params, config: ModelConfig, where) -> None:
    got = {jax.tree_util.keystr(p): tuple(np.shape(v)) for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    want = expected_param_shapes(config)
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise ValueError(f"model parameters at {where} do not match config.json ({config.feature_set} / "
                         f"{config.encoding}, hidden {config.hidden}): missing {missing}, unexpected {extra}")
    bad = [f"{k} is {got[k]}, expected {want[k]}" for k in sorted(want) if got[k] != want[k]]
    if bad:
        raise ValueError(f"model parameters at {where} do not match config.json: " + "; ".join(bad))


def save_model(model: DefocusModel, directory: str | Path, extra: dict | None = None) -> Path:
    """Writes ``config.json`` (with ``params_sha256``) and an orbax ``params`` checkpoint.

    An existing model directory is never overwritten: pick a new directory. ``config.json`` is
    written last and atomically, so a directory without it is an incomplete save.

    Raises:
      FileExistsError: ``directory`` already holds a model.
      ValueError: non-finite parameters (a model with NaN / inf weights is never saved).
    """
    d = Path(directory).absolute()
    if (d / "params").exists() or (d / "config.json").exists():
        raise FileExistsError(f"a model already exists at {d}; refusing to overwrite it")
    params = jax.tree_util.tree_map(lambda x: host_array(x).astype(np.float32), model.params)
    bad = [jax.tree_util.keystr(p) for p, v in jax.tree_util.tree_flatten_with_path(params)[0]
           if not np.isfinite(v).all()]
    if bad:
        raise ValueError(f"refusing to save a model with NaN or infinite parameters in {bad}")
    d.mkdir(parents=True, exist_ok=True)
    try:
        with ocp.StandardCheckpointer() as ckpt:
            ckpt.save(d / "params", params)
    except Exception as e:
        if atomic.is_disk_full(e):
            raise atomic.disk_full_error(d / "params", e) from e
        raise
    meta = {"config": dataclasses.asdict(model.config), **(extra or {}), CHECKSUM_KEY: tree_sha256(params)}
    atomic.write_json(d / "config.json", meta, default=str)
    return d


def load_model(directory: str | Path | None = None) -> DefocusModel:
    """Loads a model saved by :func:`save_model`; ``None`` loads the shipped default model.

    The parameters are checked against ``config.json``: their names and shapes must be those
    of the configured network, their SHA-256 (:func:`tree_sha256`) must equal
    ``params_sha256``, and they must be finite. A model saved before dhde wrote checksums loads
    with a ``UserWarning`` (re-save it with :func:`save_model` to add one).

    Returns:
      A :class:`DefocusModel` with float32 parameters.

    Raises:
      ValueError: the directory is missing, lacks ``config.json``/``params``, is unreadable or
        corrupt, its parameter shapes do not match the config, or its checksum does not match.
    """
    d = DEFAULT_MODEL_DIR if directory is None else Path(directory).absolute()
    if not (d / "config.json").is_file() or not (d / "params").is_dir():
        raise ValueError(f"no dhde model at {d} (expected config.json and params/)")
    try:
        meta = json.loads((d / "config.json").read_text())
        cfg = dict(meta["config"])
        cfg["hidden"] = tuple(cfg.get("hidden", (300, 150)))
        config = ModelConfig(**cfg)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"model config {d / 'config.json'} is corrupt: {type(e).__name__}: {e}") from e
    quiet_closed_loop_noise()
    try:
        with ocp.StandardCheckpointer() as ckpt:
            params = ckpt.restore(d / "params")
    except Exception as e:
        raise ValueError(f"model parameters at {d / 'params'} are corrupt: {type(e).__name__}: {e}") from e
    params = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), params)
    _check_shapes(params, config, d / "params")
    expected = meta.get(CHECKSUM_KEY)
    if expected is None:
        warnings.warn(f"model at {d} has no {CHECKSUM_KEY} in config.json (saved by an older dhde): its "
                      "parameters cannot be verified; re-save it with dhde.save_model to add a checksum",
                      stacklevel=2)
    elif tree_sha256(params) != expected:
        raise ValueError(f"model parameters at {d / 'params'} are corrupt: their SHA-256 does not match "
                         f"{CHECKSUM_KEY} in config.json (the files were changed or damaged after saving)")
    bad = [jax.tree_util.keystr(p) for p, v in jax.tree_util.tree_flatten_with_path(params)[0]
           if not np.isfinite(v).all()]
    if bad:
        raise ValueError(f"model parameters at {d / 'params'} contain NaN or infinite values in {bad}")
    params = jax.tree_util.tree_map(lambda x: jax.numpy.asarray(x, jax.numpy.float32), params)
    return DefocusModel(params=params, config=config)
