"""Optimisers and learning-rate schedules, built from plain config values."""

from __future__ import annotations

import optax


def inv_schedule(base_lr: float, gamma: float = 1e-4, power: float = 2.0) -> optax.Schedule:
    """Caffe's "inv" policy: lr(t) = base_lr * (1 + gamma t)^-power (authors: 1e-4, 1e-4, 2)."""

    def schedule(count):
        return base_lr * (1.0 + gamma * count) ** (-power)

    return schedule


def make_schedule(name: str, lr: float, steps: int, warmup: int = 0, **kw) -> optax.Schedule:
    """"constant", "inv" (Caffe), "cosine" (with optional linear warm-up)."""
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "inv":
        return inv_schedule(lr, kw.get("gamma", 1e-4), kw.get("power", 2.0))
    if name == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(steps, warmup + 1), lr * 1e-2)
    raise ValueError(f"unknown schedule {name!r}: use 'constant', 'inv' or 'cosine'")


def make_optimizer(
    name: str,
    lr: float,
    steps: int,
    schedule: str = "constant",
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    warmup: int = 0,
    grad_clip: float | None = None,
    **schedule_kw,
) -> optax.GradientTransformation:
    """Builds an optax optimiser.

    Args:
      name: "sgd" (momentum, coupled L2 weight decay as Caffe does: the authors' choice with
        lr 1e-4, schedule "inv", weight_decay 0.01) or "adamw" (decoupled weight decay).
      lr: peak learning rate.
      steps: total training steps (for decaying schedules).
      schedule: see :func:`make_schedule`.
      weight_decay: L2 (sgd) or decoupled (adamw) weight decay.
      momentum: SGD momentum.
      warmup: warm-up steps of the cosine schedule.
      grad_clip: global-norm clipping, or None.
    """
    sched = make_schedule(schedule, lr, steps, warmup, **schedule_kw)
    parts = []
    if grad_clip:
        parts.append(optax.clip_by_global_norm(grad_clip))
    if name == "sgd":
        if weight_decay:
            parts.append(optax.add_decayed_weights(weight_decay))
        parts.append(optax.sgd(sched, momentum=momentum))
    elif name == "adamw":
        parts.append(optax.adamw(sched, weight_decay=weight_decay))
    else:
        raise ValueError(f"unknown optimizer {name!r}: use 'sgd' or 'adamw'")
    return optax.chain(*parts)
