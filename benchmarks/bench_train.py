"""Training throughput of the real jitted, sharded step (``compile_steps``) on synthetic patches.

    python benchmarks/bench_train.py                       # B / separate, batch 256
    python benchmarks/bench_train.py --features C --steps 50 --profile

Runs unchanged on CPU or GPU (all devices JAX sees form the ``data`` mesh). Prints:
  * the time of ``hand_features`` (the per-split precomputation) per 10k patches;
  * steady-state training throughput in patches/s (warm-up steps, which include compilation,
    excluded), both on the training loop's path (host batch gather + ``put_batch`` every step)
    and with the batch already on the devices;
  * with ``--profile``: forward+backward time of the whole loss, of the CNN tower alone and of
    the classifier alone (the rest of a step is the optimiser update and dispatch).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from dhde.model.cnn import DeepFeature
from dhde.model.network import Classifier, DefocusNet, ModelConfig, init_model
from dhde.training.loop import _host_batch, batch_indices, hand_features
from dhde.training.optim import make_optimizer
from dhde.training.step import _loss_fn, compile_steps, data_mesh, init_state, put_batch, replicated


def synthetic_split(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random (n, 29, 29, 3) uint8 context patches, alternating scales, random labels."""
    r = np.random.default_rng(seed)
    return {
        "patch": r.integers(0, 256, (n, 29, 29, 3), dtype=np.uint8),
        "scale": (np.arange(n) % 2 + 1).astype(np.int32),
        "label": r.integers(0, 11, n).astype(np.int32),
    }


def _timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` (which must block) over ``repeats`` calls."""
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def bench_hand(mcfg: ModelConfig, n: int) -> tuple[float, float]:
    """(first call incl. compilation, steady) seconds of hand_features on n patches, per 10k."""
    data = synthetic_split(n, 1)
    t0 = time.perf_counter()
    hand_features(data, mcfg, desc="hand (compile)")
    first = time.perf_counter() - t0
    steady = _timed(lambda: hand_features(data, mcfg, desc="hand"), 2)
    return first * 1e4 / n, steady * 1e4 / n


def bench_train(mcfg: ModelConfig, batch: int, steps: int, warmup: int) -> dict:
    mesh = data_mesh()
    if batch % mesh.devices.size:
        raise SystemExit(f"--batch {batch} is not a multiple of the {mesh.devices.size} devices")
    n = 8 * batch
    train = synthetic_split(n)
    hand = hand_features(train, mcfg, desc="hand (train)")
    tx = make_optimizer("adamw", 1e-3, steps + warmup, schedule="cosine", warmup=10, grad_clip=1.0)
    step_fn, _, _ = compile_steps(mesh, DefocusNet(mcfg), tx)
    params = jax.device_get(init_model(mcfg, jax.random.key(0)).params)
    state = jax.device_put(init_state(params, tx), replicated(mesh))
    key = jax.random.key(1)

    def host(step):
        return put_batch(_host_batch(train, hand, batch_indices(step, n, batch, 0)), mesh)

    t0 = time.perf_counter()
    for s in range(warmup):  # compilation + first steps
        state, m = step_fn(state, host(s), key)
    jax.block_until_ready(state)
    t_warm = time.perf_counter() - t0

    t0 = time.perf_counter()
    for s in range(warmup, warmup + steps):  # the loop's path: gather + transfer every step
        state, m = step_fn(state, host(s), key)
    jax.block_until_ready(state)
    t_loop = time.perf_counter() - t0

    resident = [host(s) for s in range(4)]
    jax.block_until_ready(resident)
    t0 = time.perf_counter()
    for s in range(steps):
        state, m = step_fn(state, resident[s % 4], key)
    jax.block_until_ready(state)
    t_dev = time.perf_counter() - t0
    assert np.isfinite(float(m["loss"]))
    return {"warmup_s": t_warm, "loop_pps": steps * batch / t_loop, "loop_ms": 1e3 * t_loop / steps,
            "resident_pps": steps * batch / t_dev, "resident_ms": 1e3 * t_dev / steps}


def profile_parts(mcfg: ModelConfig, batch: int, repeats: int = 5) -> dict:
    """Forward+backward milliseconds, one device: the whole loss (input scaling, CNN, classifier,
    cross-entropy; no optimiser), the CNN tower alone and the classifier alone."""
    key = jax.random.key(0)
    params = init_model(mcfg, key).params
    r = np.random.default_rng(2)
    out = {}
    if mcfg.uses_deep:
        cnn = jnp.asarray(r.uniform(0, 255, (batch, 27, 27, 3)).astype(np.float32))
        deep = DeepFeature()
        f = jax.jit(jax.value_and_grad(lambda p: jnp.sum(deep.apply({"params": p}, cnn) ** 2)))
        jax.block_until_ready(f(params["deep"]))
        out["cnn_fwd_bwd_ms"] = 1e3 * _timed(lambda: jax.block_until_ready(f(params["deep"])), repeats)
    data = synthetic_split(batch, 3)
    b = dict(data, hand=jnp.asarray(r.uniform(size=(batch, mcfg.hand_width)).astype(np.float32)),
             weight=jnp.ones(batch, jnp.float32))
    net = DefocusNet(mcfg)
    lf = jax.jit(jax.value_and_grad(lambda p: _loss_fn(p, b, key, net, True)[0]))
    jax.block_until_ready(lf(params))
    out["whole_loss_fwd_bwd_ms"] = 1e3 * _timed(lambda: jax.block_until_ready(lf(params)), repeats)
    x = jnp.asarray(r.normal(size=(batch, mcfg.input_width)).astype(np.float32))
    clf = Classifier(mcfg.hidden, mcfg.dropout)
    g = jax.jit(jax.value_and_grad(
        lambda p: jnp.sum(clf.apply({"params": p}, x, train=True, rngs={"dropout": key}) ** 2)))
    jax.block_until_ready(g(params["classifier"]))
    out["classifier_fwd_bwd_ms"] = 1e3 * _timed(lambda: jax.block_until_ready(g(params["classifier"])), repeats)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", default="B")
    ap.add_argument("--encoding", default="separate")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation)")
    ap.add_argument("--hand-n", type=int, default=10_000, help="patches for the hand-feature timing")
    ap.add_argument("--profile", action="store_true", help="time CNN vs classifier forward+backward")
    a = ap.parse_args(argv)

    mcfg = ModelConfig(feature_set=a.features, encoding=a.encoding)
    dev = jax.devices()
    print(f"devices: {len(dev)} x {dev[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    print(f"model: {a.features} / {a.encoding}, input width {mcfg.input_width}, batch {a.batch}\n")

    if mcfg.hand_width:
        first, steady = bench_hand(mcfg, a.hand_n)
        print(f"hand_features per 10k patches: {steady:.2f} s (first call incl. compile: {first:.2f} s)\n")
    r = bench_train(mcfg, a.batch, a.steps, a.warmup)
    print("| path | patches/s | ms/step |")
    print("|---|---|---|")
    print(f"| training loop (host gather + put_batch) | {r['loop_pps']:.0f} | {r['loop_ms']:.1f} |")
    print(f"| batch already on device | {r['resident_pps']:.0f} | {r['resident_ms']:.1f} |")
    print(f"\nwarm-up ({a.warmup} steps incl. compilation): {r['warmup_s']:.1f} s")
    if a.profile:
        p = profile_parts(mcfg, a.batch)
        print("\nforward+backward, batch", a.batch, ", one device:")
        for k, v in p.items():
            print(f"  {k}: {v:.1f}")


if __name__ == "__main__":
    main()
