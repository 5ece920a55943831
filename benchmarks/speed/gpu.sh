#!/usr/bin/env bash
# The GPU measurements of RESULTS.md, in one call on a lent machine (its python3 has torch):
#   bash benchmarks/speed/gpu.sh    (results in benchmarks/speed/results/gpu.jsonl, copied to $OUT)
set -euo pipefail
export PYTHONPATH=src
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
python3 benchmarks/speed/run.py kinetics --tag gpu --device cuda --precision bf16 --channels-last --batch 64 256 --steps 8 --frames 3 --repeats 2
python3 benchmarks/speed/run.py kinetics --tag gpu --device cuda --batch 64 --steps 8 --frames 3 --repeats 2
python3 benchmarks/speed/run.py step --tag gpu --device cuda --repeats 2
python3 benchmarks/speed/run.py inference --tag gpu --device cuda --rows 2048 --repeats 3
if [ -n "${OUT:-}" ]; then cp benchmarks/speed/results/gpu.jsonl "$OUT/"; fi
python3 -m pytest -q -p no:cacheprovider -m "gpu or not slow" tests/test_gpu.py tests/test_resnet.py tests/test_train.py \
  tests/test_resume.py tests/test_methods.py 2>&1 | tail -3 || true
