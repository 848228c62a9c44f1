"""Orbax checkpoints of the training state: keep the last N and the best by validation accuracy.

A checkpoint holds the whole :class:`~dhde.training.step.TrainState` (step, params, optimiser
state); the data order is a pure function of (seed, step), so restoring the state is enough to
continue exactly where a killed run stopped. Restoring takes the target shardings of the *current*
mesh, so a run saved on 8 devices resumes on 1 and vice versa.

Integrity: every checkpoint carries ``state_sha256`` (:func:`dhde.model.io.tree_sha256` of the
state) in orbax's step metadata (``<step>/_CHECKPOINT_METADATA``, ``custom_metadata``).
:func:`restore` verifies it and that the parameters are finite. :func:`restore_latest` sets a
corrupt or unreadable latest checkpoint aside (renamed to ``<step>.corrupt``, never deleted)
with a one-line warning and resumes from the newest valid one. A checkpoint written by a
different model configuration is not corrupt: it stops the run (:class:`CheckpointMismatchError`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

from dhde.io import atomic
from dhde.model.io import host_array, quiet_closed_loop_noise, tree_sha256

#: custom_metadata key of the state's content hash.
CHECKSUM_KEY = "state_sha256"
#: Suffix of a checkpoint folder set aside as corrupt.
CORRUPT_SUFFIX = ".corrupt"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not match the model."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint cannot be read, fails its checksum, or holds non-finite parameters."""


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint whose arrays do not fit the current model / optimiser config."""


def _metric(metrics: dict) -> float:
    return metrics["val_tolerance_accuracy"]


def _unreadable_json(step_dir: Path) -> str | None:
    """Why a step folder's small JSON files (orbax's step metadata and metrics) cannot be
    parsed, or None. Orbax reads them when it opens the folder and fails on any of them."""
    for f in (step_dir / "_CHECKPOINT_METADATA", step_dir / "metrics" / "metrics"):
        if f.is_file():
            try:
                json.loads(f.read_text())
            except (ValueError, UnicodeDecodeError, OSError) as e:
                return f"{f.relative_to(step_dir).as_posix()} is unreadable ({type(e).__name__})"
    return None


def _rename_aside(src: Path) -> Path:
    """Renames a step folder to ``<step>.corrupt`` (``.corrupt-2``, ... if taken); returns it."""
    dst = src.with_name(src.name + CORRUPT_SUFFIX)
    k = 2
    while dst.exists():
        dst = src.with_name(f"{src.name}{CORRUPT_SUFFIX}-{k}")
        k += 1
    if jax.process_index() == 0:
        src.rename(dst)
    if jax.process_count() > 1:
        from orbax.checkpoint import multihost

        multihost.sync_global_processes(f"dhde_set_aside_{src.name}")
    return dst


def manager(directory: str | Path, keep_last: int = 3, async_save: bool = False) -> ocp.CheckpointManager:
    """A CheckpointManager that preserves the last ``keep_last`` steps and the best one.

    "Best" is the highest ``val_tolerance_accuracy`` among saved metrics. A step folder whose
    metadata or metrics file is unreadable (orbax would fail to open the directory) is set
    aside first, with a one-line warning.
    """
    d = Path(directory).absolute()
    if d.is_dir():
        for step_dir in sorted((x for x in d.iterdir() if x.is_dir() and x.name.isdigit()),
                               key=lambda x: int(x.name), reverse=True):
            why = _unreadable_json(step_dir)
            if why is not None:
                dst = _rename_aside(step_dir)
                print(f"warning: checkpoint step {step_dir.name} in {d} is corrupt ({why}); moved it to {dst}",
                      file=sys.stderr)
    policy = cm.AnyPreservationPolicy(
        [
            cm.LatestN(n=keep_last),
            cm.BestN(get_metric_fn=_metric, n=1, keep_checkpoints_without_metrics=False),
        ]
    )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, create=True, enable_async_checkpointing=async_save,
        # best_fn makes orbax write each step's metrics to disk and track the best, so
        # ``best_step`` is right and survives a resume (without it orbax returns the latest).
        best_fn=_metric, best_mode="max",
    )
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def save(mgr: ocp.CheckpointManager, step: int, state, metrics: dict | None = None) -> None:
    """Saves ``state`` at ``step`` with optional scalar metrics (used to pick the best) and its
    ``state_sha256``.

    Raises:
      dhde.io.atomic.DiskFullError: no space left (orbax leaves no half-written step behind).
    """
    try:
        mgr.save(
            int(step),
            args=ocp.args.StandardSave(state),
            metrics={k: float(v) for k, v in metrics.items()} if metrics else None,
            custom_metadata={CHECKSUM_KEY: tree_sha256(state)},
        )
        mgr.wait_until_finished()
    except Exception as e:
        if atomic.is_disk_full(e):
            raise atomic.disk_full_error(Path(mgr.directory) / str(int(step)), e) from e
        raise


def _shapes(tree) -> list[tuple]:
    return sorted(tuple(getattr(x, "shape", np.shape(x))) for x in jax.tree_util.tree_leaves(tree))


def _mismatch(mgr, step, target_state) -> str | None:
    """A description of how checkpoint ``step``'s arrays differ from the target's, if they do
    and its metadata is readable; else None."""
    try:
        meta = mgr.item_metadata(step)
        tree = getattr(meta, "tree", meta)
        saved = _shapes(tree)
    except Exception:
        return None
    want = _shapes(target_state)
    if not saved or saved == want:
        return None
    return f"it holds {len(saved)} arrays of shapes {saved[:6]}..., the current config needs {len(want)} of {want[:6]}..."


def restore(mgr: ocp.CheckpointManager, step: int, target_state):
    """Restores checkpoint ``step`` into the structure and shardings of ``target_state`` and
    verifies it: ``state_sha256`` (a checkpoint without one, from an older dhde, loads with a
    warning) and finite parameters.

    Raises:
      CorruptCheckpointError: unreadable, truncated, checksum mismatch or non-finite values.
      CheckpointMismatchError: readable, but saved by a different model configuration.
    """
    where = f"checkpoint step {step} in {mgr.directory}"
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target_state)
    quiet_closed_loop_noise()
    try:
        state = mgr.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax raises many types; name the file and the cause
        why = _mismatch(mgr, step, target_state)
        if why is not None:
            raise CheckpointMismatchError(
                f"{where} was written by a different model configuration ({why}); use a new "
                "hydra.run.dir for a new configuration") from e
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        first = first.split(" See full TensorStore details")[0][:200]
        raise CorruptCheckpointError(f"{where} is unreadable ({type(e).__name__}: {first})") from e
    why = _unreadable_json(Path(mgr.directory) / str(int(step)))
    if why is not None:
        raise CorruptCheckpointError(f"{where} is corrupt ({why})")
    try:
        expected = (mgr.metadata(step).custom_metadata or {}).get(CHECKSUM_KEY)
    except Exception as e:
        raise CorruptCheckpointError(f"{where} has unreadable metadata ({type(e).__name__})") from e
    if expected is None:
        print(f"warning: {where} has no {CHECKSUM_KEY} (written by an older dhde); not verified", file=sys.stderr)
    elif tree_sha256(state) != expected:
        raise CorruptCheckpointError(f"{where} fails its checksum ({CHECKSUM_KEY}): its files were damaged")
    leaves = jax.tree_util.tree_leaves(state.params if hasattr(state, "params") else state)
    if not all(np.isfinite(host_array(x)).all() for x in leaves):
        raise CorruptCheckpointError(f"{where} holds NaN or infinite parameters")
    return state


def set_aside(mgr: ocp.CheckpointManager, step: int) -> Path:
    """Renames checkpoint ``step``'s folder to ``<step>.corrupt`` (``.corrupt-2``, ... if taken)
    beside it, so orbax no longer sees it; nothing is deleted. Returns the new path."""
    dst = _rename_aside(Path(mgr.directory) / str(int(step)))
    mgr.reload()
    return dst


def restore_latest(mgr: ocp.CheckpointManager, target_state):
    """The newest valid checkpoint: ``(state, step)``, or ``(None, None)`` when there is none.

    A corrupt or unreadable latest checkpoint is set aside (:func:`set_aside`) with a one-line
    warning on stderr, and the next newest is tried.

    Raises:
      CheckpointMismatchError: a checkpoint written by a different model configuration.
    """
    while (step := mgr.latest_step()) is not None:
        try:
            return restore(mgr, step, target_state), step
        except CorruptCheckpointError as e:
            dst = set_aside(mgr, step)
            nxt = mgr.latest_step()
            then = f"resuming from step {nxt}" if nxt is not None else "no valid checkpoint left: starting afresh"
            print(f"warning: {e}; moved it to {dst}; {then}", file=sys.stderr)
    return None, None


def best_step(mgr: ocp.CheckpointManager) -> int | None:
    """Step of the best checkpoint by validation accuracy (None if none has metrics)."""
    return mgr.best_step()
