"""Issue 13 (reliability): every bad or odd input gets a clear error, no data is lost, no map is
silently wrong. One test (or parametrized case) per case of the issue; the training and
checkpoint cases live in tests/test_training.py (they share its tiny runs).

The estimator is replaced by a fake (a constant map that identifies its image) wherever the
test is about files, names, configs or the disk, so this file compiles nothing big.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

import dhde.estimation.inference
import dhde.model.spec
from dhde.cli import apps as apps_cli
from dhde.cli import gallery as gallery_cli
from dhde.io import atomic
from dhde.cli import common as cli
from dhde.config.check import ConfigError
from dhde.filters.edges import CONTRAST_FLOOR, max_gradient, scale_map
from dhde.io.image import IMAGE_SUFFIXES, load_image
from dhde.estimation.inference import DefocusResult, estimate_defocus
from dhde.model.network import DefocusModel, ModelConfig, init_model
from dhde.model.io import CHECKSUM_KEY, DEFAULT_MODEL_DIR, load_model, save_model, tree_sha256

ROOT = Path(__file__).resolve().parents[1]
H, W = 40, 48


# ----------------------------------------------------------------------------- helpers


def _img(seed: int, h: int = H, w: int = W) -> np.ndarray:
    """Random 8x8 colour blocks: float32 (h, w, 3) in [0, 1] with sharp edges."""
    r = np.random.default_rng(seed)
    blocks = r.random((h // 8 + 1, w // 8 + 1, 3))
    return np.repeat(np.repeat(blocks, 8, 0), 8, 1)[:h, :w].astype(np.float32)


def _save(path: Path, img: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(path, **kw)
    return path


def _sigma_of(image: np.ndarray) -> float:
    """The fake estimator's sigma for an image: identifies the image it came from."""
    return 0.5 + float(np.asarray(image, np.float64).mean())


def fake_estimate(image, model=None, *, options=None, size_multiple=1, seed=0, **kw) -> DefocusResult:
    img = load_image(image)
    h, w = img.shape[:2]
    d = np.full((h, w), _sigma_of(img), np.float32)
    mask = np.zeros((h, w), bool)
    mask[h // 2] = True
    return DefocusResult(d, d * mask, mask.astype(np.float32), d * mask, mask, mask.astype(np.int32), img,
                         np.zeros((h, w, 11), np.float32), np.float32(0.0), np.where(mask, 0, -1).astype(np.int32))


@pytest.fixture
def fake(monkeypatch):
    """The estimator and the model loader replaced by cheap fakes."""
    monkeypatch.setattr(dhde.estimation.inference, "estimate_defocus", fake_estimate)
    monkeypatch.setattr(cli, "resolve_model", lambda spec: None)
    monkeypatch.setattr(dhde.model.spec, "resolve_model", lambda spec: None)  # LazyModel's loader


def _no_estimate(*a, **k):
    raise AssertionError("estimate_defocus called")


def _cfg(**kw) -> dict:
    return {"input": None, "model": None, "size_multiple": 1, "alpha": 0.3, "options": {}, "jax_cache": None, **kw}


def _names_folder(tmp_path: Path) -> Path:
    """The collision cases of issue 13 item 1, all in one folder."""
    folder = tmp_path / "photos"
    _save(folder / "photo.jpg", _img(1), quality=95)
    _save(folder / "photo.png", _img(2) * 0.5)
    _save(folder / "sub" / "x.png", _img(3))
    _save(folder / "sub__x.png", _img(4) * 0.8)
    return folder


def _files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file())


def _assert_no_partial_files(out: Path) -> None:
    """Nothing truncated, zero-byte or temporary is left: every file reads back whole."""
    for f in _files(out):
        assert f.stat().st_size > 0, f
        assert ".tmp" not in f.name, f
        if f.suffix == ".png":
            with Image.open(f) as im:
                im.load()
        elif f.suffix == ".npy":
            np.load(f)
        elif f.suffix == ".json":
            json.loads(f.read_text())


# ----------------------------------------------------------------------------- 1. output names


