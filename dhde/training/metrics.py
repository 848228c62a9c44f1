"""Classification metrics of the blur-level classifier (paper Table 1) and a confusion PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dhde.io import atomic
from dhde.labels import NUM_LABELS, SIGMAS, TOLERANCE


def classification_metrics(pred: np.ndarray, label: np.ndarray, scale: np.ndarray) -> dict:
    """Accuracy within tolerance 0.15 sigma (paper), exact accuracy, both per scale, confusion.

    Args:
      pred, label: (N,) int 0-based labels.
      scale: (N,) int, 1 = large patch, 2 = small patch.

    Returns:
      {"tolerance_accuracy", "exact_accuracy", "tolerance_accuracy_large", ...,
       "tolerance_accuracy_per_level" (11 floats, None for an absent level),
       "count", "confusion" (11, 11) int64 rows = true label}.
    """
    pred, label, scale = (np.asarray(a).reshape(-1) for a in (pred, label, scale))
    if not (pred.shape == label.shape == scale.shape):
        raise ValueError("pred, label and scale must have the same length")
    tol = np.abs(SIGMAS[pred] - SIGMAS[label]) <= TOLERANCE + 1e-4
    exact = pred == label
    out = {
        "count": int(pred.size),
        "tolerance_accuracy": float(tol.mean()) if pred.size else float("nan"),
        "exact_accuracy": float(exact.mean()) if pred.size else float("nan"),
    }
    for s, nm in ((1, "large"), (2, "small")):
        m = scale == s
        out[f"tolerance_accuracy_{nm}"] = float(tol[m].mean()) if m.any() else float("nan")
        out[f"exact_accuracy_{nm}"] = float(exact[m].mean()) if m.any() else float("nan")
    out["tolerance_accuracy_per_level"] = [
        float(tol[label == k].mean()) if (label == k).any() else None for k in range(NUM_LABELS)
    ]
    cm = np.zeros((NUM_LABELS, NUM_LABELS), np.int64)
    np.add.at(cm, (label, pred), 1)
    out["confusion"] = cm
    return out


def confusion_png(confusion: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Writes a row-normalised confusion matrix (true sigma vs predicted sigma) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ticks = [f"{s:.2f}" for s in SIGMAS]
    ax.set_xticks(range(NUM_LABELS), ticks, rotation=90)
    ax.set_yticks(range(NUM_LABELS), ticks)
    ax.set_xlabel("predicted sigma")
    ax.set_ylabel("true sigma")
    ax.set_title(title or "confusion (row-normalised)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    try:
        return atomic.savefig(path, fig, dpi=100)
    finally:
        plt.close(fig)


def read_history(path: str | Path) -> dict[str, np.ndarray]:
    """Training curves from a run's ``history.jsonl``, sorted by step, last entry per step wins.

    Returns:
      {"step", "loss", "accuracy"} (training, every ``log_every`` steps) and
      {"val_step", "val_tolerance_accuracy"} as NumPy arrays; unreadable lines are skipped
      (a killed run may leave a partial last line).
    """
    import json

    train, val = {}, {}
    for line in Path(path).read_text().splitlines():
        try:
            r = json.loads(line)
            step = int(r["step"])
        except (ValueError, KeyError, TypeError):
            continue
        if "val_tolerance_accuracy" in r:
            val[step] = float(r["val_tolerance_accuracy"])
        elif "loss" in r:
            train[step] = (float(r["loss"]), float(r.get("accuracy", np.nan)))
    ts, vs = sorted(train), sorted(val)
    return {
        "step": np.asarray(ts, np.int64),
        "loss": np.asarray([train[s][0] for s in ts], np.float64),
        "accuracy": np.asarray([train[s][1] for s in ts], np.float64),
        "val_step": np.asarray(vs, np.int64),
        "val_tolerance_accuracy": np.asarray([val[s] for s in vs], np.float64),
    }


def learning_curve_png(history_path: str | Path, path: str | Path, title: str = "") -> Path:
    """Writes the training loss and the validation tolerance accuracy against the step as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = read_history(history_path)
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    ax[0].plot(h["step"], h["loss"], lw=1)
    ax[0].set(xlabel="step", ylabel="training loss (batch, with dropout)", title="loss")
    ax[1].plot(h["val_step"], h["val_tolerance_accuracy"], "o-")
    ax[1].set(xlabel="step", ylabel="tolerance accuracy (0.15 px)", ylim=(0, 1), title="validation")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        return atomic.savefig(path, fig, dpi=100)
    finally:
        plt.close(fig)
