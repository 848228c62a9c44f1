"""Training: one step, sharded == single device, kill/resume, bad checkpoints, NaN, metrics,
optimiser, data order, the TFDS builder and the Hydra configs.

The runs use tiny random splits and the cheapest model that still has every moving part:
feature set "D" (hand-crafted, so ``hand_features`` runs) with a 16-16 classifier and dropout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from dhde.labels import NUM_LABELS, SIGMAS
from dhde.model.network import DefocusModel, DefocusNet, ModelConfig, init_model
from dhde.model.io import load_model, save_model
from dhde.training import loop
from dhde.training.checkpoints import CheckpointMismatchError
from dhde.training.loop import NonFiniteLossError, batch_indices, hand_features, train_and_evaluate
from dhde.training.metrics import classification_metrics
from dhde.training.optim import make_optimizer, make_schedule
from dhde.training.step import compile_steps, data_mesh, init_state, put_batch, replicated

ROOT = Path(__file__).resolve().parents[1]
K = 3
# The deliberately damaged checkpoints leave orbax restore coroutines that Python reports as
# "unraisable" when they are garbage-collected, possibly during a later test of this file.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # checkpoint every K steps; the full run is 2 K steps


# ----------------------------------------------------------------------------- helpers


def _split(n: int, seed: int) -> dict:
    r = np.random.default_rng(seed)
    return {
        "patch": r.integers(0, 256, (n, 29, 29, 3), dtype=np.uint8),
        "scale": np.tile(np.array([1, 2], np.int32), n // 2),
        "label": r.integers(0, NUM_LABELS, n).astype(np.int32),
    }


def _splits() -> dict:
    return {"train": _split(48, 0), "validation": _split(16, 1), "test": _split(16, 2)}


def _cfg(steps: int = 2 * K, **sections) -> dict:
    cfg = {
        "seed": 0,
        "features": {"set": "D"},
        "encoding": {"name": "separate"},
        "model": {"hidden": [16, 16], "dropout": 0.5},
        "train": {"steps": steps, "batch_size": 8, "eval_every": K, "log_every": 1, "keep_last": 10},
        # SGD: its update is linear in the gradient, so 8-device and 1-device runs agree to
        # float rounding (Adam's g / sqrt(v) would amplify rounding of near-zero gradients).
        # The cosine schedule depends on train.steps: a resumed run must keep the same config.
        "optimizer": {"name": "sgd", "lr": 0.05, "schedule": "cosine", "warmup": 1,
                      "momentum": 0.9, "weight_decay": 0.0, "grad_clip": None},
    }
    for k, v in sections.items():
        cfg[k].update(v)
    return cfg


def _flat(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _ckpt(workdir: Path, step: int) -> dict:
    with ocp.StandardCheckpointer() as c:
        return c.restore(Path(workdir) / "checkpoints" / str(step) / "default")


def _steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())


class _Killed(Exception):
    pass


@pytest.fixture(scope="module")
def splits():
    return _splits()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, splits):
    """An uninterrupted 2K-step run on one device."""
    wd = tmp_path_factory.mktemp("full")
    train_and_evaluate(_cfg(), wd, splits=splits)
    return wd


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, splits):
    """The same run, killed right after its step-K checkpoint was written (tests copy it)."""
    wd = tmp_path_factory.mktemp("killed")
    save = loop.checkpoints.save

    def save_then_die(mgr, step, state, metrics=None):
        save(mgr, step, state, metrics)
        raise _Killed(step)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop.checkpoints, "save", save_then_die)
        with pytest.raises(_Killed):
            train_and_evaluate(_cfg(), wd, splits=splits)
    assert _steps(wd) == [K]
    assert not (wd / "metrics.json").exists()
    return wd


# ----------------------------------------------------------------------------- one step


def _batch(splits, mcfg, idx):
    s = splits["train"]
    hand = hand_features(s, mcfg)[idx]
    return {"patch": s["patch"][idx], "scale": s["scale"][idx], "label": s["label"][idx],
            "hand": hand, "weight": np.ones(len(idx), np.float32)}


def test_one_step_changes_params_and_counts(splits):
    mcfg = ModelConfig(feature_set="D", hidden=(16, 16), dropout=0.5)
    tx = make_optimizer("adamw", 1e-3, 10, schedule="constant")
    mesh = data_mesh()
    step_fn, _, _ = compile_steps(mesh, DefocusNet(mcfg), tx)
    params = init_model(mcfg, jax.random.key(0)).params
    before = _flat(jax.device_get(params))
    state = jax.device_put(init_state(params, tx), replicated(mesh))  # as the loop does
    batch = put_batch(_batch(splits, mcfg, np.arange(8)), mesh)
    state, m = step_fn(state, batch, jax.random.key(1))
    assert np.isfinite(float(m["loss"])) and 0.0 <= float(m["accuracy"]) <= 1.0
    assert int(state.step) == 1
    after = _flat(jax.device_get(state.params))
    assert before.keys() == after.keys()
    for k in before:
        assert not np.allclose(before[k], after[k]), f"{k} did not change"
    state, _ = step_fn(state, batch, jax.random.key(1))
    assert int(state.step) == 2
    assert step_fn._cache_size() == 1  # no recompilation on the second call


def test_sgd_step_matches_hand_written_gradient(splits):
    """No dropout, plain SGD: params_new == params - lr * grad of a cross-entropy written here."""
    mcfg = ModelConfig(feature_set="D", hidden=(16, 16), dropout=0.0)
    net, lr = DefocusNet(mcfg), 0.1
    tx = make_optimizer("sgd", lr, 10, schedule="constant", momentum=0.0)
    mesh = data_mesh()
    step_fn, _, _ = compile_steps(mesh, net, tx)
    params = init_model(mcfg, jax.random.key(0)).params
    b = _batch(splits, dataclasses.replace(mcfg, dropout=0.5), np.arange(8))  # same features, cached
    b["weight"][6:] = 0.0  # padding rows must not count

    def ref_loss(p):
        logits = net.apply({"params": p}, jnp.asarray(b["hand"]), jnp.zeros((8, 27, 27, 3)))
        logp = logits - jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)
        return -jnp.mean(logp[jnp.arange(6), b["label"][:6]])

    ref_l, g = jax.jit(jax.value_and_grad(ref_loss))(params)
    expect = _flat(jax.tree_util.tree_map(lambda p, d: p - lr * d, params, g))
    state, m = step_fn(init_state(params, tx), put_batch(b, mesh), jax.random.key(0))
    np.testing.assert_allclose(float(m["loss"]), float(ref_l), rtol=1e-5)
    got = _flat(jax.device_get(state.params))
    for k in expect:
        np.testing.assert_allclose(got[k], expect[k], rtol=1e-5, atol=1e-6, err_msg=k)


# ----------------------------------------------------------------------------- 8 devices

# Runs with XLA_FLAGS=--xla_force_host_platform_device_count=8: this pytest process already
# initialised JAX with one CPU device. Dropout masks: both meshes get the same key, and with
# jax_threefry_partitionable (JAX's default) random bits are a function of the key and of the
# element's global index only, not of how the array is sharded, so every device draws its
# slice of exactly the masks the single device draws. The checked flag is reported back.
_WORKER = r'''
import json, sys
import numpy as np
import jax
import orbax.checkpoint as ocp
from pathlib import Path
from dhde.model.network import DefocusNet, ModelConfig, init_model
from dhde.training.loop import hand_features, train_and_evaluate
from dhde.training.optim import make_optimizer
from dhde.training.step import compile_steps, data_mesh, init_state, put_batch, replicated

args = json.loads(sys.argv[1])
z = np.load(args["splits"])
splits = {s: {k: z[f"{s}/{k}"] for k in ("patch", "scale", "label")} for s in ("train", "validation", "test")}
out = {"devices": jax.device_count(), "threefry_partitionable": bool(jax.config.jax_threefry_partitionable)}
flat = lambda t: {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(t)[0]}

mcfg = ModelConfig(feature_set="D", hidden=(16, 16), dropout=0.5)
net = DefocusNet(mcfg)
tx = make_optimizer("sgd", 0.05, 10, schedule="constant", momentum=0.9)
params = jax.device_get(init_model(mcfg, jax.random.key(0)).params)  # host copy: steps donate
s = splits["train"]
batch = {"patch": s["patch"][:16], "scale": s["scale"][:16], "label": s["label"][:16],
         "hand": hand_features(s, mcfg)[:16], "weight": np.ones(16, np.float32)}

def stepper(devices):
    mesh = data_mesh(devices)
    step, _, _ = compile_steps(mesh, net, tx)
    b = put_batch(batch, mesh)

    def run(key):
        state = jax.device_put(init_state(params, tx), replicated(mesh))
        new, m = step(state, b, key)
        return flat(jax.device_get(new.params)), float(m["loss"]), len(b["patch"].sharding.device_set)
    return run

on8, on1 = stepper(jax.devices()), stepper(jax.devices()[:1])
p8, l8, n8 = on8(jax.random.key(1))
p1, l1, n1 = on1(jax.random.key(1))
pk, _, _ = on8(jax.random.key(2))
out.update(batch_devices=[n8, n1], loss=[l8, l1],
           diff_same_key=max(float(np.max(np.abs(p8[k] - p1[k]))) for k in p1),
           diff_other_key=max(float(np.max(np.abs(pk[k] - p1[k]))) for k in p1))

# Resume, on 8 devices, a run killed after its step-K checkpoint written on 1 device.
train_and_evaluate(args["cfg"], args["workdir"], splits=splits)
with ocp.StandardCheckpointer() as c:
    final = c.restore(Path(args["workdir"]) / "checkpoints" / str(args["steps"]) / "default")
np.savez(args["out"], **flat(final["params"]))
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory, splits, killed_run):
    tmp = tmp_path_factory.mktemp("eight")
    np.savez(tmp / "splits.npz", **{f"{s}/{k}": v for s, d in splits.items() for k, v in d.items()})
    wd = tmp / "resumed8"
    shutil.copytree(killed_run, wd)
    args = {"splits": str(tmp / "splits.npz"), "cfg": _cfg(), "workdir": str(wd),
            "steps": 2 * K, "out": str(tmp / "final8.npz")}
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip())
    (tmp / "worker.py").write_text(_WORKER)
    r = subprocess.run([sys.executable, str(tmp / "worker.py"), json.dumps(args)], env=env,
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-4000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT "):])
    res["stdout"] = r.stdout
    res["final"] = dict(np.load(tmp / "final8.npz"))
    return res


def test_sharded_step_equals_single_device(eight_devices):
    r = eight_devices
    assert r["devices"] == 8 and r["batch_devices"] == [8, 1]
    assert r["threefry_partitionable"], "dropout masks would depend on the sharding"
    np.testing.assert_allclose(r["loss"][0], r["loss"][1], rtol=1e-5)
    assert r["diff_same_key"] <= 1e-5
    assert r["diff_other_key"] > 1e-3  # the comparison is sensitive to the dropout masks


def test_resume_on_eight_devices_matches_one_device_run(eight_devices, full_run):
    assert f"resumed from checkpoint step {K}" in eight_devices["stdout"]
    ref = _flat(_ckpt(full_run, 2 * K)["params"])
    got = eight_devices["final"]
    assert ref.keys() == got.keys()
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-5, err_msg=k)


# ----------------------------------------------------------------------------- resume


def test_killed_run_resumes_exactly(tmp_path, splits, full_run, killed_run, capsys):
    wd = tmp_path / "run"
    shutil.copytree(killed_run, wd)
    result = train_and_evaluate(_cfg(), wd, splits=splits)
    assert f"resumed from checkpoint step {K}" in capsys.readouterr().out
    logged = [json.loads(x)["step"] for x in (wd / "history.jsonl").read_text().splitlines()
              if "loss" in json.loads(x)]
    assert logged == list(range(1, 2 * K + 1))  # steps 1..K before the kill, K+1..2K after
    a, b = _ckpt(wd, 2 * K), _ckpt(full_run, 2 * K)
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys()
    for k in fa:  # params, momentum and step: bit for bit
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)
    assert result == json.loads((full_run / "metrics.json").read_text())
    assert (wd / "learning_curve.png").stat().st_size > 1000


def test_read_history_and_learning_curve(tmp_path):
    from dhde.training.metrics import learning_curve_png, read_history

    p = tmp_path / "history.jsonl"
    lines = [{"step": 2, "loss": 2.0, "accuracy": 0.1}, {"step": 1, "loss": 3.0, "accuracy": 0.0},
             {"step": 2, "val_tolerance_accuracy": 0.4}, {"step": 2, "loss": 1.5, "accuracy": 0.2}]
    p.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"step": 3, "lo')  # a killed run's last line
    h = read_history(p)
    np.testing.assert_array_equal(h["step"], [1, 2])
    np.testing.assert_array_equal(h["loss"], [3.0, 1.5])  # the last entry of a step wins (a resume)
    np.testing.assert_array_equal(h["val_step"], [2])
    np.testing.assert_array_equal(h["val_tolerance_accuracy"], [0.4])
    out = learning_curve_png(p, tmp_path / "curve.png", "test")
    assert out.stat().st_size > 1000


def test_finished_run_is_not_retrained(tmp_path, splits, full_run, capsys):
    wd = tmp_path / "run"
    shutil.copytree(full_run, wd)
    train_and_evaluate(_cfg(), wd, splits=splits)
    assert f"resumed from checkpoint step {2 * K}" in capsys.readouterr().out
    assert _steps(wd) == _steps(full_run)


def test_select_best_or_last_checkpoint(tmp_path, splits, full_run, monkeypatch):
    """train.select: "best" tests the best-by-validation checkpoint, "last" the final one."""
    monkeypatch.setattr(loop.checkpoints, "best_step", lambda mgr: K)  # pretend step K won
    for select, expect in [("best", K), ("last", 2 * K)]:
        wd = tmp_path / select
        shutil.copytree(full_run, wd)
        result = train_and_evaluate(_cfg(train={"select": select}), wd, splits=splits)
        assert result["best_step"] == expect and result["select"] == select
    with pytest.raises(ValueError, match="train.select"):
        train_and_evaluate(_cfg(train={"select": "median"}), tmp_path / "bad", splits=splits)


# ----------------------------------------------------------------------------- bad state


def _fresh_copy(run: Path, dest: Path) -> Path:
    """A copy of a run without its final outputs, so that training resumes from its checkpoints."""
    shutil.copytree(run, dest)
    shutil.rmtree(dest / "model", ignore_errors=True)
    (dest / "metrics.json").unlink(missing_ok=True)
    return dest


def _flip_64_bytes(workdir: Path, step: int) -> Path:
    """Flips 64 consecutive bytes of an array-data file of checkpoint ``step`` where it matters:
    preferably where orbax still restores, with changed values (the silent case of the issue),
    else where the restore fails. Which file holds which array, and which byte ranges of an
    OCDBT data file are referenced at all, depends on the layout of the write, so several
    positions (middle, quarters, near the ends) of every data file are tried."""
    item = workdir / "checkpoints" / str(step) / "default"

    def restored():
        with ocp.StandardCheckpointer() as c:
            return _flat(c.restore(item))

    before = restored()
    files = sorted((p for p in item.rglob("*") if p.is_file() and p.parent.name == "d"),
                   key=lambda p: (-p.stat().st_size, str(p)))
    candidates = [(f, off) for f in files for off in sorted({max(0, min(f.stat().st_size - 64, int(f.stat().st_size * q)))
                                                             for q in (0.5, 0.25, 0.75, 0.1, 0.9)})]

    def effect(f: Path, off: int) -> str:
        original = f.read_bytes()
        b = bytearray(original)
        for i in range(64):
            b[off + i] ^= 0xFF
        f.write_bytes(bytes(b))
        try:
            after = restored()
            result = "silent" if any(not np.array_equal(before[k], after[k]) for k in before) else "none"
        except Exception:
            result = "error"
        if result == "none":
            f.write_bytes(original)
        return result

    for wanted in ("silent", "error"):
        for f, off in candidates:
            original = f.read_bytes()
            got = effect(f, off)
            if got == wanted:
                return f
            f.write_bytes(original)
    raise AssertionError(f"no 64-byte flip in {[f.name for f in files]} changes or breaks the checkpoint")


# Issue 13, cases 4 and 5: a damaged latest checkpoint is detected (checksum), set aside (renamed,
# never deleted) with ONE warning line, and the run resumes from the newest valid one; the result
# is then exactly that of an undamaged run.
@pytest.mark.parametrize("damage", ["flip64", "truncate", "metadata", "checksum"])
def test_corrupt_latest_checkpoint_is_set_aside_and_run_resumes(tmp_path, splits, full_run, capsys, damage):
    wd = _fresh_copy(full_run, tmp_path / "run")
    assert _steps(wd) == [K, 2 * K]
    if damage == "flip64":
        f = _flip_64_bytes(wd, 2 * K)
        damaged = f.read_bytes()
    elif damage == "truncate":
        for p in (wd / "checkpoints" / str(2 * K)).rglob("*"):
            if p.is_file() and p.parent.name == "d":
                p.write_bytes(p.read_bytes()[:7])
    elif damage == "metadata":
        (wd / "checkpoints" / str(2 * K) / "_CHECKPOINT_METADATA").write_text("{not json")
    else:  # arrays that decode fine but are not what was saved: only the checksum can tell
        meta = wd / "checkpoints" / str(2 * K) / "_CHECKPOINT_METADATA"
        m = json.loads(meta.read_text())
        m["custom_metadata"]["state_sha256"] = "0" * 64
        meta.write_text(json.dumps(m))
    result = train_and_evaluate(_cfg(), wd, splits=splits)
    cap = capsys.readouterr()
    warns = [ln for ln in cap.err.replace("\r", "\n").splitlines() if "warning:" in ln]
    assert len(warns) == 1, cap.err
    line = warns[0][warns[0].index("warning:"):]
    assert f"checkpoint step {2 * K}" in line and f"{2 * K}.corrupt" in line and len(line) < 700, line
    if damage == "checksum":
        assert "fails its checksum" in line
    assert "Traceback" not in cap.err and "TensorStore details" not in cap.err
    assert f"resumed from checkpoint step {K}" in cap.out
    aside = wd / "checkpoints" / f"{2 * K}.corrupt"
    assert aside.is_dir()  # kept, not deleted
    if damage == "flip64":
        assert (aside / f.relative_to(wd / "checkpoints" / str(2 * K))).read_bytes() == damaged
    assert result == json.loads((full_run / "metrics.json").read_text())  # same as an undamaged run
    fa, fb = _flat(_ckpt(wd, 2 * K)), _flat(_ckpt(full_run, 2 * K))
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)


def test_corrupt_only_checkpoint_is_set_aside_and_run_starts_afresh(tmp_path, splits, full_run, killed_run, capsys):
    wd = tmp_path / "run"
    shutil.copytree(killed_run, wd)
    for p in (wd / "checkpoints" / str(K)).rglob("*"):
        if p.is_file() and p.parent.name == "d":
            p.write_bytes(p.read_bytes()[:7])  # truncated array data
    result = train_and_evaluate(_cfg(), wd, splits=splits)
    err = capsys.readouterr().err
    assert "no valid checkpoint left: starting afresh" in err and f"{K}.corrupt" in err
    assert (wd / "checkpoints" / f"{K}.corrupt").is_dir()
    assert result == json.loads((full_run / "metrics.json").read_text())


def test_checkpoint_of_another_config_is_refused_not_set_aside(tmp_path, splits, full_run):
    wd = _fresh_copy(full_run, tmp_path / "run")
    with pytest.raises(CheckpointMismatchError, match=rf"checkpoint step {2 * K} .*different model configuration"):
        train_and_evaluate(_cfg(model={"hidden": [8, 8]}), wd, splits=splits)
    assert _steps(wd) == [K, 2 * K] and not list((wd / "checkpoints").glob("*.corrupt"))


def test_checkpoint_without_checksum_resumes_with_warning(tmp_path, splits, full_run, killed_run, capsys):
    wd = tmp_path / "run"
    shutil.copytree(killed_run, wd)
    meta = wd / "checkpoints" / str(K) / "_CHECKPOINT_METADATA"
    m = json.loads(meta.read_text())
    assert m["custom_metadata"]["state_sha256"]  # written by save()
    m["custom_metadata"] = {}  # as written by dhde before checksums
    meta.write_text(json.dumps(m))
    result = train_and_evaluate(_cfg(), wd, splits=splits)
    assert "has no state_sha256" in capsys.readouterr().err
    assert result == json.loads((full_run / "metrics.json").read_text())


def test_nan_after_restore_names_the_restored_step(tmp_path, splits, killed_run):
    """Issue 13 case 4: the message named the restored checkpoint "the last good checkpoint"."""
    wd = tmp_path / "run"
    shutil.copytree(killed_run, wd)
    with pytest.raises(NonFiniteLossError) as info:
        train_and_evaluate(_cfg(optimizer={"lr": 1e30}), wd, splits=splits)
    msg = str(info.value)
    assert f"resumed from checkpoint step {K}" in msg and "last good" not in msg, msg


@pytest.mark.parametrize("key, value, match", [
    ("train.steps", -5, "train.steps must be an integer >= 1, got -5"),
    ("train.steps", 0, "train.steps must be an integer >= 1"),
    ("train.eval_every", 0, "train.eval_every must be an integer >= 1"),
    ("train.batch_size", 0, "train.batch_size must be an integer >= 1"),
    ("train.log_every", 0, "train.log_every"),
    ("train.keep_last", 0, "train.keep_last"),
    ("train.steps", "abc", "train.steps must be an integer, got 'abc'"),
    ("train.select", "median", "train.select"),
    ("train.cnn_input_scale", 0.0, "train.cnn_input_scale must be > 0"),
    ("optimizer.lr", "abc", "optimizer.lr must be a number"),
    ("optimizer.lr", -1.0, "optimizer.lr must be > 0"),
    ("optimizer.name", "adam", "optimizer.name"),
    ("features.set", "X", "features.set"),
    ("encoding.name", "nope", "encoding.name"),
    ("model.dropout", 1.0, "model.dropout"),
    ("model.hidden", [16, 0], r"model.hidden\[1\]"),
    ("data.source", "s3:bucket", "data.source"),
    ("data.source", "folder:/no/such/folder", "data.source: training image folder not found"),
    ("data.downscale", 0, "data.downscale"),
    ("data.noise", -1.0, "data.noise"),
])
def test_bad_config_fails_before_any_data(tmp_path, monkeypatch, key, value, match):
    """Issue 13 case 2: train.steps=-5 saved an untrained model; eval_every=0 / batch_size=0
    failed with ZeroDivisionError after the data had loaded."""
    from dhde.config.check import ConfigError

    monkeypatch.setattr(loop, "load_splits", lambda cfg: (_ for _ in ()).throw(AssertionError("data loaded")))
    cfg = _cfg()
    cfg["data"] = {"source": "skimage", "downscale": 3, "noise": 3.0}
    section, name = key.split(".")
    cfg.setdefault(section, {})[name] = value
    with pytest.raises(ConfigError, match=match):
        train_and_evaluate(cfg, tmp_path)
    assert not (tmp_path / "model").exists() and not (tmp_path / "checkpoints").exists()


def test_model_io_errors(tmp_path):
    mcfg = ModelConfig(feature_set="D", hidden=(4, 4))
    model = init_model(mcfg, jax.random.key(0))
    with pytest.raises(ValueError, match="no dhde model"):
        load_model(tmp_path / "missing")
    d = save_model(model, tmp_path / "m")
    back = load_model(d)
    assert back.config == mcfg
    for k, v in _flat(model.params).items():
        np.testing.assert_array_equal(_flat(back.params)[k], v)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        save_model(DefocusModel(model.params, mcfg), d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        load_model(d)


def test_nan_loss_stops_and_keeps_good_checkpoint(tmp_path, splits):
    cfg = _cfg(steps=5, train={"eval_every": 1},
               optimizer={"name": "adamw", "lr": 1e30, "schedule": "constant", "warmup": 0})
    with pytest.raises(NonFiniteLossError, match=r"last checkpoint this run wrote with finite parameters \(step \d\)"):
        train_and_evaluate(cfg, tmp_path, splits=splits)
    kept = _steps(tmp_path)
    assert kept and kept[-1] < 5
    for k, v in _flat(_ckpt(tmp_path, kept[-1])).items():
        assert np.isfinite(v).all(), k
    assert not (tmp_path / "metrics.json").exists()


# ----------------------------------------------------------------------------- pure parts


def test_classification_metrics_vs_loop():
    r = np.random.default_rng(3)
    n = 300
    pred, label, scale = r.integers(0, 11, n), r.integers(0, 11, n), r.integers(1, 3, n)
    m = classification_metrics(pred, label, scale)
    counts = {}
    cm = np.zeros((11, 11), int)
    for p, t, s in zip(pred, label, scale):
        for sub in ("all", s):
            c = counts.setdefault(sub, [0, 0, 0])
            c[0] += 1
            c[1] += abs(float(SIGMAS[p]) - float(SIGMAS[t])) <= 0.15 + 1e-6
            c[2] += p == t
        cm[t, p] += 1
    assert m["count"] == n
    assert m["tolerance_accuracy"] == pytest.approx(counts["all"][1] / n)
    assert m["exact_accuracy"] == pytest.approx(counts["all"][2] / n)
    for s, nm in ((1, "large"), (2, "small")):
        assert m[f"tolerance_accuracy_{nm}"] == pytest.approx(counts[s][1] / counts[s][0])
        assert m[f"exact_accuracy_{nm}"] == pytest.approx(counts[s][2] / counts[s][0])
    np.testing.assert_array_equal(m["confusion"], cm)
    for k in range(11):
        sel = label == k
        assert m["tolerance_accuracy_per_level"][k] == pytest.approx(np.mean(np.abs(pred[sel] - k) <= 1))
    # tolerance 0.15 = one neighbouring level: |p - t| <= 1 exactly
    assert m["tolerance_accuracy"] == pytest.approx(np.mean(np.abs(pred - label) <= 1))
    with pytest.raises(ValueError, match="same length"):
        classification_metrics(pred, label[:-1], scale)


def test_batch_indices_order():
    n, bs = 50, 8
    per_epoch = n // bs
    a = [batch_indices(s, n, bs, seed=4) for s in range(3 * per_epoch)]
    b = [batch_indices(s, n, bs, seed=4) for s in range(3 * per_epoch)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    epochs = [np.concatenate(a[e * per_epoch : (e + 1) * per_epoch]) for e in range(3)]
    for e in epochs:
        assert len(e) == per_epoch * bs and len(np.unique(e)) == len(e)  # no repeats in an epoch
        assert e.min() >= 0 and e.max() < n
    assert not np.array_equal(epochs[0], epochs[1])  # a fresh permutation every epoch
    assert len(np.unique(np.concatenate([batch_indices(s, n, bs, 4) for s in range(40)]))) == n
    assert not np.array_equal(batch_indices(0, n, bs, 4), batch_indices(0, n, bs, 5))
    tiny = batch_indices(7, 5, 8, 0)  # fewer rows than a batch: wraps around
    assert len(tiny) == 8 and set(tiny.tolist()) == set(range(5))


def test_optimizer_inv_schedule_and_coupled_decay():
    lr, gamma, power = 0.1, 1e-2, 2.0
    sched = make_schedule("inv", lr, 100, gamma=gamma, power=power)
    for t in (0, 1, 10, 1000):
        assert float(sched(t)) == pytest.approx(lr * (1 + gamma * t) ** -power, rel=1e-6)
    assert float(make_schedule("inv", 1e-4, 10)(1e4)) == pytest.approx(1e-4 * 2.0**-2, rel=1e-6)
    # Caffe SGD: the weight decay is added to the gradient before the learning rate
    wd = 0.01
    tx = make_optimizer("sgd", lr, 100, schedule="inv", momentum=0.0, weight_decay=wd,
                        gamma=gamma, power=power)
    p, g = jnp.array([2.0, -1.0]), jnp.array([0.5, 0.25])
    st = tx.init(p)
    for t in range(3):
        upd, st = tx.update(g, st, p)
        np.testing.assert_allclose(upd, -lr * (1 + gamma * t) ** -power * (g + wd * p), rtol=1e-6)
        p = optax.apply_updates(p, upd)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("rmsprop", 1e-3, 10)
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("step", 1e-3, 10)


def test_hand_features_padding_does_not_change_rows(splits):
    mcfg = ModelConfig(feature_set="D")
    s = {k: v[:40] for k, v in splits["train"].items()}
    a = hand_features(s, mcfg)  # one chunk of 64, padded
    b = hand_features(s, mcfg, chunk=16)  # three chunks, the last one padded
    assert a.shape == (40, mcfg.hand_width)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_best_step_is_the_highest_validation_accuracy(tmp_path):
    from dhde.training import checkpoints

    mgr = checkpoints.manager(tmp_path / "ckpt", keep_last=1)
    state = {"w": np.zeros(3, np.float32)}
    for step, acc in [(1, 0.5), (2, 0.9), (3, 0.7), (4, 0.6)]:
        checkpoints.save(mgr, step, state, {"val_tolerance_accuracy": acc})
    assert checkpoints.best_step(mgr) == 2  # not the latest (4)
    assert set(mgr.all_steps()) == {2, 4}  # the best and the last are kept
    assert checkpoints.best_step(checkpoints.manager(tmp_path / "ckpt", keep_last=1)) == 2  # after a restart
    empty = checkpoints.manager(tmp_path / "none")
    assert checkpoints.best_step(empty) is None


def test_full_disk_leaves_whole_history_lines(tmp_path):
    """Issue 13 case 7 for the training log: a line cut by a full disk is removed again."""
    from dhde.io.atomic import DiskFullError

    class FullAfter:
        def __init__(self, f, budget):
            self.f, self.budget, self.name = f, budget, f.name

        def tell(self):
            return self.f.tell()

        def truncate(self, pos):
            return self.f.truncate(pos)

        def write(self, data):
            if self.budget <= 0:
                raise OSError(28, "No space left on device")
            n = self.f.write(bytes(data[: self.budget]))
            self.budget -= n
            return n

    path = tmp_path / "history.jsonl"
    with open(path, "ab", buffering=0) as raw:
        f = FullAfter(raw, 40)
        loop._append_line(f, {"step": 1, "loss": 2.0})
        with pytest.raises(DiskFullError, match="history.jsonl"):
            loop._append_line(f, {"step": 2, "loss": 1.5})
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"step": 1, "loss": 2.0}]


def test_interrupted_model_save_is_set_aside_and_redone(tmp_path, splits, full_run):
    wd = tmp_path / "run"
    shutil.copytree(full_run, wd)
    (wd / "model" / "config.json").unlink()  # as after a full disk during save_model
    train_and_evaluate(_cfg(), wd, splits=splits)
    assert load_model(wd / "model").config == load_model(full_run / "model").config
    assert len(list(wd.glob("model.incomplete-*"))) == 1


def test_deep_activity_finds_a_dead_cnn(splits):
    cfg = ModelConfig(feature_set="C", hidden=(8, 8))
    params = init_model(cfg, jax.random.key(0)).params
    alive = loop.deep_activity(params, splits["validation"], cfg)
    # reference: the per-patch network on the same inputs, units that fire on any patch
    from dhde.model.cnn import DeepFeature
    from dhde.features.pipeline import context_cnn
    v = splits["validation"]
    cnn = context_cnn(jnp.asarray(v["patch"], jnp.float32) / 255, jnp.asarray(v["scale"]) == 2, cfg)
    out = np.asarray(DeepFeature(impl="conv").apply({"params": params["deep"]}, cnn))
    assert alive == pytest.approx((out > 0).any(0).mean()) and alive > 0
    dead = jax.tree_util.tree_map(lambda x: x, params)
    dead["deep"]["conv4"]["bias"] = jnp.full((25,), -1e6)
    assert loop.deep_activity(dead, splits["validation"], cfg) == 0.0
    assert loop.deep_activity(params, splits["validation"], ModelConfig(feature_set="D")) is None


def test_dead_cnn_is_reported_in_history_and_metrics(tmp_path, splits, monkeypatch, capsys):
    monkeypatch.setattr(loop, "deep_activity", lambda *a, **k: 0.0)
    cfg = _cfg(steps=K, features={"set": "C"})
    m = train_and_evaluate(cfg, tmp_path, splits=splits)
    err = capsys.readouterr().err
    assert err.count("the deep feature is dead at step") == 1
    vals = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [v["deep_active_units"] for v in vals if "val_tolerance_accuracy" in v] == [0.0]
    assert m["deep_active_units"] == 0.0 and m["cnn_input_scale"] == pytest.approx(1 / 255)


def test_dihedral_augmentation(rng):
    from dhde.training.step import dihedral

    x = jnp.asarray(rng.integers(0, 256, (64, 5, 5, 2)), jnp.uint8)
    y = np.asarray(jax.jit(dihedral)(x, jax.random.key(3)))
    xs = np.asarray(x)
    # reference: every output is one of the 8 rotations / reflections of its own input
    seen = set()
    for n in range(len(xs)):
        group = []
        for t in range(2):
            a = xs[n].swapaxes(0, 1) if t else xs[n]
            for k in range(4):
                group.append(np.rot90(a, k))
        hits = [i for i, g in enumerate(group) if np.array_equal(g, y[n])]
        assert hits, n
        seen.add(hits[0])
    assert len(seen) == 8  # all eight appear in 64 draws
    assert y[:, 2, 2].tolist() == xs[:, 2, 2].tolist()  # the centre stays the centre
    np.testing.assert_array_equal(np.asarray(dihedral(x, jax.random.key(3))), y)  # jit == eager
    with pytest.raises(ValueError, match="square"):
        dihedral(x[:, :4], jax.random.key(0))


def test_augmented_step_differs_and_bad_value_raises(splits):
    cfg = ModelConfig(feature_set="C", hidden=(8, 8))
    net = DefocusNet(cfg)
    tx = make_optimizer("sgd", 0.01, 10, schedule="constant", momentum=0.0)
    params = init_model(cfg, jax.random.key(0)).params
    idx = np.arange(8)
    b = _batch(splits, cfg, idx)
    mesh = data_mesh()
    outs = {}
    for aug in ("none", "dihedral"):
        st, _, _ = compile_steps(mesh, net, tx, augment=aug)
        state = jax.device_put(init_state(jax.tree_util.tree_map(jnp.copy, params), tx), replicated(mesh))
        new, m = st(state, put_batch(b, mesh), jax.random.key(1))  # donates state
        outs[aug] = (float(m["loss"]), _flat(new.params))
    assert outs["none"][0] != outs["dihedral"][0]
    with pytest.raises(ValueError, match="augment"):
        from dhde.training.step import train_step
        train_step(init_state(params, tx), b, jax.random.key(0), net=net, tx=tx, augment="mixup")


def test_shipped_model_has_no_dead_cnn():
    """The first normalised model shipped a CNN whose 25 units were all zero on every patch
    (a B model that was really H). A shipped model with a CNN must have live deep units."""
    from skimage import data

    m = load_model()
    if not m.config.uses_deep:
        assert m.config.feature_set in ("H", "D+G+S") or "C" not in m.config.feature_set
        return
    img = data.astronaut()[:256, :256]
    r = np.random.default_rng(0)
    ys, xs = r.integers(0, 256 - 29, 256), r.integers(0, 256 - 29, 256)
    arrays = {"patch": np.stack([img[y:y + 29, x:x + 29] for y, x in zip(ys, xs)]),
              "scale": np.tile(np.array([1, 2], np.int32), 128), "label": np.zeros(256, np.int32)}
    assert loop.deep_activity(m.params, arrays, m.config) > 0.5