def test_colliding_names_in_a_folder_get_their_own_outputs(tmp_path, fake):
    folder = _names_folder(tmp_path)
    out = tmp_path / "maps"
    assert cli.run_estimate(_cfg(input=str(folder)), out) == 0
    summary = json.loads((out / "summary.json").read_text())
    names = {"photo.jpg", "photo.png", "sub/x.png", "sub__x.png"}
    assert set(summary) == names  # 4 entries, not 2
    for name in names:
        d = np.load(out / f"{name}_defocus.npy")
        assert d[0, 0] == pytest.approx(_sigma_of(load_image(folder / name)), abs=1e-6), name
        for kind in ("defocus16.png", "defocus_color.png", "mask.png", "sparse.png", "preview.png"):
            assert (out / f"{name}_{kind}").is_file()
    assert (out / "sub" / "x.png_defocus.npy").is_file()  # the relative path is mirrored


def test_applications_find_exactly_the_map_of_their_image(tmp_path, fake, monkeypatch):
    folder = _names_folder(tmp_path)
    maps = tmp_path / "maps"
    cli.run_estimate(_cfg(input=str(folder)), maps)
    monkeypatch.setattr(dhde.estimation.inference, "estimate_defocus", _no_estimate)  # every map is reused
    out = tmp_path / "magnify"
    assert apps_cli.run_app("magnify", _cfg(input=str(folder), estimate_dir=str(maps)), out) == 0
    images = json.loads((out / "summary.json").read_text())["images"]
    assert len(images) == 4
    for name, rec in images.items():
        assert rec["defocus"] == str(maps / f"{name}_defocus.npy")
        assert (out / f"{name}_magnified.png").is_file()


@pytest.mark.parametrize("names", [("a/photo.png", "b/photo.png"), ("a/Photo.png", "b/photo.png")])
def test_colliding_inputs_of_a_list_are_refused_before_any_work(tmp_path, fake, monkeypatch, names):
    monkeypatch.setattr(dhde.estimation.inference, "estimate_defocus", _no_estimate)
    files = [str(_save(tmp_path / n, _img(k))) for k, n in enumerate(names)]
    with pytest.raises(ConfigError, match="would write the same output files"):
        cli.run_estimate(_cfg(input=files), tmp_path / "out")
    assert not (tmp_path / "out" / "summary.json").exists()


# ----------------------------------------------------------------------------- 2 / 8. configs up front


@pytest.mark.parametrize("kw, match", [
    ({"alpha": "abc"}, "alpha must be a number, got 'abc'"),
    ({"alpha": 1.5}, "alpha must be <= 1"),
    ({"size_multiple": 0}, "size_multiple must be an integer >= 1"),
    ({"size_multiple": 2.5}, "size_multiple must be an integer"),
    ({"options": {"gamma": "abc"}}, "options.gamma must be a number, got 'abc'"),
    ({"options": {"gama": 0.1}}, r"options has unknown field\(s\) \['gama'\]"),
    ({"options": {"seeds": -1}}, "options: seeds"),
    ({"options": {"seeds": 2.5}}, "options.seeds must be an integer"),
    ({"options": {"bilateral": "yes"}}, "options.bilateral must be true or false"),
    ({"options": {"contrast_floor": -1.0}}, "options: contrast_floor"),
    ({"options": {"thresholds": [[0.3, 0.2]]}}, "options: Canny thresholds"),
    ({"options": "fast"}, "options must be a mapping"),
    ({"model": "/no/such/model"}, "model: no model folder"),
    ({"model": "caffe:/no/such.caffemodel"}, "model: Caffe model file not found"),
    ({"input": "/no/such/photo.png"}, "input: no such file or folder"),
    ({"input": []}, "input is an empty list"),
    ({"input": 5}, "input must be an image file, a folder or a list"),
    ({"input": "NOTES"}, "does not have an image suffix"),
    ({"input": "EMPTY"}, "input: no images"),
    ({"input": "HIDDEN"}, "input: no images"),
    ({"jax_cache": 5}, "jax_cache must be a non-empty string"),
])
def test_bad_estimate_config_fails_before_any_image(tmp_path, monkeypatch, kw, match):
    monkeypatch.setattr(dhde.estimation.inference, "estimate_defocus", _no_estimate)
    monkeypatch.setattr(cli, "resolve_model", lambda spec: (_ for _ in ()).throw(AssertionError("model loaded")))
    _save(tmp_path / "in" / "a.png", _img(0))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    _save(tmp_path / "hidden" / ".a.png", _img(0))
    special = {"NOTES": str(tmp_path / "notes.txt"), "EMPTY": str(tmp_path / "empty"),
               "HIDDEN": str(tmp_path / "hidden")}
    kw = {k: special.get(v, v) if isinstance(v, str) else v for k, v in kw.items()}
    cfg = _cfg(**{"input": str(tmp_path / "in"), **kw})
    with pytest.raises(ConfigError, match=match):
        cli.run_estimate(cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "summary.json").exists()


