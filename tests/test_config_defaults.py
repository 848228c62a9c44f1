"""One source of truth for the config defaults (issue 14): every shipped YAML file's keys are
the fields of its dataclass and its values the dataclass defaults; the functions the
dataclasses configure take their keyword defaults from them; an absent key means the default."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dhde.applications import (AllInFocusParams, DepthParams, MagnifyParams, SegmentParams, all_in_focus,
                               magnify_blur, overlay_mask, point_cloud, pseudo_depth, save_point_cloud_ply,
                               segment_blur, tau_sweep_figure)
from dhde.cli import apps as apps_cli
from dhde.cli import gallery as gallery_cli
from dhde.config.check import ConfigError
from dhde.data.config import DataConfig
from dhde.model.network import ModelConfig
from dhde.training.config import ModelSection, OptimizerConfig, RunConfig, TrainConfig
from dhde.training.loop import model_config
from dhde.training.optim import make_optimizer

CONF = Path(__file__).resolve().parents[1] / "conf"
APP_FILES = {"magnify": MagnifyParams, "all_in_focus": AllInFocusParams, "depth": DepthParams,
             "segment": SegmentParams}


def _yaml(path: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _same(yaml_value, default) -> bool:
    """YAML lists stand for the dataclasses' tuples."""
    if isinstance(yaml_value, list):
        yaml_value = tuple(yaml_value)
    return type(yaml_value) in (type(default), int) and yaml_value == default if default is not None \
        else yaml_value is None


def _assert_defaults(values: dict, cls, where: str) -> None:
    assert set(values) == _names(cls), f"{where}: keys {sorted(values)} != {cls.__name__} fields {sorted(_names(cls))}"
    d = cls()
    bad = {k: (v, getattr(d, k)) for k, v in values.items() if not _same(v, getattr(d, k))}
    assert not bad, f"{where}: YAML value != {cls.__name__} default: {bad}"


# ----------------------------------------------------------------------------- training


def test_train_yaml_sections_are_the_dataclass_defaults():
    cfg = _yaml(CONF / "train.yaml")
    _assert_defaults(cfg["train"], TrainConfig, "train.yaml train:")
    _assert_defaults(cfg["model"], ModelSection, "train.yaml model:")
    assert cfg["seed"] == RunConfig.seed
    defaults = {k: v for d in cfg["defaults"] if isinstance(d, dict) for k, v in d.items()}
    assert defaults == {"features": "B", "encoding": "separate", "optimizer": "adamw", "data": "skimage"}
    assert _yaml(CONF / "features" / "B.yaml")["set"] == ModelConfig.feature_set
    assert _yaml(CONF / "encoding" / "separate.yaml")["name"] == ModelConfig.encoding
    # the model section's defaults are ModelConfig's own
    for name in _names(ModelSection):
        assert getattr(ModelSection(), name) == getattr(ModelConfig(), name), name


def test_optimizer_yamls():
    _assert_defaults(_yaml(CONF / "optimizer" / "adamw.yaml"), OptimizerConfig, "optimizer/adamw.yaml")
    for path in sorted((CONF / "optimizer").glob("*.yaml")):
        values = _yaml(path)
        assert set(values) <= _names(OptimizerConfig), path.name
        OptimizerConfig.from_mapping(values)  # and they validate
    # the fields are make_optimizer's keywords
    assert _names(OptimizerConfig) <= set(inspect.signature(make_optimizer).parameters)


