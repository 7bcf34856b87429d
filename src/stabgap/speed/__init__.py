"""Speed, in one place: the harness (`python -m stabgap.speed`, harness.py), the scripts that measure
one question each (bf16_eval.py, resnet_batching.py), the GPU script and its helpers (gpu.sh,
gpu_prepare.sh, gpu_run.py, gpu_cost.py), and NOTES.md, what was measured and changed, step by step.
"""
