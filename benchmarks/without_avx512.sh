#!/usr/bin/env bash
# Run a command with AVX-512 switched off in every library that picks its kernels at run time, so that a machine
# with AVX-512 times what a CPU with AVX2 + FMA only (e.g. an AMD EPYC Zen 2) would run:
#   bash benchmarks/without_avx512.sh python examples/demo.py
# torch's own kernels (ATen), oneDNN, MKL, numpy's SIMD loops and glibc's string functions. OpenBLAS (numpy's BLAS)
# is capped too. The CPU's speed and caches stay its own: this changes the instructions, not the machine.
set -euo pipefail
export ATEN_CPU_CAPABILITY=avx2
export ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2
export MKL_ENABLE_INSTRUCTIONS=AVX2
export NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR"
export OPENBLAS_CORETYPE=Haswell
export GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD
exec "$@"
