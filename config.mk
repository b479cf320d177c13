# config.mk: what a user may want to change without editing the Makefile.
VERSION    = 0.1.0
PREFIX     = /usr/local
MANPREFIX  = $(PREFIX)/share/man

CC         = cc
# the fuzz targets (make fuzz) need clang and its libFuzzer runtime
FUZZ_CC    = clang
NVCC       = $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
# The toolkit is the first of these that holds the static CUDA runtime: nvcc
# may be a wrapper script outside it (/usr/local/bin/nvcc), so its folder
# alone does not say where the libraries are. With none, the CUDA objects
# are not built (the CPU build is complete without them).
CUDA_HOME_CANDIDATES = $(CUDA_HOME) $(patsubst %/bin/nvcc,%,$(NVCC)) /usr/local/cuda /usr/lib/cuda
CUDA_HOME_FOUND = $(firstword $(foreach d,$(CUDA_HOME_CANDIDATES),$(if $(wildcard $(d)/lib64/libcudart_static.a),$(d))))
# sm_90: Hopper (H100/H200), the GPUs the toolkit is tuned for; sm_80 keeps A100 working.
CUDA_ARCH  = -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90

OPT        = -O2
# -fopenmp-simd: `#pragma omp simd` reductions vectorize (no OpenMP runtime)
CSTD       = -std=c11 -D_GNU_SOURCE -fopenmp-simd
WARN       = -Wall -Wextra -Wno-unused-parameter -Wshadow -Wvla -Wstrict-prototypes
# OpenBLAS ships its own cblas.h under this directory; the generic one in
# /usr/include may belong to the reference BLAS.
BLAS_CFLAGS = -I/usr/include/x86_64-linux-gnu/openblas-pthread
BLAS_LIBS   = -llapacke -lopenblas
LIBS        = $(BLAS_LIBS) -lzstd -lxxhash -ljansson -lpcre2-8 -lutf8proc -lpthread -lm
# A directory of external conformance vectors (tokenizers/<name>/... as the
# tokenizer tests expect): make check QC_TEST_VECTORS=/path/to/data. The tests
# that need it are reported as skipped, by name, when it is empty.
QC_TEST_VECTORS ?=
