"""One jit-compiled, sharded training step (big_vision style) and the evaluation step.

The batch is sharded over a 1-D ``data`` mesh of all local devices (or all devices of a
multi-host job started with ``jax.distributed.initialize``); the state is replicated and
donated. The same code runs on one CPU and on N accelerators.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dhde.features.pipeline import context_cnn
from dhde.labels import SIGMAS, TOLERANCE
from dhde.model.network import DefocusNet, ModelConfig
from dhde.training.optim import key_path


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training, as one pytree."""

    step: jax.Array
    params: Any
    opt_state: Any


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``data`` over ``devices`` (default: all devices)."""
    devices = np.asarray(jax.devices() if devices is None else devices)
    return Mesh(devices.reshape(-1), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def init_state(params, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def tolerance_correct(pred: jax.Array, label: jax.Array) -> jax.Array:
    """|sigma_pred - sigma_true| <= 0.15 (the paper's accuracy), as a bool array."""
    s = jnp.asarray(SIGMAS)
    return jnp.abs(s[pred] - s[label]) <= TOLERANCE + 1e-4


#: ``train.augment`` values: "none", or "dihedral" (a random flip / transpose per patch).
AUGMENTATIONS = ("none", "dihedral")


def dihedral(patches: jax.Array, key: jax.Array) -> jax.Array:
    """Each patch under its own random element of the dihedral group of the square.

    A transpose, a left-right flip and an up-down flip, each with probability 1/2, give the
    8 rotations and reflections with equal probability. Isotropic blur (Gaussian or disk) and
    the label are unchanged, the centre pixel of an odd-sized patch stays the centre.

    Args:
      patches: (N, S, S, C) square patches, any dtype.
      key: a PRNG key.

    Returns:
      (N, S, S, C), same dtype.
    """
    if patches.ndim != 4 or patches.shape[1] != patches.shape[2]:
        raise ValueError(f"dihedral expects (N, S, S, C) square patches, got shape {patches.shape}")
    t, h, v = jax.random.bernoulli(key, 0.5, (3, patches.shape[0], 1, 1, 1))
    x = jnp.where(t, jnp.swapaxes(patches, 1, 2), patches)
    x = jnp.where(h, x[:, :, ::-1], x)
    return jnp.where(v, x[:, ::-1], x)


def _model_inputs(batch, config: ModelConfig, use_hand: bool, augment_key=None):
    rgb = batch["patch"].astype(jnp.float32) / 255.0
    if augment_key is not None:  # the CNN input only: the hand-crafted features are precomputed
        rgb = dihedral(rgb, augment_key)
    is_small = batch["scale"] == 2
    hand = batch["hand"] if use_hand else jnp.zeros_like(batch["hand"])
    return hand, context_cnn(rgb, is_small, config)


def _loss_fn(params, batch, key, net: DefocusNet, use_hand: bool, augment: str = "none"):
    aug = None
    if augment == "dihedral":  # "none" keeps the dropout key (and so the runs) of before
        key, aug = jax.random.split(key)
    hand, cnn = _model_inputs(batch, net.config, use_hand, aug)
    logits = net.apply({"params": params}, hand, cnn, train=True, rngs={"dropout": key})
    w = batch["weight"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    loss = jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)
    pred = jnp.argmax(logits, -1)
    acc = jnp.sum((pred == batch["label"]) * w) / jnp.maximum(jnp.sum(w), 1.0)
    return loss, acc


def train_step(
    state: TrainState,
    batch: dict,
    key: jax.Array,
    *,
    net: DefocusNet,
    tx: optax.GradientTransformation,
    use_hand: bool = True,
    frozen: tuple[tuple[str, ...], ...] = (),
    augment: str = "none",
):
    """One optimiser step; returns (new_state, {"loss", "accuracy"}).

    Args:
      state: the replicated TrainState (donated).
      batch: {"patch" (B, 29, 29, 3) uint8, "scale" (B,) int32, "label" (B,) int32,
        "hand" (B, hand_width) float32, "weight" (B,) float32 (0 for padding rows)}.
      key: dropout key for this step.
      net, tx: the model and optimiser (static).
      use_hand: False zeroes the hand-crafted inputs (stage 1 of the paper's two-stage
        schedule: f_C with the classifier alone).
      frozen: parameter paths (tuples of keys) whose gradient is zeroed, e.g.
        (("classifier", "fc1", "bias"),) as in the released model.
      augment: "none" or "dihedral": each patch's CNN input under a random flip / transpose
        (:func:`dihedral`; the hand-crafted features, precomputed, are invariant to most of it).
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    key = jax.random.fold_in(key, state.step)
    (loss, acc), grads = jax.value_and_grad(_loss_fn, has_aux=True)(
        state.params, batch, key, net, use_hand, augment
    )
    if frozen:
        grads = _zero_paths(grads, frozen)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
    return new, {"loss": loss, "accuracy": acc}


def _zero_paths(tree, paths):
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    keys = {key_path(path) for path, _ in flat}
    wanted = set(map(tuple, paths))
    for p in paths:
        if tuple(p) not in keys:
            raise ValueError(f"frozen parameter path {p} is not in the model")

    def f(path, x):
        return jnp.zeros_like(x) if key_path(path) in wanted else x

    return jax.tree_util.tree_map_with_path(f, tree)


def eval_step(params, batch, *, net: DefocusNet):
    """Predicted labels and max probabilities of a batch: ((B,) int32, (B,) float32)."""
    hand, cnn = _model_inputs(batch, net.config, True)
    logits = net.apply({"params": params}, hand, cnn, train=False)
    prob = jax.nn.softmax(logits, -1)
    return jnp.argmax(logits, -1).astype(jnp.int32), jnp.max(prob, -1)


def compile_steps(mesh: Mesh, net: DefocusNet, tx, frozen=(), augment: str = "none"):
    """Returns jitted (train_step_with_hand, train_step_without_hand, eval_step) for ``mesh``.

    State in and out is replicated and donated; batches are sharded along ``data``.
    """
    rep, bat = replicated(mesh), batch_sharded(mesh)

    def make(use_hand):
        return jax.jit(
            partial(train_step, net=net, tx=tx, use_hand=use_hand, frozen=frozen, augment=augment),
            in_shardings=(rep, bat, rep),
            out_shardings=(rep, rep),
            donate_argnums=(0,),
        )

    ev = jax.jit(partial(eval_step, net=net), in_shardings=(rep, bat), out_shardings=(bat, bat))
    return make(True), make(False), ev


def put_batch(batch: dict, mesh: Mesh) -> dict:
    """Places this process's share of the global batch (NumPy) on the mesh.

    Single process: the whole batch. Multi-host (after ``jax.distributed.initialize``): each
    process passes its own rows; the result is one global array sharded along ``data``.
    """
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
