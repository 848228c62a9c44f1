"""``train_and_evaluate(config, workdir)``: the whole training run, resumable.

``config`` is the composed Hydra config (``conf/train.yaml``) or any mapping with the same
keys. Everything the run writes goes under ``workdir``:

    checkpoints/           orbax: last N steps + the best by validation accuracy
    model/                 the best model, loadable with ``dhde.load_model(workdir/"model")``
    metrics.json           test metrics (Table-1 numbers) and the run's settings
    confusion.png          test confusion matrix
    history.jsonl          training/validation curves

Kill the process and run the same command again: it resumes from the last checkpoint and
sees the same batches it would have seen (the data order is a pure function of seed and step).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import sys
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from dhde.config import check as cc
from dhde.io import atomic
from dhde.model.cnn import DeepFeature
from dhde.features.pipeline import context_cnn, context_hand
from dhde.model.network import DefocusModel, DefocusNet, ModelConfig, init_model
from dhde.model.io import save_model
from dhde.training import checkpoints
from dhde.data.config import DataConfig
from dhde.training.config import RunConfig, TrainConfig
from dhde.training.metrics import classification_metrics, confusion_png, learning_curve_png
from dhde.training.optim import input_scaled, scale_initial_kernel
from dhde.training.step import compile_steps, data_mesh, init_state, put_batch, replicated

#: ``train.cnn_input_scale``: the CNN is trained as if its 0..255 input were multiplied by this
#: (:func:`dhde.training.optim.input_scaled`); 1.0 trains on the raw 0..255 values, as the
#: authors' Caffe solver did. The default lives in :class:`dhde.training.config.TrainConfig`.
DEFAULT_CNN_INPUT_SCALE = TrainConfig.cnn_input_scale


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; the checkpoints on disk are kept (the message says
    which step the run resumed from, or which it saved last)."""


def model_config(cfg) -> ModelConfig:
    """ModelConfig from the ``features``, ``encoding`` and ``model`` config sections (absent
    keys: the defaults of :class:`dhde.training.config.ModelSection`).

    Raises:
      dhde.config.check.ConfigError: a bad value, naming its key.
    """
    return RunConfig.from_mapping({k: cfg[k] for k in ("features", "encoding", "model") if k in cfg}).model_config


@partial(jax.jit, static_argnames=("config",))
def _hand_batch(patch_u8, scale, config):
    return context_hand(patch_u8.astype(jnp.float32) / 255.0, scale == 2, config)


def hand_features(arrays: dict, config: ModelConfig, chunk: int = 8192, desc="hand features") -> np.ndarray:
    """Precomputes the (N, hand_width) encoded hand-crafted features of a loaded split.

    They do not depend on the parameters, so computing them once makes each training step
    cost only the CNN and the classifier.
    """
    n = len(arrays["label"])
    out = np.zeros((n, config.hand_width), np.float32)
    if config.hand_width == 0 or n == 0:
        return out
    chunk = min(chunk, 1 << max(n - 1, 1).bit_length())  # small splits: pad to a power of 2, not to chunk
    for s in tqdm(range(0, n, chunk), desc=desc, leave=False):
        p, sc = arrays["patch"][s : s + chunk], arrays["scale"][s : s + chunk]
        m = len(p)
        if m < chunk:  # pad the tail so every chunk has one shape (one compilation)
            p = np.concatenate([p, np.zeros((chunk - m,) + p.shape[1:], p.dtype)])
            sc = np.concatenate([sc, np.ones(chunk - m, sc.dtype)])
        out[s : s + m] = np.asarray(_hand_batch(p, sc, config))[:m]
    return out


