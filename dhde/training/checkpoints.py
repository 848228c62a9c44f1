"""Orbax checkpoints of the training state: keep the last N and the best by validation accuracy.

A checkpoint holds the whole :class:`~dhde.training.step.TrainState` (step, params, optimiser
state); the data order is a pure function of (seed, step), so restoring the state is enough to
continue exactly where a killed run stopped. Restoring takes the target shardings of the *current*
mesh, so a run saved on 8 devices resumes on 1 and vice versa.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not match the model."""


def _metric(metrics: dict) -> float:
    return metrics["val_tolerance_accuracy"]


def manager(directory: str | Path, keep_last: int = 3, async_save: bool = False) -> ocp.CheckpointManager:
    """A CheckpointManager that preserves the last ``keep_last`` steps and the best one.

    "Best" is the highest ``val_tolerance_accuracy`` among saved metrics.
    """
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
    """Saves ``state`` at ``step`` with optional scalar metrics (used to pick the best)."""
    mgr.save(
        int(step),
        args=ocp.args.StandardSave(state),
        metrics={k: float(v) for k, v in metrics.items()} if metrics else None,
    )
    mgr.wait_until_finished()


def restore(mgr: ocp.CheckpointManager, step: int, target_state):
    """Restores checkpoint ``step`` into the structure and shardings of ``target_state``.

    Raises:
      CheckpointError: the checkpoint cannot be read (corrupt, truncated, or saved by a
        different model configuration).
    """
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target_state)
    try:
        return mgr.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax raises many types; name the file and the cause
        raise CheckpointError(
            f"cannot restore checkpoint step {step} from {mgr.directory}: {type(e).__name__}: {e}. "
            "It is corrupt or was written by a different model configuration; move it away "
            "to start afresh."
        ) from e


def restore_latest(mgr: ocp.CheckpointManager, target_state):
    """:func:`restore` of the latest checkpoint, or None when the directory holds none."""
    step = mgr.latest_step()
    return None if step is None else restore(mgr, step, target_state)


def best_step(mgr: ocp.CheckpointManager) -> int | None:
    """Step of the best checkpoint by validation accuracy (None if none has metrics)."""
    return mgr.best_step()
