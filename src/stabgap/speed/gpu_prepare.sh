#!/usr/bin/env bash
# Prepares, on this machine, what src/stabgap/speed/gpu.sh needs on the GPU machine, in the ignored folder .gpu/
# (name it in the device tool's carry): the CIFAR-10 JPEG archive and its make_cifar10_batches.py,
# and wheels (Python 3.12) of what that machine lacks: jsonschema and what it needs, mlxtend.
#   bash src/stabgap/speed/gpu_prepare.sh /path/to/shared/data/cifar10-jpeg
set -euo pipefail
SRC=${1:?give the folder holding CIFAR-10-images.tar.xz and make_cifar10_batches.py}
mkdir -p .gpu/whl
cp "$SRC/CIFAR-10-images.tar.xz" "$SRC/make_cifar10_batches.py" .gpu/
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl \
  jsonschema==4.26.0 jsonschema-specifications referencing rpds-py mlxtend==0.25.0
ls -la .gpu .gpu/whl
du -sh .gpu
