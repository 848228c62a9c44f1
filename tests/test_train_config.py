"""The Hydra training configs: every Table-1 ablation, the table1 sweep and the launchers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dhde.training.loop import model_config

CONF = Path(__file__).resolve().parents[1] / "conf"
TRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "train.py"

#: ablation -> (feature set, encoding, classifier input width from the encoding table:
#: separate 40, separate_no_constants 38, shared / single_scale 26 per hand feature, C 25).
ABLATIONS = {
    "D": ("D", "separate", 40),
    "G": ("G", "separate", 40),
    "S": ("S", "separate", 40),
    "H": ("H", "separate", 120),
    "C": ("C", "separate", 25),
    "B": ("B", "separate", 145),
    "D+S+C": ("D+S+C", "separate", 105),
    "G+S+C": ("G+S+C", "separate", 105),
    "B_single_scale": ("B", "single_scale", 103),
    "B_shared": ("B", "shared", 103),
    "B_separate_no_constants": ("B", "separate_no_constants", 139),
}


@pytest.fixture
def hydra_conf():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield


def test_every_ablation_composes(hydra_conf):
    assert {p.stem for p in (CONF / "ablation").glob("*.yaml")} == set(ABLATIONS)
    for name, (fs, enc, width) in ABLATIONS.items():
        cfg = compose("train", overrides=[f"+ablation={name}"])
        assert (cfg.features.set, cfg.encoding.name) == (fs, enc), name
        mc = model_config(OmegaConf.to_container(cfg, resolve=True))
        assert (mc.feature_set, mc.encoding, mc.input_width) == (fs, enc, width), name
        assert cfg.train.batch_size == 256 and cfg.optimizer.name == "adamw"


def test_table1_sweeps_every_ablation(hydra_conf):
    cfg = compose("train", overrides=["+experiment=table1"], return_hydra_config=True)
    swept = cfg.hydra.sweeper.params["+ablation"].split(",")
    assert sorted(swept) == sorted(ABLATIONS) and len(swept) == len(set(swept))


def test_debug_experiment_and_caffe_optimizer(hydra_conf):
    cfg = compose("train", overrides=["+experiment=debug", "optimizer=caffe_sgd"])
    assert cfg.train.steps == 20 and cfg.data.max_images == 2 and cfg.data.max_per_scale == 20
    o = cfg.optimizer
    assert (o.name, o.lr, o.schedule, o.momentum, o.weight_decay) == ("sgd", 1e-4, "inv", 0.9, 0.01)


def test_slurm_launcher(hydra_conf):
    cfg = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    lc = cfg.hydra.launcher
    assert lc._target_.endswith("submitit_launcher.SlurmLauncher")
    assert lc.gpus_per_node == 1 and lc.nodes == 1 and lc.tasks_per_node == 1
    assert lc.timeout_min == 720 and lc.mem_gb == 32 and lc.partition is None
    assert any("XLA_PYTHON_CLIENT_PREALLOCATE=false" in line for line in lc.setup)


def test_parallel_local_launcher(hydra_conf):
    cfg = compose("train", overrides=["hydra/launcher=parallel_local"], return_hydra_config=True)
    lc = cfg.hydra.launcher
    assert lc._target_.endswith("submitit_launcher.LocalLauncher")
    assert lc.gpus_per_node == 0 and lc.timeout_min == 720 and lc.tasks_per_node == 1
    # local jobs share one GPU: the training script turns off JAX's 75 % preallocation
    # before JAX is imported
    src = TRAIN_SCRIPT.read_text()
    set_at = src.index('os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")')
    assert set_at < src.index("import jax")
