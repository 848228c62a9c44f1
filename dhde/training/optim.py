"""Optimisers and learning-rate schedules, built from plain config values."""

from __future__ import annotations

import jax
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

    The keyword defaults here are the neutral ones (constant rate, no decay, no warm-up, no
    clipping), for building a plain optimiser in code; the *training* defaults, which a config
    gets for an absent key, live in :class:`dhde.training.config.OptimizerConfig` (whose field
    names are this function's keywords: ``OptimizerConfig(...).make(steps)``).

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


#: Where the CNN's first kernel lives in the model's parameter tree.
FIRST_LAYER_KERNEL = ("deep", "conv1", "kernel")


def key_path(path) -> tuple:
    """A ``jax.tree_util`` key path as a tuple of plain keys, e.g. ("deep", "conv1", "kernel")."""
    return tuple(getattr(k, "key", k) for k in path)


def _scale_at(tree, path: tuple[str, ...], factor: float):
    def f(p, leaf):
        return leaf * factor if key_path(p) == path else leaf

    return jax.tree_util.tree_map_with_path(f, tree)


def input_scaled(tx: optax.GradientTransformation, scale: float,
                 path: tuple[str, ...] = FIRST_LAYER_KERNEL) -> optax.GradientTransformation:
    """Trains the kernel at ``path`` as if the layer's input were multiplied by ``scale``.

    The CNN takes RGB values in 0..255 (the authors' convention, kept so that imported and
    trained models are interchangeable). With an adaptive optimiser and the usual initialisers
    that input is 255 times too large: the first steps push every deep unit below zero and the
    deep feature dies (loss stuck at ln 11 for a CNN-only model). Training ``w`` on input
    ``scale * x`` is the same function as the stored kernel ``v = scale * w`` on ``x``; this
    wrapper runs ``tx`` in ``w``'s coordinates: the gradient at ``path`` is multiplied by
    ``scale`` before ``tx`` (so clipping and moment estimates see ``dL/dw``) and the update by
    ``scale`` after it. Initialise the kernel ``scale`` times smaller as well
    (:func:`scale_initial_kernel`). ``scale=1`` returns ``tx`` itself. Parameters without
    ``path`` (models without a CNN) pass through unchanged.

    Args:
      tx: the optimiser.
      scale: the input scale, > 0 (e.g. 1/255 for inputs in 0..255).
      path: key path of the kernel in the parameter tree.
    """
    if not scale > 0:
        raise ValueError(f"input scale must be > 0, got {scale}")
    if scale == 1.0:
        return tx

    def update(updates, state, params=None):
        updates, state = tx.update(_scale_at(updates, path, scale), state, params)
        return _scale_at(updates, path, scale), state

    return optax.GradientTransformation(tx.init, update)


def scale_initial_kernel(params, scale: float, path: tuple[str, ...] = FIRST_LAYER_KERNEL):
    """``params`` with the kernel at ``path`` multiplied by ``scale`` (see :func:`input_scaled`)."""
    return _scale_at(params, path, scale)
