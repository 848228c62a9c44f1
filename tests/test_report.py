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
    text = (sweep / "table1.md").read_text()
    assert text.endswith(R.markdown_table(R.table_rows(R.collect_metrics(sweep))))
    assert text.startswith(R.summary_table(R.summary_rows(R.table_rows(R.collect_metrics(sweep)))))
    assert (sweep / "table1.png").stat().st_size > 1000
    assert "94.16" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert mod.main([str(empty)]) == 2
    assert "no metrics.json" in capsys.readouterr().err


def _history(path, vals):
    path.write_text("\n".join(json.dumps({"step": 1000 * (i + 1), "val_tolerance_accuracy": v})
                              for i, v in enumerate(vals)) + "\n{trunc")


def test_plateau_from_history(tmp_path):
    h = tmp_path / "history.jsonl"
    _history(h, [0.5, 0.6, 0.62, 0.625])  # halves: best 0.6 then 0.625 -> +0.025, still rising
    p = R.plateau(h)
    assert p["val_gain_second_half"] == pytest.approx(0.025) and p["converged"] is False
    assert p["val_final"] == 0.625
    _history(h, [0.5, 0.64, 0.63, 0.645, 0.64])  # 2 | 3 evaluations: 0.645 - 0.64 -> flat
    assert R.plateau(h)["converged"] is True
    _history(h, [0.5, 0.6, 0.7])  # too short to judge
    assert R.plateau(h) == {"val_final": None, "val_gain_second_half": None, "converged": None}
    assert R.plateau(tmp_path / "missing.jsonl")["converged"] is None


def _seeded_sweep(root, accs):
    for i, (fs, tol, curve) in enumerate(accs):
        d = root / f"{i}_{fs}"
        d.mkdir(parents=True)
        m = _metrics(fs, "separate", tol)
        m["seed"] = i % 2
        (d / "metrics.json").write_text(json.dumps(m))
        if curve is not None:
            _history(d / "history.jsonl", curve)
    return R.summary_rows(R.table_rows(R.collect_metrics(root)))


def test_summary_pools_seeds_and_checks_the_paper_order(tmp_path):
    flat, rising = [0.5, 0.6, 0.6, 0.6], [0.3, 0.4, 0.5, 0.6]
    order = [("D", 0.3), ("S", 0.4), ("G", 0.5), ("D+G+S", 0.6), ("C", 0.7)]
    accs = [(fs, a, flat) for fs, a in order] + [("B", 0.80, flat), ("D+G+S+C", 0.84, rising)]
    summary = _seeded_sweep(tmp_path / "a", accs)
    assert [r["feature_set"] for r in summary] == ["D", "G", "S", "D+G+S", "C", "B"]  # the table's row order
    b = summary[-1]
    assert b["runs"] == 2 and b["tolerance_accuracy"] == pytest.approx(82.0)
    assert (b["min"], b["max"]) == (pytest.approx(80.0), pytest.approx(84.0))
    assert b["converged"] is False and summary[0]["converged"] is True and b["paper"] == 94.16
    assert R.ordering_check(summary) == (True, [])
    text = R.summary_table(summary)
    assert "holds." in text and "80.00 - 84.00" in text and "no (still rising)" in text
    # G above H breaks the order, and the line names both means
    swapped = [(fs, 0.65 if fs == "G" else a, None) for fs, a in order] + [("B", 0.8, None)]
    summary = _seeded_sweep(tmp_path / "b", swapped)
    holds, why = R.ordering_check(summary)
    assert holds is False and why == ["G (65.00 %) is not below H (60.00 %)"]
    assert summary[0]["converged"] is None and "does not hold" in R.summary_table(summary)
    # a missing row: the check cannot be made
    holds, why = R.ordering_check(summary[:-1])
    assert holds is None and "B" in why[0]
