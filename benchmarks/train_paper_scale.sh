#!/usr/bin/env bash
# Paper-scale training on one GPU from a compact image bundle (issue: generalisation, item 4).
#
#   python experiments/make_bundle.py data=debian out=bundle     # here, where the packages are
#   bash benchmarks/train_paper_scale.sh bundle outputs/paper    # on the GPU machine
#
# Builds ~1.8M patches from the bundle on that machine (data.downscale=1: the bundle is already
# downscaled), then trains B/separate at batch 1024 for 100k steps (~100M patches, the paper's
# 800k x 128), checkpointing every 5k steps: a killed run resumes with the same command.
# Tiny CPU smoke run (what the test does): STEPS=4 BATCH=8 PER_SCALE=3 EVAL=2 bash ... 
set -euo pipefail
BUNDLE=${1:?usage: train_paper_scale.sh BUNDLE_DIR [OUT_DIR]}
OUT=${2:-outputs/paper_scale}
STEPS=${STEPS:-100000}
BATCH=${BATCH:-1024}
PER_SCALE=${PER_SCALE:-2000}
EVAL=${EVAL:-5000}
[ -f "$BUNDLE/manifest.json" ] || { echo "no bundle at $BUNDLE (make one with experiments/make_bundle.py)" >&2; exit 2; }
BUNDLE=$(cd "$BUNDLE" && pwd)
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
DATA_DIR=${DATA_DIR:-$OUT/tfds}
cd "$(dirname "$0")/.."
python -c "import jax; print('devices:', jax.devices())"
python experiments/train.py data=debian "data.source=folders:$BUNDLE" data.downscale=1 \
  data.phases=false data.max_per_scale="$PER_SCALE" data.screen=true "data.data_dir=$DATA_DIR" \
  train.steps="$STEPS" train.batch_size="$BATCH" train.eval_every="$EVAL" train.log_every="$EVAL" \
  "hydra.run.dir=$OUT"