def test_bad_app_config_fails_before_any_image(tmp_path, monkeypatch):
    monkeypatch.setattr(apps_cli, "load_image", lambda *a: (_ for _ in ()).throw(AssertionError("read")))
    _save(tmp_path / "in" / "a.png", _img(0))
    (tmp_path / "file").write_text("x")
    for kw, match in [({"options": {"gamma": "abc"}}, "options.gamma"),
                      ({"estimate_dir": str(tmp_path / "file")}, "estimate_dir: .* is a file"),
                      ({"input": str(tmp_path / "none")}, "input: no such file")]:
        with pytest.raises(ConfigError, match=match):
            apps_cli.run_app("segment", _cfg(**{"input": str(tmp_path / "in"), **kw}), tmp_path / "out")


def test_bad_evaluate_config_is_caught_up_front():
    base = {"datasets": ["synthetic"], "methods": ["dhde"], "options": {}}
    cli.check_evaluate_config(base)
    for kw, match in [({"datasets": ["cuhk", "kitti"]}, "datasets"), ({"limit": 0}, "limit"),
                      ({"alpha": "abc"}, "alpha must be a number"), ({"average": "mean"}, "average"),
                      ({"synthetic": {"downscale": 0}}, "synthetic.downscale"),
                      ({"cuhk": {"root": "/no/such/dir"}}, "cuhk.root")]:
        with pytest.raises(ConfigError, match=match):
            cli.check_evaluate_config({**base, **kw})


def _entry_point(script: str, *overrides: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "JAX_PLATFORMS": "cpu"}
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(ROOT / "experiments" / script), *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_entry_point_error_is_one_line_naming_the_key(tmp_path):
    """alpha=abc: one line on stderr naming alpha, exit status 2, also in estimate.log; the
    traceback only with HYDRA_FULL_ERROR=1."""
    run_dir = tmp_path / "run"
    r = _entry_point("estimate.py", "alpha=abc", f"hydra.run.dir={run_dir}", "jax_cache=null")
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: alpha must be a number, got 'abc'"), r.stderr
    assert "alpha must be a number" in (run_dir / "estimate.log").read_text()
    r = _entry_point("estimate.py", "alpha=abc", f"hydra.run.dir={tmp_path / 'full'}", "jax_cache=null",
                     env_extra={"HYDRA_FULL_ERROR": "1"})
    assert r.returncode != 0 and "Traceback" in r.stderr and "ConfigError" in r.stderr


def test_train_entry_point_refuses_negative_steps(tmp_path):
    """train.steps=-5 exited 0 with an untrained model/ and a metrics.json."""
    run_dir = tmp_path / "run"
    r = _entry_point("train.py", "train.steps=-5", f"hydra.run.dir={run_dir}")
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [ln for ln in r.stderr.splitlines() if ln.strip()], r.stderr
    assert len(errors) == 1 and "train.steps must be an integer >= 1, got -5" in errors[0]
    assert not (run_dir / "model").exists() and not (run_dir / "metrics.json").exists()


@pytest.mark.parametrize("error, code", [(ConfigError("alpha must be a number"), 2),
                                         (atomic.DiskFullError(errno.ENOSPC, "disk full while writing 'x'"), 1),
                                         (OSError(errno.ENOSPC, "No space left on device"), 1)])
def test_cli_errors_print_one_line(capsys, monkeypatch, error, code):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as info:
        with cli.cli_errors():
            raise error
    assert info.value.code == code
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    if code == 1:
        assert "disk full" in err[0]


# ----------------------------------------------------------------------------- 3. integer images


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.int32, np.int64, np.uint32])
def test_integer_arrays_follow_one_rule_and_warn_when_dark(dtype):
    """Issue 13 case 3: uint16 / int16 holding 0..255 were divided by 65535 / 32767 silently,
    int32 by 255. Now every integer type is divided by its dtype's maximum, with a warning."""
    a = (np.arange(32 * 32 * 3) % 256).reshape(32, 32, 3).astype(dtype)
    with pytest.warns(UserWarning, match=r"uses .* % of its dtype's range .*astype\(np.uint8\)"):
        out = load_image(a)
    np.testing.assert_allclose(out, a.astype(np.float64) / np.iinfo(dtype).max, rtol=1e-6)