def test_composed_default_config_is_the_dataclass_defaults():
    """What a Hydra user gets with no overrides == the dataclasses' defaults, every key."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("train"), resolve=True)
    assert RunConfig.from_mapping(cfg) == RunConfig(data=DataConfig())
    assert model_config(cfg) == ModelConfig()


def test_data_yamls():
    for path in sorted((CONF / "data").glob("*.yaml")):
        assert set(_yaml(path)) == _names(DataConfig), path.name
    _assert_defaults(_yaml(CONF / "data" / "skimage.yaml"), DataConfig, "data/skimage.yaml")
    for name in ("skimage", "debug"):
        DataConfig.from_mapping(_yaml(CONF / "data" / f"{name}.yaml"))
    # load_splits passes every argument of the patch builder from a DataConfig field
    from dhde.data.defocus_patches import make_config

    params = inspect.signature(make_config).parameters
    assert set(params) <= _names(DataConfig)
    assert {k: p.default for k, p in params.items()} == {k: getattr(DataConfig(), k) for k in params}


def test_absent_keys_take_the_dataclass_defaults():
    assert TrainConfig.from_mapping(None) == TrainConfig()
    t = TrainConfig.from_mapping({"steps": 5, "batch_size": None})  # None = absent
    assert t == dataclasses.replace(TrainConfig(), steps=5) and t.steps == 5 and t.batch_size == 256
    assert TrainConfig().steps == 12000  # conf/train.yaml's, not the 10000 the loop used to assume
    assert OptimizerConfig.from_mapping({}) == OptimizerConfig()
    o = OptimizerConfig.from_mapping({"name": "sgd", "grad_clip": None})
    assert (o.name, o.grad_clip, o.warmup, o.weight_decay) == ("sgd", None, 200, 1e-4)  # explicit null: no clipping
    assert ModelSection.from_mapping({}) == ModelSection()
    assert DataConfig.from_mapping({}) == DataConfig() == DataConfig.from_mapping({"noise": None})
    assert RunConfig.from_mapping({}) == RunConfig()  # no data section: None (preloaded splits)
    run = RunConfig.from_mapping({"seed": 3, "train": {"schedule": "two_stage", "steps": 10},
                                  "features": {"set": "D"}, "model": {"hidden": [8, 4]}})
    assert (run.seed, run.train.stage1_steps, run.train.eval_every) == (3, 5, TrainConfig.eval_every)
    assert run.model_config == ModelConfig(feature_set="D", hidden=(8, 4))


@pytest.mark.parametrize("cfg, match", [
    ({"train": {"steps": -5}}, r"train\.steps must be an integer >= 1, got -5"),
    ({"train": {"eval_every": 0}}, r"train\.eval_every"),
    ({"train": [1]}, r"train must be a mapping"),
    ({"optimizer": {"grad_clip": 0}}, r"optimizer\.grad_clip must be > 0"),
    ({"optimizer": {"name": "rmsprop"}}, r"optimizer\.name must be one of"),
    ({"model": {"hidden": []}}, r"model\.hidden"),
    ({"model": {"normalize": "zscore"}}, r"model\.normalize"),
    ({"encoding": {"name": "other"}}, r"encoding\.name"),
    ({"data": {"downscale": 0}}, r"data\.downscale must be an integer >= 1"),
    ({"data": {"jpeg": 2.0}}, r"data\.jpeg"),
])
def test_bad_values_name_their_key(cfg, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig.from_mapping(cfg)


# ----------------------------------------------------------------------------- applications


def test_app_yamls_are_the_dataclass_defaults():
    common = set(_yaml(CONF / "apps_common.yaml")) | {"defaults"}
    assert apps_cli.APP_CONFIGS == APP_FILES
    for app, cls in APP_FILES.items():
        values = {k: v for k, v in _yaml(CONF / f"{app}.yaml").items() if k not in common}
        _assert_defaults(values, cls, f"{app}.yaml")
        assert apps_cli.app_params(app, {}) == cls() == apps_cli.app_params(app, values)


def test_functions_take_their_defaults_from_the_dataclasses():
    def default(fn, name):
        return inspect.signature(fn).parameters[name].default

    m, a, d, s = MagnifyParams(), AllInFocusParams(), DepthParams(), SegmentParams()
    assert m.in_focus_sigma == 0.5  # the smallest label sigma: the command's value, now the function's too
    assert (default(magnify_blur, "num_levels"), default(magnify_blur, "in_focus_sigma")) == (m.num_levels,
                                                                                             m.in_focus_sigma)
    assert [default(all_in_focus, k) for k in ("lam", "alpha", "num_levels", "reblur")] == [
        a.lam, a.prior_alpha, a.num_levels, a.reblur]
    assert a.prior_alpha == 2.0 / 3.0
    assert (default(pseudo_depth, "near_is_sharp"), default(pseudo_depth, "smooth_sigma")) == (d.near_is_sharp,
                                                                                               d.smooth_sigma)
    for fn in (point_cloud, save_point_cloud_ply):
        assert (default(fn, "step"), default(fn, "z_scale")) == (d.ply_step, d.z_scale)
    assert default(save_point_cloud_ply, "binary") == d.ply_binary
    assert default(segment_blur, "alpha") == s.alpha
    for fn in (overlay_mask, tau_sweep_figure):
        assert (default(fn, "color"), default(fn, "alpha")) == (s.color, s.overlay_opacity)
    assert default(gallery_cli.gallery_panels, "in_focus_sigma") == m.in_focus_sigma


def test_gallery_yaml_is_the_gallery_defaults():
    g = _yaml(CONF / "gallery.yaml")
    assert (g["factor"], g["alpha"], g["width_px"], g["max_bytes"], g["size_multiple"]) == (
        gallery_cli.FACTOR, SegmentParams.alpha, gallery_cli.WIDTH_PX, gallery_cli.MAX_BYTES,
        gallery_cli.SIZE_MULTIPLE)
