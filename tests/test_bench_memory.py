"""benchmarks/bench_memory.py prints its table (tiny size, cheap stages) and its numbers add up."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_memory_prints_its_table():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_memory.py"), "--size", "40x48",
                          "--stages", "matting coefficients,multigrid setup"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(r"^\| ([a-z ]+) \| ([\d.]+) \| ([\d.]+) \|", out.stdout, re.M)}
    assert set(rows) == {"matting coefficients", "multigrid setup"}, out.stdout
    # 40x48 is one band: the per-window algebra holds tens of planes of temporaries
    assert float(rows["matting coefficients"][1]) > 10, out.stdout
