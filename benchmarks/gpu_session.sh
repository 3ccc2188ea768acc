#!/usr/bin/env bash
# The GPU measurements of training in one command, for a lent GPU machine (its own python3 with PyTorch; nothing
# can be downloaded there). Run from the repository root:
#   bash benchmarks/gpu_session.sh            (figures and logs under $OUT, default /tmp/fvmatch-gpu)
# Wheels of the packages that machine lacks go in .whl/ (ignored by git; carried with the call), for its Python 3.12:
#   for p in facenet-pytorch==2.5.3 soundfile cffi silero-vad; do .venv/bin/python -m pip download --no-deps \
#     --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $p; done
# fvmatch is copied into a site folder as the installed layout has it (models/ and training/ inside).
# Stages, each under its own time limit, figures written as they come:
#   1. a synthetic corpus of $IDENTITIES identities generated and prepared on the CPUs (nothing else running, so
#      that the timings after it have the host to themselves);
#   2. the plain and trainer's steps on random tensors, eager and as a CUDA graph, where an eager step's time goes,
#      and the graph's step against eager ones (benchmarks/train_throughput.py --parts steps graph);
#   3. the full training loops on that corpus: DataLoader, batches in device memory, eager and CUDA graph;
#   4. the training runs: wang2020 and small side by side, held-out figures (benchmarks/train_run.py);
#   5. torch.compile of the trainer's step, if enough time is left.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/fvmatch-gpu}
IDENTITIES=${IDENTITIES:-2000}
EPOCHS=${EPOCHS:-12}
PASSES=${PASSES:-12}
BUDGET=${BUDGET:-540}  # seconds for the whole script
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # (DEVICE=cpu CONFIG=small BATCH=16 IDENTITIES=40 EPOCHS=1 PASSES=1: a CPU rehearsal)
CONFIG=${CONFIG:-wang2020}
BATCH=${BATCH:-256}
WHEELS=${WHEELS:-.whl}
RUNS=${RUNS:-wang2020 small small-default}
mkdir -p "$OUT"
log() { echo "[$(date +%T) +${SECONDS}s] $*"; }

mkdir -p /tmp/site
if [ -d "$WHEELS" ]; then
  $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
    || { log "wheels did not install"; exit 1; }
fi
rm -rf /tmp/site/fvmatch && cp -r fvmatch /tmp/site/fvmatch && cp -r models /tmp/site/fvmatch/models \
  && cp -r training /tmp/site/fvmatch/training
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt" \
  || log "no nvidia-smi"
$PYTHON -P -c "import torch, torchaudio, facenet_pytorch, soundfile, silero_vad, fvmatch.training.trainer as t; \
print('torch', torch.__version__, 'torchaudio', torchaudio.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(), t.__file__)" \
  || { log "imports failed"; exit 1; }

log "stage 1: corpus of $IDENTITIES identities"
WORK=${WORK:-/tmp/fvmatch-work}
timeout 240 $PYTHON benchmarks/train_run.py --prepare-only --identities "$IDENTITIES" --work "$WORK" --workers 16 \
  > "$OUT/corpus.log" 2>&1
log "corpus exit $?: $(tail -1 "$OUT/corpus.log")"
log "stage 2: steps on random tensors, eager and CUDA graph; the graph against eager"
timeout 150 $PYTHON benchmarks/train_throughput.py --device "$DEVICE" --config "$CONFIG" --batch-size "$BATCH" \
  --parts steps graph --json "$OUT/throughput_steps.json" 2>&1 | grep -v Warning
if [ -f "$WORK/cache/prepare.json" ]; then
  log "stage 3: full loops"
  timeout 150 $PYTHON benchmarks/train_throughput.py --device "$DEVICE" --config "$CONFIG" --batch-size "$BATCH" \
    --parts full --cache "$WORK/cache" --workers 12 --json "$OUT/throughput_full.json" 2>&1 | grep -v Warning
  log "stage 4: training runs"
  timeout $((BUDGET - SECONDS > 60 ? BUDGET - SECONDS : 60)) $PYTHON benchmarks/train_run.py \
    --device "$DEVICE" --cache "$WORK/cache" --work "$WORK/runs" --epochs "$EPOCHS" --passes "$PASSES" --workers 12 \
    --batch-size "$BATCH" --runs $RUNS \
    --json "$OUT/train_run.json" 2>&1 | grep -v Warning
fi
LEFT=$((BUDGET - SECONDS))
if [ "$LEFT" -gt 150 ]; then  # (its compile alone took 98 s on an H200)
  log "stage 5: torch.compile ($LEFT s left)"
  timeout "$LEFT" $PYTHON benchmarks/train_throughput.py --device "$DEVICE" --config "$CONFIG" --batch-size "$BATCH" \
    --parts compile --steps 20 --json "$OUT/throughput_compile.json" 2>&1 | grep -v Warning
fi
log "done"