@pytest.mark.parametrize("a", [np.full((32, 32), 200, np.uint8), np.full((32, 32), 40000, np.uint16),
                               np.full((32, 32), 2**30, np.int32)])
def test_integer_arrays_using_their_range_do_not_warn(a):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = load_image(a)
    assert out[0, 0, 0] == pytest.approx(float(a.flat[0]) / np.iinfo(a.dtype).max, rel=1e-6)


# ----------------------------------------------------------------------------- 4. model integrity


@pytest.fixture(scope="module")
def tiny_model() -> DefocusModel:
    return init_model(ModelConfig(feature_set="D", hidden=(4, 4)), jax.random.key(0))


def test_flipped_bytes_in_a_saved_model_are_detected(tmp_path):
    """64 flipped bytes in the shipped model's parameter file used to load silently (weights up
    to 3e37, a different map)."""
    import shutil

    d = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL_DIR, d)
    data = max((p for p in (d / "params").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    b = bytearray(data.read_bytes())
    for i in range(64):
        b[len(b) // 2 + i] ^= 0xFF
    data.write_bytes(bytes(b))
    with pytest.raises(ValueError, match="corrupt: their SHA-256 does not match params_sha256"):
        load_model(d)


def test_changed_parameters_fail_the_checksum(tmp_path, tiny_model):
    """Parameters that decode fine but differ from what was saved (the silent case)."""
    import orbax.checkpoint as ocp

    d = save_model(tiny_model, tmp_path / "m")
    other = jax.tree_util.tree_map(lambda x: np.asarray(x) + np.float32(1e-3), tiny_model.params)
    import shutil

    shutil.rmtree(d / "params")
    with ocp.StandardCheckpointer() as c:
        c.save(d / "params", other)
    with pytest.raises(ValueError, match="SHA-256 does not match params_sha256"):
        load_model(d)


def test_parameter_shapes_are_checked_against_the_config(tmp_path, tiny_model):
    d = save_model(tiny_model, tmp_path / "m")
    meta = json.loads((d / "config.json").read_text())
    meta["config"]["hidden"] = [5, 4]
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"do not match config.json: \['classifier'\]\['fc1'\]\['bias'\] is \(4,\), "
                                         r"expected \(5,\)"):
        load_model(d)
    meta["config"]["feature_set"] = "B"
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"missing \[\"\['deep'\]"):
        load_model(d)


def test_model_without_checksum_loads_with_a_warning(tmp_path, tiny_model):
    d = save_model(tiny_model, tmp_path / "m")
    meta = json.loads((d / "config.json").read_text())
    del meta[CHECKSUM_KEY]
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="has no params_sha256"):
        m = load_model(d)
    assert tree_sha256(m.params) == tree_sha256(tiny_model.params)


def test_nonfinite_model_is_never_saved(tmp_path, tiny_model):
    bad = jax.tree_util.tree_map(lambda x: x.at[(0,) * x.ndim].set(np.nan), tiny_model.params)
    with pytest.raises(ValueError, match="NaN or infinite parameters"):
        save_model(DefocusModel(bad, tiny_model.config), tmp_path / "m")
    assert not (tmp_path / "m" / "config.json").exists()


def test_shipped_model_carries_a_matching_checksum():
    import orbax.checkpoint as ocp

    meta = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    with ocp.StandardCheckpointer() as c:
        raw = c.restore(DEFAULT_MODEL_DIR / "params")
    assert tree_sha256(raw) == meta[CHECKSUM_KEY]  # the stored files, bit for bit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model()


@pytest.mark.parametrize("value, match", [(np.nan, "1024 NaN or infinite weights"),
                                          (3e37, "weights up to 3e\\+37")])
def test_damaged_caffe_weights_are_refused(tmp_path, value, match):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_caffe import _random_weights, _write_model

    from dhde.model.caffe import import_caffe_model

    w = _random_weights(np.random.default_rng(0))
    w["fc1"][0][:8, :128] = value  # a damaged region of 1,024 values
    path = tmp_path / "m.caffemodel"
    _write_model(path, w)
    with pytest.raises(ValueError, match=rf"layer 'fc1' has .*{match}"):
        import_caffe_model(path)


