"""Application entry-point logic (dhde.cli.apps) on tiny images with a random-init model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import dhde.estimation.inference
from dhde.cli import apps as apps_cli
from dhde.model import spec as model_spec
from dhde.cli import gallery as gallery_cli
from dhde.model.network import DefocusModel, ModelConfig, init_model

H, W = 64, 80
#: Cheap estimator settings: one compilation shared by every test of this file.
OPTIONS = {"preconditioner": "jacobi", "maxiter": 20, "chunk": 256}
ROOT = Path(__file__).resolve().parents[1]


def random_model(seed: int = 0) -> DefocusModel:
    """A randomly initialised model (LeCun-normal kernels, zero biases) without running Flax's
    eager init (slow on a busy CPU): parameter shapes come from ``jax.eval_shape``."""
    config = ModelConfig()
    shapes = jax.eval_shape(lambda: init_model(config, jax.random.key(seed)).params)
    rng = np.random.default_rng(seed)

    def draw(s):
        if len(s.shape) == 1:
            return jnp.zeros(s.shape, jnp.float32)
        fan_in = int(np.prod(s.shape[:-1]))
        return jnp.asarray(rng.normal(0.0, fan_in ** -0.5, s.shape), jnp.float32)

    return DefocusModel(params=jax.tree_util.tree_map(draw, shapes), config=config)


@pytest.fixture(scope="module")
def model():
    return random_model(2)  # seed 2: predictions vary over the test scene


def _scene(rng, h=H, w=W) -> np.ndarray:
    """Random colour blocks (sharp edges), right half blurred: float32 (h, w, 3) in [0, 1]."""
    blocks = rng.random((h // 8 + 1, w // 8 + 1, 3))
    img = np.repeat(np.repeat(blocks, 8, 0), 8, 1)[:h, :w]
    img[:, w // 2:] = ndimage.gaussian_filter(img, (2.0, 2.0, 0))[:, w // 2:]
    return img.astype(np.float32)


def _save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(path)
    return path


def _smooth_map(h=H, w=W) -> np.ndarray:
    return np.tile(np.linspace(0.5, 2.0, w, dtype=np.float32), (h, 1))


def _cfg(**kw) -> dict:
    return {"input": None, "model": None, "estimate_dir": None, "size_multiple": 1,
            "options": dict(OPTIONS), **kw}


def _ply_header(path: Path) -> tuple[str, int]:
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return data[:end].decode("ascii"), len(data) - end


def test_estimate_once_then_reuse(tmp_path, model, rng, monkeypatch):
    folder = tmp_path / "photos"
    _save(folder / "a.png", _scene(rng))
    _save(folder / "sub" / "b.png", _scene(rng))
    (folder / "broken.png").write_bytes(b"not an image")
    maps = tmp_path / "maps"

    # depth: estimates both maps (one compilation), writes them to estimate_dir; broken is skipped
    out = tmp_path / "depth"
    failures = apps_cli.run_app("depth", _cfg(input=str(folder), model=model, estimate_dir=str(maps)), out)
    assert failures == 1
    summary = json.loads((out / "summary.json").read_text())["images"]
    assert "cannot read image file" in summary["broken.png"]["error"]
    for stem in ("a.png", "sub/b.png"):
        assert summary[stem]["defocus"] == "estimated"
        d = np.load(maps / f"{stem}_defocus.npy")
        assert d.shape == (H, W) and d.dtype == np.float32 and np.all(np.isfinite(d))
        with Image.open(out / f"{stem}_depth16.png") as im:
            assert im.mode.startswith("I;16")
            z = np.asarray(im)
        assert z.shape == (H, W) and z.dtype == np.uint16
        span = d.max() - d.min()  # independent pseudo-depth: min-max scaled map, 0 = near
        expect = (d - d.min()) / span if span > 0 else np.zeros_like(d)
        np.testing.assert_allclose(z / 65535.0, expect, atol=2e-4)
        header, payload = _ply_header(out / f"{stem}_depth.ply")
        assert header.startswith("ply\nformat binary_little_endian 1.0\n")
        assert f"element vertex {H * W}\n" in header
        assert payload == H * W * (3 * 4 + 3)  # float x, y, z + uchar r, g, b
        assert (out / f"{stem}_defocus_color.png").is_file()

    # every other application reuses the maps: the estimator must not run again
    def no_estimate(*a, **k):
        raise AssertionError("estimate_defocus called although the map is cached")

    monkeypatch.setattr(dhde.estimation.inference, "estimate_defocus", no_estimate)
    unloadable = tmp_path / "not_a_model"  # exists (the config check passes) but cannot be loaded
    unloadable.mkdir()
    expected = {"magnify": ["magnified"], "all_in_focus": ["all_in_focus"],
                "segment": ["mask", "overlay", "tau_sweep"]}
    for app, kinds in expected.items():
        out = tmp_path / app
        cfg = _cfg(input=str(folder), model=str(unloadable), estimate_dir=str(maps))
        assert apps_cli.run_app(app, cfg, out) == 1  # only the broken file; the model is never loaded
        summary = json.loads((out / "summary.json").read_text())["images"]
        for stem in ("a.png", "sub/b.png"):
            assert summary[stem]["defocus"] == str(maps / f"{stem}_defocus.npy")
            for kind in kinds:
                with Image.open(summary[stem]["files"][kind]) as im:
                    assert im.size[0] >= W and im.size[1] >= H
        if app == "segment":
            with Image.open(out / "a.png_mask.png") as im:
                assert im.mode == "L" and im.size == (W, H)
                assert set(np.unique(np.asarray(im))) <= {0, 255}
        if app == "magnify":
            with Image.open(out / "a.png_magnified.png") as im:
                assert im.mode == "RGB" and im.size == (W, H)


def test_map_cached_in_out_dir_is_reused(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(dhde.estimation.inference, "estimate_defocus",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    src = _save(tmp_path / "p.png", _scene(rng))
    (tmp_path / "out").mkdir()
    np.save(tmp_path / "out" / "p.png_defocus.npy", _smooth_map())
    d, source = apps_cli.estimate_or_load("p.png", np.zeros((H, W, 3), np.float32), tmp_path / "out", None)
    assert source.endswith("p.png_defocus.npy")
    np.testing.assert_array_equal(d, _smooth_map())
    # magnify x1 leaves the image unchanged
    assert apps_cli.run_app("magnify", _cfg(input=[str(src)], factor=1.0), tmp_path / "out") == 0
    with Image.open(tmp_path / "out" / "p.png_magnified.png") as a, Image.open(src) as b:
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), atol=1)


@pytest.mark.parametrize("bad, match", [
    (np.ones((H - 1, W), np.float32), "is 63x80 but the image is 64x80"),
    (np.full((H, W), np.nan, np.float32), "NaN"),
    (-np.ones((H, W), np.float32), "negative"),
    (np.ones((H, W, 2), np.float32), "expected \\(H, W\\)"),
])
def test_bad_cached_map_is_reported(tmp_path, rng, bad, match):
    src = _save(tmp_path / "in" / "p.png", _scene(rng))
    _save(tmp_path / "in" / "q.png", _scene(rng))
    maps = tmp_path / "maps"
    maps.mkdir()
    np.save(maps / "p.png_defocus.npy", bad)
    np.save(maps / "q.png_defocus.npy", _smooth_map())
    with pytest.raises(ValueError, match=match):
        apps_cli.load_cached_map(maps / "p.png_defocus.npy", (H, W))
    out = tmp_path / "out"
    assert apps_cli.run_app("segment", _cfg(input=str(src.parent), estimate_dir=str(maps)), out) == 1
    summary = json.loads((out / "summary.json").read_text())["images"]
    assert "error" in summary["p.png"] and "ValueError" in summary["p.png"]["error"]
    assert (out / "q.png_mask.png").is_file() and "error" not in summary["q.png"]  # the rest finishes


@pytest.mark.parametrize("app, params, match", [
    ("magnify", {"factor": 0}, "factor must be > 0"),
    ("magnify", {"factor": -2.0}, "factor must be > 0"),
    ("magnify", {"factor": 0.5}, "factor must be >= 1"),
    ("magnify", {"factor": float("nan")}, "factor must be finite"),
    ("magnify", {"num_levels": 1}, "num_levels"),
    ("all_in_focus", {"lam": 0.0}, "lam"),
    ("all_in_focus", {"prior_alpha": 1.5}, "prior_alpha"),
    ("depth", {"ply_step": 0}, "ply_step"),
    ("depth", {"z_scale": -1.0}, "z_scale"),
    ("segment", {"alpha": 1.2}, "alpha"),
    ("segment", {"color": [1, 0]}, "color"),
    ("segment", {"taus": [0.5, float("inf")]}, "taus"),
    ("sharpen", {}, "unknown application"),
])
def test_bad_parameters_fail_before_any_image(tmp_path, monkeypatch, app, params, match):
    monkeypatch.setattr(apps_cli, "load_image", lambda *a: (_ for _ in ()).throw(AssertionError("read")))
    with pytest.raises(ValueError, match=match):
        apps_cli.run_app(app, _cfg(input=str(tmp_path), **params), tmp_path / "out")
    assert not (tmp_path / "out" / "summary.json").exists()


def test_factor_must_be_a_number():
    with pytest.raises(TypeError, match="factor"):
        apps_cli.app_params("magnify", {"factor": "2"})


def test_model_is_resolved_lazily_and_once(monkeypatch):
    calls = []

    def fake(spec):
        calls.append(spec)
        raise ValueError("no dhde model at /x")

    monkeypatch.setattr(model_spec, "resolve_model", fake)
    lazy = apps_cli.LazyModel("/x")
    assert calls == []
    for _ in range(2):
        with pytest.raises(ValueError, match="no dhde model"):
            lazy()
    assert calls == ["/x"]


def test_gallery_figure(tmp_path, rng):
    img = _scene(rng)
    src = _save(tmp_path / "scene.png", img)
    maps = tmp_path / "maps"
    maps.mkdir()
    np.save(maps / "scene_defocus.npy", _smooth_map())
    cfg = {"inputs": [str(src)], "estimate_dir": str(maps), "model": str(maps), "factor": 2.0,  # never loaded
           "width_px": 480, "max_bytes": 2_000, "options": dict(OPTIONS)}
    (path,) = gallery_cli.run_gallery(cfg, tmp_path / "gallery")
    assert path == tmp_path / "gallery" / "scene.png"
    with Image.open(path) as im:
        assert im.size[0] == 480 and im.mode == "P"  # over max_bytes: palette PNG
    panels = gallery_cli.gallery_panels(img, _smooth_map(), factor=2.0)
    assert set(panels) == {"input", "defocus", "mask", "magnified", "all_in_focus", "depth"}
    assert panels["mask"].dtype == np.bool_ and panels["magnified"].shape == (H, W, 3)
    with pytest.raises(ValueError, match="differ in size"):
        gallery_cli.gallery_panels(img, _smooth_map(H, W - 1))
    with pytest.raises(ValueError, match="NaN"):
        gallery_cli.gallery_panels(img, np.full((H, W), np.nan, np.float32))


def test_gallery_inputs():
    stem, img, truth = gallery_cli.gallery_input("chelsea")
    assert stem == "chelsea" and img.dtype == np.float32 and img.shape[2] == 3 and truth is None
    with pytest.raises(ValueError, match="neither a file"):
        gallery_cli.gallery_input("no_such_image")


def test_hydra_configs_compose():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        for app, params in apps_cli.APP_CONFIGS.items():
            cfg = compose(app, overrides=["input=x.png"])
            assert cfg.input == "x.png" and "estimate_dir" in cfg and cfg.options.preconditioner
            assert {f.name for f in dataclasses.fields(params)} <= set(cfg), app
            apps_cli.app_params(app, dict(cfg))  # the shipped defaults validate
        g = compose("gallery")
        assert list(g.inputs) == ["stereo_motorcycle", "chelsea"]
        for name in list(apps_cli.APPS) + ["gallery", "estimate", "evaluate"]:
            assert compose(name).jax_cache, name  # every entry point has the cache key


def test_compilation_cache(tmp_path):
    import subprocess
    import sys

    from dhde.cli.common import use_compilation_cache

    assert use_compilation_cache(None) is None and use_compilation_cache("") is None
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert use_compilation_cache(blocker / "cache") is None  # cannot create: warns, stays off
    # turning it on changes the process's JAX config, so check that in a separate process
    code = ("import jax; from dhde.cli.common import use_compilation_cache as u; p = u(%r); "
            "assert p.is_dir() and jax.config.jax_compilation_cache_dir == str(p), p" % str(tmp_path / "c"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
