"""Table-1 report from fake metrics.json files."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dhde.training import report as R

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "report.py"

RUNS = {  # run folder -> (feature set, encoding, tolerance accuracy)
    "3_B_shared": ("B", "shared", 0.12),
    "0_D_separate": ("D", "separate", 0.40),
    "sub/5_B_separate": ("D+G+S+C", "separate", 0.9316),
    "7_D+G_separate": ("D+G", "separate", 0.5),
}


def _metrics(fs, enc, tol):
    return {"feature_set": fs, "encoding": enc, "tolerance_accuracy": tol, "exact_accuracy": tol / 2,
            "tolerance_accuracy_large": tol - 0.01, "tolerance_accuracy_small": tol + 0.01,
            "exact_accuracy_large": tol / 3, "exact_accuracy_small": tol / 4, "count": 10,
            "confusion": [[0] * 11] * 11}


@pytest.fixture
def sweep(tmp_path):
    for run, (fs, enc, tol) in RUNS.items():
        d = tmp_path / run
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps(_metrics(fs, enc, tol)))
    (tmp_path / "8_crashed").mkdir()
    (tmp_path / "8_crashed" / "metrics.json").write_text("{trunc")
    (tmp_path / "9_other").mkdir()
    (tmp_path / "9_other" / "metrics.json").write_text(json.dumps({"steps": 3}))
    return tmp_path


def test_collect_skips_broken_files(sweep, capsys):
    res = R.collect_metrics(sweep)
    assert sorted(m["run"] for m in res) == sorted(RUNS)
    out = capsys.readouterr().out
    assert "8_crashed" in out and "9_other" in out
    with pytest.raises(ValueError, match="not a directory"):
        R.collect_metrics(sweep / "nope")


def test_rows_in_paper_order_with_paper_numbers(sweep):
    rows = R.table_rows(R.collect_metrics(sweep))
    assert [r["run"] for r in rows] == ["0_D_separate", "sub/5_B_separate", "3_B_shared", "7_D+G_separate"]
    assert [r["paper"] for r in rows] == [38.15, 94.16, "does not converge", None]
    for r in rows:
        fs, enc, tol = RUNS[r["run"]]
        assert r["tolerance_accuracy"] == pytest.approx(100 * tol)
        assert r["exact_accuracy_small"] == pytest.approx(100 * tol / 4)
    assert R.paper_value("H", "separate") == 71.49 and R.paper_value("D+G+S", "separate") == 71.49
    assert R.paper_value("B", "single_scale") == 91.00 and R.paper_value("X", "separate") is None
    assert R.RANDOM_GUESS == pytest.approx(9.09, abs=5e-3)
    r = R.table_rows([{"feature_set": "C", "encoding": "separate", "tolerance_accuracy": 0.5}])[0]
    assert math.isnan(r["exact_accuracy"]) and r["paper"] == 89.38


def test_markdown_table(sweep):
    rows = R.table_rows(R.collect_metrics(sweep))
    text = R.markdown_table(rows)
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head[:4] == ["feature set", "encoding", "tolerance acc. (%)", "exact acc. (%)"]
    assert "paper (%)" in head and "tol. large (%)" in head and "tol. small (%)" in head
    body = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    assert len(body) == len(RUNS) and all(len(b) == len(head) for b in body)
    col = {h: i for i, h in enumerate(head)}
    b = body[1]  # D+G+S+C / separate: 93.16 vs 94.16
    assert b[col["feature set"]] == "D+G+S+C" and float(b[col["tolerance acc. (%)"]]) == 93.16
    assert float(b[col["paper (%)"]]) == 94.16 and b[col["ours - paper"]] == "-1.00"
    assert float(b[col["exact acc. (%)"]]) == pytest.approx(46.58, abs=0.006)
    assert body[2][col["paper (%)"]] == "does not converge" and body[2][col["ours - paper"]] == "-"
    assert body[3][col["paper (%)"]] == "-"
    assert "9.09" in text


def test_bar_chart_png(sweep, tmp_path):
    rows = R.table_rows(R.collect_metrics(sweep))
    p = R.bar_chart(rows, tmp_path / "out" / "t.png")
    img = np.asarray(Image.open(p).convert("RGB"))
    assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0


def test_script_writes_table_and_chart(sweep, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("report_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(sweep)]) == 0
    assert (sweep / "table1.md").read_text() == R.markdown_table(R.table_rows(R.collect_metrics(sweep)))
    assert (sweep / "table1.png").stat().st_size > 1000
    assert "94.16" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert mod.main([str(empty)]) == 2
    assert "no metrics.json" in capsys.readouterr().err