def _append_line(f, record: dict) -> None:
    """Appends one JSON line to an unbuffered binary log; on a full disk the partial line is cut
    off again (the log keeps whole lines only) and DiskFullError is raised."""
    pos = f.tell()
    data = memoryview((json.dumps(record) + "\n").encode())
    try:
        while data:  # a raw write may be short (e.g. the last free block)
            data = data[f.write(data):]
    except OSError as e:
        with contextlib.suppress(OSError):
            f.truncate(pos)
        if atomic.is_disk_full(e):
            raise atomic.disk_full_error(f.name, e) from e
        raise


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> np.ndarray:
    """Indices of global batch ``step``: epoch-wise permutations seeded by (seed, epoch)."""
    per_epoch = max(n // batch_size, 1)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    idx = perm[k * batch_size : (k + 1) * batch_size]
    if len(idx) < batch_size:  # tiny data sets: wrap around
        idx = np.resize(perm, batch_size)
    return idx


def _host_batch(arrays, hand, idx, weight=None):
    b = {
        "patch": arrays["patch"][idx],
        "scale": arrays["scale"][idx],
        "label": arrays["label"][idx],
        "hand": hand[idx],
        "weight": np.ones(len(idx), np.float32) if weight is None else weight,
    }
    return b


def _process_rows(b: dict) -> dict:
    """This process's rows of a global host batch (multi-host data parallelism)."""
    p, n = jax.process_index(), jax.process_count()
    if n == 1:
        return b
    rows = len(b["label"]) // n
    return {k: v[p * rows : (p + 1) * rows] for k, v in b.items()}


def predict_split(eval_fn, params, arrays, hand, mesh, batch_size) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels and confidences of a whole split (padded to full batches)."""
    n = len(arrays["label"])
    preds, confs = [], []
    for s in range(0, n, batch_size):
        idx = np.arange(s, min(s + batch_size, n))
        w = np.ones(batch_size, np.float32)
        if len(idx) < batch_size:
            w[len(idx):] = 0
            idx = np.concatenate([idx, np.zeros(batch_size - len(idx), idx.dtype)])
        b = put_batch(_process_rows(_host_batch(arrays, hand, idx, w)), mesh)
        p, c = eval_fn(params, b)
        m = int(w.sum())
        preds.append(np.asarray(jax.device_get(p))[:m])
        confs.append(np.asarray(jax.device_get(c))[:m])
    if not preds:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    return np.concatenate(preds), np.concatenate(confs)


def deep_activity(params, arrays: dict, config: ModelConfig, n: int = 256) -> float | None:
    """Fraction of the deep feature's 25 units that fire (> 0) on at least one of the first
    ``n`` patches of ``arrays`` (a loaded split); None for a model without the CNN.

    0 means the CNN is dead: every patch gives the classifier the same (zero) deep feature, and
    the model is a hand-crafted-only model with extra weights.
    """
    if not config.uses_deep or len(arrays["label"]) == 0:
        return None
    rgb = jnp.asarray(arrays["patch"][:n], jnp.float32) / 255.0
    cnn = context_cnn(rgb, jnp.asarray(arrays["scale"][:n]) == 2, config)
    out = DeepFeature(impl="conv").apply({"params": params["deep"]}, cnn)
    return float(jnp.mean(jnp.any(out > 0, axis=0)))


def load_splits(cfg) -> dict:
    """Builds (if needed) the TFDS patch data set of ``cfg``'s ``data`` section and loads its
    splits into memory.

    Args:
      cfg: the training config (its ``data`` section is read through
        :meth:`dhde.data.config.DataConfig.from_mapping`), or a :class:`DataConfig`.

    Returns:
      ``{"train", "validation", "test"}`` -> arrays (see ``dhde.data.defocus_patches.load_arrays``).
    """
    from dhde.data.defocus_patches import build_locked, load_arrays, make_config

    data = cfg if isinstance(cfg, DataConfig) else DataConfig.from_mapping(cc.get(cfg, "data"))
    keys = inspect.signature(make_config).parameters
    dcfg = make_config(**{k: getattr(data, k) for k in keys if hasattr(data, k)})
    sources = build_locked(dcfg, data.data_dir)
    out = {}
    for split in ("train", "validation", "test"):
        limit = getattr(data, f"max_{split}")
        n = len(sources[split])
        idx = None
        if limit is not None and n > int(limit):
            idx = np.sort(np.random.default_rng([dcfg.seed, 7]).choice(n, int(limit), replace=False))
        out[split] = load_arrays(sources[split], idx, desc=f"loading {split}")
    return out


def train_and_evaluate(cfg, workdir: str | Path, splits: dict | None = None) -> dict:
    """Trains a classifier, resuming from ``workdir/checkpoints`` if present; returns test metrics.

    Args:
      cfg: composed config (see ``conf/train.yaml``); read through
        :class:`dhde.training.config.RunConfig` (absent keys: its defaults).
      workdir: output folder (Hydra's run directory).
      splits: optional preloaded ``{"train", "validation", "test"}`` arrays (tests).

    Raises:
      dhde.config.check.ConfigError: a bad config value, before any data is built or loaded.
      dhde.training.checkpoints.CheckpointMismatchError: ``workdir`` holds checkpoints of a
        different configuration. (A corrupt latest checkpoint is set aside with a warning and
        the run resumes from the newest valid one.)
      NonFiniteLossError: the loss or the parameters became NaN / inf.
      dhde.io.atomic.DiskFullError: no space left for a checkpoint or an output file.
    """
    run = RunConfig.from_mapping(cfg)  # every check, before any data is built; absent keys: defaults
    t, seed = run.train, run.seed
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    steps, batch_size, schedule, select = t.steps, t.batch_size, t.schedule, t.select
    stage1, eval_every, log_every = t.stage1_steps, t.eval_every, t.log_every
    mesh = data_mesh()
    ndev = mesh.devices.size
    if batch_size % ndev:
        raise ValueError(f"train.batch_size={batch_size} must be a multiple of the device count {ndev}")

    mcfg = run.model_config
    if schedule == "two_stage" and (not mcfg.uses_deep or not mcfg.hand_components):
        raise ValueError("the two_stage schedule needs a feature set with both C and hand-crafted features")
    splits = splits if splits is not None else load_splits(run.data or DataConfig())
    if len(splits["train"]["label"]) == 0:
        raise ValueError("the training split is empty: no source image gave balanced edge patches")
    hands = {k: hand_features(v, mcfg, desc=f"hand features ({k})") for k, v in splits.items()}

    cnn_input_scale, augment = t.cnn_input_scale, t.augment
    tx = input_scaled(run.optimizer.make(steps), cnn_input_scale)
    net = DefocusNet(mcfg)
    step_hand, step_nohand, eval_fn = compile_steps(mesh, net, tx, augment=augment)

    params = scale_initial_kernel(init_model(mcfg, jax.random.key(seed)).params, cnn_input_scale)
    state = jax.device_put(init_state(params, tx), replicated(mesh))
    mgr = checkpoints.manager(workdir / "checkpoints", keep_last=t.keep_last)
    restored, resumed_from = checkpoints.restore_latest(mgr, state)
    if restored is not None:
        state = restored
        print(f"resumed from checkpoint step {resumed_from} in {workdir / 'checkpoints'}")
    saved_here: list[int] = []  # checkpoints written (with finite parameters) by this process
    start = int(state.step)
    key = jax.random.key(seed + 1)
    n_train = len(splits["train"]["label"])
    history = open(workdir / "history.jsonl", "ab", buffering=0)  # unbuffered: whole lines only

    def validate(state):
        p, _ = predict_split(eval_fn, state.params, splits["validation"], hands["validation"], mesh, batch_size)
        m = classification_metrics(p, splits["validation"]["label"], splits["validation"]["scale"])
        return m["tolerance_accuracy"]

    warned_dead = False
    t0, seen = time.perf_counter(), 0
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="training", unit="step")
    last_loss = math.nan

    def blame(done: int) -> str:
        """Which checkpoint the bad loss at step ``done`` follows, in words."""
        where = workdir / "checkpoints"
        if saved_here:
            return (f"The last checkpoint this run wrote with finite parameters (step {saved_here[-1]}) is kept "
                    f"in {where}. Lower optimizer.lr or set optimizer.grad_clip.")
        if resumed_from is not None:
            return (f"The run resumed from checkpoint step {resumed_from} in {where} ({done - resumed_from} steps "
                    f"before), verified on restore; if the loss was finite before the resume, lower "
                    "optimizer.lr or set optimizer.grad_clip, or move that step folder away to resume from an "
                    "earlier checkpoint.")
        return "No checkpoint was written. Lower optimizer.lr or set optimizer.grad_clip."

    for step in bar:
        idx = batch_indices(step, n_train, batch_size, seed)
        batch = put_batch(_process_rows(_host_batch(splits["train"], hands["train"], idx)), mesh)
        fn = step_nohand if step < stage1 else step_hand
        state, metrics = fn(state, batch, key)
        seen += batch_size
        done = step + 1
        if done % log_every == 0 or done == steps:
            last_loss = float(metrics["loss"])
            if not math.isfinite(last_loss):
                history.close()
                raise NonFiniteLossError(f"loss became {last_loss} at step {done}; training stopped. {blame(done)}")
            rate = seen / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{last_loss:.3f}", acc=f"{float(metrics['accuracy']):.3f}", pps=f"{rate:.0f}")
            _append_line(history, {"step": done, "loss": last_loss, "accuracy": float(metrics["accuracy"]),
                                   "patches_per_s": rate})
        if done % eval_every == 0 or done == steps:
            loss_now = float(metrics["loss"])
            finite = all(bool(jnp.isfinite(x).all()) for x in jax.tree_util.tree_leaves(state.params))
            if not (math.isfinite(loss_now) and finite):  # never checkpoint non-finite parameters
                history.close()
                raise NonFiniteLossError(
                    f"loss became {loss_now}{'' if finite else ' (parameters not finite)'} at step "
                    f"{done}; training stopped. {blame(done)}"
                )
            val = validate(state)
            active = deep_activity(state.params, splits["validation"], mcfg)
            line = {"step": done, "val_tolerance_accuracy": val}
            if active is not None:
                line["deep_active_units"] = active
                if active == 0 and not warned_dead:
                    warned_dead = True
                    print(f"warning: the deep feature is dead at step {done}: none of its 25 units fires on "
                          "the first 256 validation patches, so the classifier sees only the hand-crafted "
                          "features. Keep train.cnn_input_scale at 1/255 or lower optimizer.lr.", file=sys.stderr)
            _append_line(history, line)
            checkpoints.save(mgr, done, state, {"val_tolerance_accuracy": val})
            saved_here.append(done)
    history.close()

    best = (checkpoints.best_step(mgr) if select == "best" else None) or mgr.latest_step()
    if best is not None and best != int(state.step):
        state = checkpoints.restore(mgr, best, state)
    pred, _ = predict_split(eval_fn, state.params, splits["test"], hands["test"], mesh, batch_size)
    test = classification_metrics(pred, splits["test"]["label"], splits["test"]["scale"])
    confusion_png(test["confusion"], workdir / "confusion.png",
                  f"{mcfg.feature_set} / {mcfg.encoding}: {100 * test['tolerance_accuracy']:.2f} %")
    learning_curve_png(workdir / "history.jsonl", workdir / "learning_curve.png",
                       f"{mcfg.feature_set} / {mcfg.encoding}")
    result = {k: v for k, v in test.items() if k != "confusion"}
    result.update(
        feature_set=mcfg.feature_set, encoding=mcfg.encoding, steps=steps, best_step=best, select=select,
        schedule=schedule, seed=seed, normalize=mcfg.normalize, gradient=mcfg.gradient,
        cnn_input_scale=cnn_input_scale, augment=augment, deep_active_units=deep_activity(state.params, splits["test"], mcfg),
        confusion=test["confusion"].tolist(),
    )
    atomic.write_json(workdir / "metrics.json", result)
    model_dir = workdir / "model"
    if model_dir.exists() and not (model_dir / "config.json").exists():  # an interrupted save (e.g. full disk)
        aside = model_dir.with_name(f"model.incomplete-{time.strftime('%Y%m%d-%H%M%S')}")
        model_dir.rename(aside)
        print(f"warning: {model_dir} was an incomplete save (no config.json); moved it to {aside}", file=sys.stderr)
    if not model_dir.exists():
        save_model(DefocusModel(jax.device_get(state.params), mcfg), model_dir,
                   extra={"test_metrics": {k: v for k, v in result.items() if k != "confusion"}})
    mgr.close()
    return result
