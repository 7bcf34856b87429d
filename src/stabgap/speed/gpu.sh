#!/usr/bin/env bash
# The GPU checks and measurements of the ResNet half, one script for a short lease (about 5
# minutes), in prioritised parts; each part writes its output to $OUT before the next starts:
#  1. the environment: torch and the GPU;
#  2. the CUDA tests (batching, checkpoints, a ResNet run and a ResNet batch, the layouts);
#  3. Split CIFAR-10 at full length under the authors' v1 protocol on the JPEG data
#     (configs/cifar10_jpeg_gpu.yaml: the 4 methods, seed 42, one batch; task 1 evaluated every
#     iteration for the first 50 of each context, every 5th elsewhere), through `python -m stabgap
#     train` as the workflow's rule runs it, then its metrics and its curves against the paper's;
#  4. timed slices with the harness: Split CIFAR-10 (JPEG) and Split mini-ImageNet (synthetic
#     84×84), contexts 1 and 5, single and as a batch of 5, fp32 and TF32, and bf16 evaluation;
#  5. the cost model's prediction for config.yaml from the measured rates, per precision and scope.
# Prepare here first: bash src/stabgap/speed/gpu_prepare.sh <folder of CIFAR-10-images.tar.xz> (fills .gpu/), then on
# the GPU machine, from the repository root, carrying .gpu:  OUT=$OUT bash src/stabgap/speed/gpu.sh
# Rehearse on a CPU first (tiny settings, the same commands): bash src/stabgap/speed/gpu.sh --cpu-check
set -u
CHECK=0; [ "${1:-}" = "--cpu-check" ] && CHECK=1
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
G=.gpu
export PYTHONUNBUFFERED=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" STABGAP_DATA_ROOT="$PWD/$G/data"
if [ $CHECK = 0 ]; then  # what the GPU machine lacks, from the carried wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $G/whl/*.whl \
    && export PYTHONPATH="src:/tmp/site"
fi
DEV=cuda; ITERS=20; REF=""; [ $CHECK = 1 ] && DEV=cpu && ITERS=2 && REF=--no-reference
[ -d $G/data/cifar10/cifar-10-batches-py ] || (cd $G && python3 make_cifar10_batches.py data/cifar10 > /dev/null)

# 1. the environment
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')"
} > "$OUT/1_env.txt" 2>&1; cat "$OUT/1_env.txt"

# 2. the CUDA tests (skipped, not failed, without CUDA)
timeout 150 python3 -m pytest -q -rs -p no:cacheprovider tests/test_batched.py tests/test_train.py -k "cuda" \
  > "$OUT/2_cuda_tests.txt" 2>&1; tail -5 "$OUT/2_cuda_tests.txt"

# 3. Split CIFAR-10 at full length (the rehearsal: 4 iterations per context, 2 contexts, on the CPU)
timeout $([ $CHECK = 1 ] && echo 900 || echo 240) python3 -m stabgap.speed.gpu_run --config configs/cifar10_jpeg_gpu.yaml --out "$G/run" \
  $([ $CHECK = 1 ] && echo --check) > "$OUT/3_full_length.txt" 2>&1; tail -30 "$OUT/3_full_length.txt"
cp $G/run/reproduction/curves_split_cifar10.png "$OUT/" 2>/dev/null

# 4. timed slices
B="timeout 90 python3 -m stabgap.speed --device $DEV --threads 4 --data-root $G/data --config config.yaml --iters $ITERS"
{ python3 -m stabgap.speed --help > /dev/null && echo "| $(python3 -c 'from stabgap.speed.harness import COLUMNS; print(" | ".join(COLUMNS))') |"
  for bench in split_cifar10 split_miniimagenet; do
    for ctx in 1 5; do
      for prec in fp32 tf32; do
        $B --benchmark $bench --context $ctx --precision $prec $REF 2>/dev/null
        $B --benchmark $bench --context $ctx --precision $prec --seeds 5 --mode batched --no-reference 2>/dev/null
      done
      $B --benchmark $bench --context $ctx --precision tf32 --bf16 --no-reference 2>/dev/null
    done
  done
} > "$OUT/4_slices.md"; cat "$OUT/4_slices.md"

# 5. the cost model's prediction from the measured rates
python3 -m stabgap.speed.gpu_cost "$OUT/4_slices.md" --config config.yaml > "$OUT/5_cost.md" 2>&1; cat "$OUT/5_cost.md"