# ----------------------------------------------------------------------------- 6. contrast floor


def _flat_noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    r = np.random.default_rng(seed)
    return (0.5 + r.integers(-1, 2, (h, w, 3)) / 255.0).astype(np.float32)


@pytest.mark.parametrize("shape", [(64, 80), (240, 320)])
def test_flat_image_with_1_grey_level_noise_has_no_edges(tiny_model, shape):
    img = _flat_noise(*shape)
    gray = img.max(-1)
    assert (np.asarray(scale_map(gray)) > 0).mean() > 0.1  # plain Canny: the noise is "edges"
    assert not np.asarray(scale_map(gray, floor=CONTRAST_FLOOR)).any()
    with pytest.raises(ValueError, match="no edges found.*below the contrast floor"):
        estimate_defocus(img, tiny_model)


@pytest.mark.parametrize("name", ["coffee", "camera", "astronaut", "chelsea"])
@pytest.mark.parametrize("gain", [1.0, 0.25])
def test_photographs_are_not_affected_by_the_contrast_floor(name, gain):
    import skimage.data

    img = load_image(getattr(skimage.data, name)())[::4, ::4] * gain  # small, and darkened 4x
    gray = img.max(-1)
    assert max_gradient(gray) > 1.5 * CONTRAST_FLOOR
    np.testing.assert_array_equal(np.asarray(scale_map(gray, floor=CONTRAST_FLOOR)), np.asarray(scale_map(gray)))


# ----------------------------------------------------------------------------- 7. full disk


def _fill_disk_on(monkeypatch, target: str, after: int) -> None:
    """Make the ``after``-th call of a writer write 4 KiB and then fail with ENOSPC, like a disk
    that fills up mid-file; later calls fail too."""
    import matplotlib.figure
    import PIL.Image

    calls = {"n": 0}

    def wrap(original, dest_index):
        def writer(*args, **kw):
            calls["n"] += 1
            if calls["n"] >= after:
                dest = args[dest_index]
                with open(dest, "wb") as f:
                    f.write(b"\0" * 4096)
                raise OSError(errno.ENOSPC, "No space left on device")
            return original(*args, **kw)
        return writer

    if target == "png":
        monkeypatch.setattr(PIL.Image.Image, "save", wrap(PIL.Image.Image.save, 1))
    elif target == "npy":
        monkeypatch.setattr(np, "save", wrap(np.save, 0))
    elif target == "figure":
        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", wrap(matplotlib.figure.Figure.savefig, 1))
    else:  # json (summary): Path.write_text
        monkeypatch.setattr(Path, "write_text", wrap(Path.write_text, 0))


@pytest.mark.parametrize("target, after", [("npy", 2), ("png", 3), ("figure", 1), ("json", 1)])
def test_full_disk_stops_with_one_message_and_no_partial_file(tmp_path, fake, monkeypatch, target, after):
    folder = tmp_path / "in"
    for k in range(3):
        _save(folder / f"p{k}.png", _img(k))
    out = tmp_path / "out"
    _fill_disk_on(monkeypatch, target, after)
    with pytest.raises(atomic.DiskFullError) as info:
        cli.run_estimate(_cfg(input=str(folder)), out)
    msg = str(info.value)
    assert "disk full while writing" in msg and "\n" not in msg
    monkeypatch.undo()
    _assert_no_partial_files(out)


