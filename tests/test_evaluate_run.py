"""Evaluation entry-point logic (dhde.evaluation.run) on fake CUHK / RTF layouts."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io
from PIL import Image
from scipy import ndimage

from dhde.evaluation import run
from dhde.model.network import DefocusModel, ModelConfig, init_model

H, W = 64, 80
OPTIONS = {"preconditioner": "jacobi", "maxiter": 20, "chunk": 256}
TABLE = np.array([[0.3, 0.5], [0.5, 0.75], [0.65, 1.0], [0.875, 1.5], [1.125, 2.0], [1.6, 3.0]])
ROOT = Path(__file__).resolve().parents[1]


def random_model(seed: int = 0) -> DefocusModel:
    """Random LeCun-normal model; shapes from ``jax.eval_shape`` (Flax's eager init is slow)."""
    config = ModelConfig()
    shapes = jax.eval_shape(lambda: init_model(config, jax.random.key(seed)).params)
    rng = np.random.default_rng(seed)

    def draw(s):
        if len(s.shape) == 1:
            return jnp.zeros(s.shape, jnp.float32)
        return jnp.asarray(rng.normal(0.0, np.prod(s.shape[:-1]) ** -0.5, s.shape), jnp.float32)

    return DefocusModel(params=jax.tree_util.tree_map(draw, shapes), config=config)


def _scene(rng) -> tuple[np.ndarray, np.ndarray]:
    """Colour blocks, right half blurred: (uint8 (H, W, 3), blurred mask bool (H, W))."""
    blocks = rng.random((H // 8 + 1, W // 8 + 1, 3))
    img = np.repeat(np.repeat(blocks, 8, 0), 8, 1)[:H, :W]
    img[:, W // 2:] = ndimage.gaussian_filter(img, (2.0, 2.0, 0))[:, W // 2:]
    mask = np.zeros((H, W), bool)
    mask[:, W // 2:] = True
    return np.round(img * 255).astype(np.uint8), mask


@pytest.fixture
def fake_data(tmp_path, rng):
    cuhk = tmp_path / "cuhk"
    (cuhk / "image").mkdir(parents=True)
    (cuhk / "gt").mkdir()
    for stem in ("out_of_focus0001", "out_of_focus0002"):
        img, mask = _scene(rng)
        Image.fromarray(img).save(cuhk / "image" / f"{stem}.jpg", quality=95)
        Image.fromarray(mask.astype(np.uint8) * 255).save(cuhk / "gt" / f"{stem}.png")
    rtf = tmp_path / "rtf"
    rtf.mkdir()
    img, mask = _scene(rng)
    Image.fromarray(img).save(rtf / "image_01.png")
    scipy.io.savemat(rtf / "map_01.mat", {"blurMap": np.where(mask, 2.0, 0.5)})
    scipy.io.savemat(rtf / "convertion.mat", {"convertion": TABLE})
    return cuhk, rtf


def _cfg(cuhk_root, rtf_root, **kw) -> dict:
    return {"datasets": ["cuhk", "rtf", "synthetic", "synthetic_wide"], "methods": ["dhde", "dhde_prob", "laplacian"],
            "model": None, "loader": "tfds", "data_dir": None, "limit": None, "max_panels": 1, "size_multiple": 32,
            "cuhk": {"root": str(cuhk_root), "pattern": "out_of_focus*"}, "rtf": {"root": str(rtf_root)},
            "synthetic": {"focus": "near", "downscale": 8}, "synthetic_wide": {"focus": "near", "downscale": 8},
            "options": dict(OPTIONS), **kw}


def test_run_evaluation_writes_report(tmp_path, fake_data):
    cuhk, rtf = fake_data
    out = tmp_path / "out"
    # every image pads to 64x96 (size_multiple 32): one compilation of the estimator
    results = run.run_evaluation(_cfg(cuhk, rtf, model=random_model(2)), out)
    assert set(results) == {f"{d} / {m}" for d in run.DATASETS for m in run.METHODS
                            if d == "cuhk" or m not in run.DETECTION_ONLY}
    for m in run.METHODS:
        r = results[f"cuhk / {m}"]
        assert r["n_images"] == 2
        for k in ("accuracy", "best_accuracy", "max_f", "mae", "f_05", "iou"):
            assert 0.0 <= r[k] <= 1.0, (m, k)
        assert r["best_accuracy"] >= max(r["accuracy"], 0.5) - 1e-12  # sweep includes all-blurred
        assert r["precision"].shape == r["recall"].shape == (257,)
        assert ("sigma_max_f" in r) == (m == "dhde")  # absolute sigma thresholds: sigma maps only
        if m in run.DETECTION_ONLY:
            continue
        for d in ("rtf", "synthetic", "synthetic_wide"):
            assert results[f"{d} / {m}"]["n_images"] == 1 and results[f"{d} / {m}"]["sigma_mae"] >= 0
            # the error budget is dhde's only (the baseline has no sparse points)
            assert ("oracle_mae" in results[f"{d} / {m}"]) == (m == "dhde")
    assert 0 <= results["synthetic / dhde"]["far_fraction"] <= 1
    # the wide scene is the same rendering with sigma up to 6 px: a larger error for the same map
    assert results["synthetic_wide / laplacian"]["sigma_mae"] > results["synthetic / laplacian"]["sigma_mae"]
    report = (out / "report.md").read_text()
    assert "| cuhk / dhde |" in report and "| synthetic / laplacian |" in report
    assert "sigma MAE (px)" in report and "max F" in report and "oracle_mae" in report
    with Image.open(out / "precision_recall.png") as im:
        assert im.format == "PNG" and min(im.size) > 100
    for d, name in [("cuhk", "out_of_focus0001"), ("rtf", "image_01"), ("synthetic", "stereo_motorcycle_near")]:
        for m in run.METHODS:
            assert (out / "panels" / d / f"{name}_{m}.png").is_file() == (d == "cuhk" or m not in run.DETECTION_ONLY)
    assert not (out / "panels" / "cuhk" / "out_of_focus0002_dhde.png").exists()  # max_panels 1
    saved = json.loads((out / "results.json").read_text())
    assert saved["failures"] == []
    assert set(saved["per_image"]["cuhk / dhde"]) == {"out_of_focus0001", "out_of_focus0002"}
    rtf_mae = saved["summary"]["rtf / laplacian"]["sigma_mae"]
    assert rtf_mae == pytest.approx(results["rtf / laplacian"]["sigma_mae"])
    assert (out / "tfds" / "dhde_cuhk").is_dir()  # prepared in place under the output dir


def test_tfds_and_direct_loaders_agree(tmp_path, fake_data):
    cuhk, rtf = fake_data
    kw = {"methods": ["laplacian"], "datasets": ["cuhk", "rtf"], "max_panels": 0}
    a = run.run_evaluation(_cfg(cuhk, rtf, loader="tfds", **kw), tmp_path / "a")
    b = run.run_evaluation(_cfg(cuhk, rtf, loader="direct", **kw), tmp_path / "b")
    for k in a:
        for m in ("accuracy", "best_accuracy", "max_f", "mae", "sigma_mae"):
            if m in a[k]:
                assert a[k][m] == pytest.approx(b[k][m], abs=1e-9), (k, m)
    # the RTF ground truth is converted from disk radius to sigma with the table
    (ex,) = run.load_examples("rtf", root=rtf, loader="direct")
    np.testing.assert_allclose(np.unique(ex["sigma_map"]), [0.3, 1.125], rtol=1e-6)


def test_perfect_and_failing_methods(tmp_path, fake_data):
    cuhk, _ = fake_data
    examples = list(run.load_examples("cuhk", root=cuhk, loader="direct"))
    masks = {e["name"]: e["mask"] for e in examples}
    calls = []

    def oracle(image):  # the ground truth itself, as a map
        name = examples[len(calls)]["name"]
        calls.append(name)
        return masks[name].astype(np.float32)

    def flaky(image):
        if len(calls) == 1:
            raise ValueError("no edges found in the image")
        return np.full(image.shape[:2], np.nan, np.float32)

    methods = {"oracle": oracle, "flaky": flaky}
    summ, per, fails = run.evaluate_dataset("cuhk", examples, methods, panel_dir=tmp_path / "p",
                                            progress=False)
    r = summ["oracle"]
    assert r["accuracy"] == r["best_accuracy"] == r["max_f"] == 1.0 and r["mae"] == 0.0
    assert r["f_05"] == r["iou"] == 1.0
    assert summ["flaky"] == {"n_images": 0}
    assert [f["error"].split(":")[0] for f in fails] == ["ValueError", "ValueError"]
    assert "no edges" in fails[0]["error"] and "NaN" in fails[1]["error"]
    assert (tmp_path / "p" / "out_of_focus0001_oracle.png").is_file()

    ex = {"image": np.zeros((H, W, 3), np.float32), "name": "s",
          "sigma_map": np.linspace(0.5, 2.0, H * W, dtype=np.float32).reshape(H, W)}
    summ, _, fails = run.evaluate_dataset(
        "synthetic", [ex], {"dhde": lambda im: ex["sigma_map"], "score": lambda im: -ex["sigma_map"],
                            "wrong_size": lambda im: np.ones((3, 3), np.float32)}, progress=False)
    assert summ["dhde"]["sigma_mae"] == 0.0
    # a score is min-max rescaled onto 0.5..2.0 before the sigma MAE: reversed map, mean error 0.75
    assert summ["score"]["sigma_mae"] == pytest.approx(0.75, abs=1e-3)
    assert "returned a (3, 3) map" in fails[0]["error"]


def test_bad_configurations(tmp_path, fake_data, monkeypatch):
    cuhk, rtf = fake_data
    with pytest.raises(ValueError, match="unknown data sets"):
        run.run_evaluation(_cfg(cuhk, rtf, datasets=["kodak"]), tmp_path / "o")
    with pytest.raises(ValueError, match="loader"):
        run.run_evaluation(_cfg(cuhk, rtf, loader="zip"), tmp_path / "o")
    with pytest.raises(ValueError, match="method must be one of"):
        run.run_evaluation(_cfg(cuhk, rtf, methods=["dhde", "sobel"]), tmp_path / "o")
    with pytest.raises(ValueError, match="not found"):
        run.run_evaluation(_cfg(cuhk, rtf, datasets=["cuhk"], cuhk={"root": str(tmp_path / "no")}),
                           tmp_path / "o")
    monkeypatch.setattr(run, "default_root", lambda name: None)
    with pytest.raises(ValueError, match="nothing was evaluated"):
        run.run_evaluation(_cfg(cuhk, rtf, datasets=["cuhk", "rtf"], cuhk={}, rtf={}), tmp_path / "o")
    with pytest.raises(ValueError, match="limit"):
        next(run.load_examples("synthetic", loader="direct", limit=0))


def test_evaluate_config_composes():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("evaluate", overrides=["datasets=[cuhk]", "cuhk.root=/data/cuhk"])
    assert list(cfg.datasets) == ["cuhk"] and cfg.cuhk.root == "/data/cuhk"
    assert cfg.alpha == 0.3 and cfg.beta2 == 0.3 and list(cfg.methods) == list(run.METHODS)


def test_target_lines():
    lines = run.target_lines({"synthetic_wide / dhde": {"sigma_mae": 0.5}, "cuhk / dhde": {"accuracy": 0.9},
                              "cuhk / dhde_prob": {"mae": 0.2}})
    assert len(lines) == 3
    assert "sigma_mae <= 0.6: 0.5000 -> met" in lines[0]
    assert "accuracy >= 0.93: 0.9000 -> NOT met" in lines[1] and "NOT met" in lines[2]
    assert run.target_lines({}) == []
