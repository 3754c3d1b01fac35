#!/usr/bin/env bash
# The full seed recipe on real FER-2013 on a lent GPU (issue 4), prepared so that a session with a
# device spends its minutes training rather than setting up. On the CPU machine, first:
#
#   mkdir -p .device-data && cp ../shared/data/fer2013/fer2013-npy.tar.xz .device-data/
#
# (.device-data/ is git-ignored, so it travels only when named in the run tool's carry list).
# Then on the device, with carry [".device-data"] each time, as two calls of at most 10 minutes:
#
#   bash benchmarks/gpu_recipe.sh data basic vgg evaluate   # target: vgg's 200 epochs <= 5 min
#   bash benchmarks/gpu_recipe.sh data throughput
#
# A machine left idle is handed back within a minute and the next call starts bare, so each call
# brings everything it needs; a call cut short by its time limit loses its models.
# Every part writes its log, and the results/ files, under $OUT (default: ./device-out).
set -euo pipefail

OUT=${OUT:-device-out}
ARCHIVE=${ARCHIVE:-.device-data/fer2013-npy.tar.xz}
PYTHON=${PYTHON:-python3}
export PYTHONPATH=src
mkdir -p "$OUT/results"

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/recipe.log"; }

timed() {  # timed NAME COMMAND...: run it, keep its output, note its wall time
    local name=$1 started
    shift
    started=$(date +%s)
    log "start $name: $*"
    "$@" 2>&1 | tee "$OUT/$name.log"
    log "end $name: $(($(date +%s) - started)) s"
}

for part in "$@"; do
    case $part in
        data)
            # The archive holds exactly what `fer preprocess` makes of fer2013.csv.gz (checked array by
            # array); the CSV itself is too large to travel.
            mkdir -p data/processed
            timed data tar xJf "$ARCHIVE" -C data/processed
            {
                git rev-parse --short HEAD 2>/dev/null || echo "no git"
                nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
                "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
            } | tee "$OUT/machine.txt"
            ;;
        basic | vgg)
            timed "train_$part" "$PYTHON" -m ferkit train "$part"
            cp "metrics/${part}_train.json" "$OUT/results/"
            cp "plots/$part/train_curves.csv" "$OUT/results/${part}_train_curves.csv"
            ;;
        evaluate)
            timed evaluate "$PYTHON" -m ferkit evaluate
            cp metrics/basic.json metrics/vgg.json "$OUT/results/"
            ;;
        throughput)
            timed throughput "$PYTHON" benchmarks/train_throughput.py --devices cuda --data data/processed \
                --json "$OUT/results/train_throughput_cuda.json"
            ;;
        *)
            echo "gpu_recipe.sh: unknown part '$part' (parts: data basic vgg evaluate throughput)" >&2
            exit 2
            ;;
    esac
done
