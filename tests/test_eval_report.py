"""Markdown report and figures (Agg, written to tmp_path)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dhde.evaluation import report as R
from dhde.evaluation.pr_curves import evaluate_blur_detection


def test_write_report(tmp_path, rng):
    maps = [rng.random((8, 9)) for _ in range(2)]
    gts = [rng.random((8, 9)) > 0.5 for _ in range(2)]
    res = {"baseline": evaluate_blur_detection(maps, gts, n_thresholds=16),
           "constant": {"sigma_mae": 0.49, "n_images": 1, "extra": 2.5}}
    md = R.write_report(res, tmp_path / "out", title="T", notes="a note")
    text = md.read_text()
    lines = text.splitlines()
    assert lines[0] == "# T"
    header = next(line for line in lines if line.startswith("| method"))
    assert header.split(" | ")[1:4] == ["accuracy (alpha 0.3)", "best accuracy", "max F (beta^2 0.3)"]
    row = next(line for line in lines if line.startswith("| baseline"))
    assert f"{res['baseline']['accuracy']:.4f}" in row and f"{res['baseline']['max_f']:.4f}" in row
    const = next(line for line in lines if line.startswith("| constant"))
    assert "0.4900" in const and "| 1 |" in const and "2.5000" in const
    assert "a note" in text and "precision_recall.png" in text
    with Image.open(tmp_path / "out" / "precision_recall.png") as im:
        assert im.format == "PNG" and im.size[0] > 100


def test_write_report_without_curves_and_errors(tmp_path):
    R.write_report({"m": {"sigma_mae": 0.4}}, tmp_path)
    assert not (tmp_path / "precision_recall.png").exists()
    with pytest.raises(ValueError):
        R.write_report({}, tmp_path)
    with pytest.raises(TypeError):
        R.write_report({"m": 0.4}, tmp_path)


def test_side_by_side_panel(tmp_path, rng):
    img = rng.random((20, 30, 3)).astype(np.float32)
    d = rng.random((20, 30)).astype(np.float32)
    gt = d > 0.5
    p = R.side_by_side_panel(img, d, None, gt, tmp_path / "a" / "p.png", title="x")
    with Image.open(p) as im:
        assert im.format == "PNG" and im.size[0] > 3 * im.size[1]
    R.side_by_side_panel((img * 255).astype(np.uint8), d, gt, d * 2, tmp_path / "q.png")  # sigma gt
    R.side_by_side_panel(img, d, None, None, tmp_path / "r.png")
    with pytest.raises(ValueError, match="match"):
        R.side_by_side_panel(img, d[:5], None, gt, tmp_path / "s.png")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        R.side_by_side_panel(img[..., 0], d, None, gt, tmp_path / "s.png")