def test_full_disk_in_an_application(tmp_path, fake, monkeypatch):
    folder = tmp_path / "in"
    for k in range(2):
        _save(folder / f"p{k}.png", _img(k))
    out = tmp_path / "out"
    _fill_disk_on(monkeypatch, "png", 2)
    with pytest.raises(atomic.DiskFullError):
        apps_cli.run_app("depth", _cfg(input=str(folder)), out)
    monkeypatch.undo()
    _assert_no_partial_files(out)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    f = tmp_path / "summary.json"
    atomic.write_json(f, {"a": 1})

    def half_then_fail(tmp):
        tmp.write_text('{"a": ')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(atomic.DiskFullError, match="summary.json"):
        atomic.write_with(f, half_then_fail)
    assert json.loads(f.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


# ----------------------------------------------------------------------------- 8. smaller items


@pytest.mark.parametrize("shape", [(0, 5), (5, 0, 3), (0, 0, 3), (0,)])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_zero_size_arrays_get_a_clear_message(shape, dtype):
    with pytest.raises(ValueError, match=r"image array is empty \(shape"):
        load_image(np.zeros(shape, dtype))


def test_gif_is_read_in_folders_and_files_alike(tmp_path):
    folder = tmp_path / "in"
    frames = [Image.fromarray((_img(k) * 255).astype(np.uint8)) for k in range(3)]
    folder.mkdir()
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    _save(folder / "b.png", _img(5))
    assert ".gif" in IMAGE_SUFFIXES
    assert [n for n, _ in cli.plan_inputs(str(folder))] == ["anim.gif", "b.png"]
    assert [n for n, _ in cli.plan_inputs(str(folder / "anim.gif"))] == ["anim.gif"]
    with pytest.warns(UserWarning, match="using frame 0 of 3"):
        img = load_image(folder / "anim.gif")
    assert img.shape == (H, W, 3)


def test_fewer_seeds_than_asked_are_reported(monkeypatch, tiny_model):
    def core(image, model, key, opts):
        res = fake_estimate(np.asarray(image))
        mask = np.asarray(res.mask).copy()
        mask[2, 2] = mask[3, 30] = True  # two seeds placed, off the edges
        return res._replace(mask=mask)

    monkeypatch.setattr(dhde.estimation.inference, "_run_core", core)
    with pytest.warns(UserWarning, match="options.seeds=200 asked but 2 seed points placed"):
        estimate_defocus(_img(0), tiny_model, seeds=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimate_defocus(_img(0), tiny_model, seeds=2)


def test_run_log_holds_the_per_image_lines(tmp_path, fake):
    folder = tmp_path / "in"
    _save(folder / "a.png", _img(0))
    (folder / "broken.png").write_bytes(b"not an image")
    log = tmp_path / "estimate.log"
    handler = logging.FileHandler(log)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        assert cli.run_estimate(_cfg(input=str(folder)), tmp_path / "out") == 1
    finally:
        root.removeHandler(handler)
        handler.close()
    text = log.read_text()
    assert "a.png: sigma" in text and "FAILED broken.png: ValueError" in text and "1/2 images done" in text


def test_non_ascii_paths_need_hydra_quoting_and_the_readme_says_so():
    from hydra import compose, initialize_config_dir
    from hydra.errors import OverrideParseException

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        with pytest.raises(OverrideParseException):
            compose("estimate", overrides=["input=/data/фото.jpg"])
        assert compose("estimate", overrides=['input="/data/фото.jpg"']).input == "/data/фото.jpg"
    readme = (ROOT / "README.md").read_text()
    assert "'input=\"/data/фото.jpg\"'" in readme


def test_gallery_refuses_inputs_that_would_share_a_figure(tmp_path):
    a = _save(tmp_path / "a" / "scene.png", _img(0))
    b = _save(tmp_path / "b" / "scene.jpg", _img(1))
    with pytest.raises(ConfigError, match="same gallery figure"):
        gallery_cli.run_gallery({"inputs": [str(a), str(b)]}, tmp_path / "gallery")
    assert not (tmp_path / "gallery").exists()


def test_every_shipped_config_passes_its_checks(tmp_path):
    """Controls: the up-front checks accept every config the repository ships."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dhde.training.config import check_train_config

    photo = str(_save(tmp_path / "p.png", _img(0)))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        def cfg(name, *overrides):
            return OmegaConf.to_container(compose(name, overrides=list(overrides)), resolve=True)

        for ablation in sorted(p.stem for p in (ROOT / "conf" / "ablation").glob("*.yaml")):
            check_train_config(cfg("train", f"+ablation={ablation}"))
        check_train_config(cfg("train", "+experiment=debug", "optimizer=caffe_sgd"))
        check_train_config(cfg("train", "data=folder", f"data.source=folder:{tmp_path}"))
        cli.check_common(cfg("estimate", f"input={photo}"))
        for app in apps_cli.APPS:
            c = cfg(app, f"input={photo}")
            apps_cli.app_params(app, c)
            cli.check_common(c)
        cli.check_evaluate_config(cfg("evaluate"))
