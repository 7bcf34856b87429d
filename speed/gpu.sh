#!/usr/bin/env bash
# The GPU checks and measurements, as one script for a short lease (about 8 minutes on an H200):
#  1. the CUDA tests (batching, checkpoints, the ResNet path);
#  2. the MLP rows of speed/NOTES.md (one run; 20 runs batched and one after another);
#  3. timed slices of Split CIFAR-10 (the JPEG look-alike) and Split mini-ImageNet (synthetic 84x84):
#     single and as a batch of 5, at the start (context 1) and the end (context 5) of the stream;
#  4. one Split CIFAR-10 run at full length with clean evaluation every 10 iterations on the JPEG
#     data (configs/cifar10_jpeg_gpu.yaml), through the workflow, for its curves;
#  5. the cost model's prediction for the whole config.yaml on this GPU.
# Needs: the full MNIST under $STABGAP_DATA_ROOT/mnist, and the CIFAR-10 JPEG archive at
# $STABGAP_DATA_ROOT/CIFAR-10-images.tar.xz with make_cifar10_batches.py beside it (copy both from
# ../shared/data/cifar10-jpeg into an ignored folder and carry it). Run from the repository root:
#   STABGAP_DATA_ROOT=.gpu-data bash speed/gpu.sh
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
D="${STABGAP_DATA_ROOT:?set STABGAP_DATA_ROOT}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
if [ ! -d "$D/cifar10/cifar-10-batches-py" ] && [ -f "$D/make_cifar10_batches.py" ]; then
  (cd "$D" && python3 make_cifar10_batches.py "$D/cifar10") || echo "CIFAR-10 JPEG batches not built"
fi
timeout 150 python3 -m pytest -q -s -p no:cacheprovider tests/test_batched.py tests/test_train.py -k "cuda" 2>&1
B="timeout 60 python3 -m stabgap.speed --device cuda --threads 4"
$B --benchmark split_mnist --method ngm --header
$B --benchmark split_mnist --method sgd,msgd,adam,ngm --seeds 5 --mode batched
for bench in split_cifar10 split_miniimagenet; do
  for ctx in 1 5; do
    $B --benchmark $bench --method ngm --context $ctx --iters 20
    $B --benchmark $bench --method ngm --seeds 5 --mode batched --context $ctx --iters 20
    $B --benchmark $bench --method ngm --seeds 5 --mode sequential --context $ctx --iters 20
  done
done
timeout 200 python3 -m snakemake --configfile configs/cifar10_jpeg_gpu.yaml --cores 4 2>&1 | tail -5
grep -h "iter 2000/2000" results/cifar10_jpeg_gpu/logs/train/split_cifar10/ngm/seed42.log
python3 -m stabgap cost --config config.yaml
