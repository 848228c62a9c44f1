#!/usr/bin/env bash
# One short accelerator check (issue 15): estimate time per 640x480 image (first call and steady
# state), one 12 MP image, propagation, and training patches/s at batch 1024 and 4096.
# Stops after 8 minutes whatever happens; prints a table. On CPU use: python benchmarks/device_check.py --tiny
set -euo pipefail
cd "$(dirname "$0")/.."
timeout 480 python benchmarks/device_check.py "$@"
