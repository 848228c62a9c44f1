"""benchmarks/device_check.py runs unchanged on CPU with tiny sizes and prints its whole table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_device_check_runs_on_cpu_with_tiny_sizes():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--tiny"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    for row in ("estimate 80x64, first call (s)", "estimate 80x64, steady (ms", "propagation 80x64",
                "estimate 80x64 (0.01 MP), one call", "training B/separate, batch 16 (patches/s)",
                "peak RSS"):
        assert row in text, f"missing row {row!r} in:\n{text}"
    assert "| measure | value | goal on one H100/H200 |" in text
