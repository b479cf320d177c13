#!/bin/sh
# cuda-check.sh - make cuda-check: on a machine with an NVIDIA GPU, build
# from a clean tree and run every CUDA test (tests/cuda/test_cuda.c: each
# operation of the CUDA backend against the CPU backend, on small and real
# shapes), in about three minutes. doc/cuda.md, "Device checks".
#
#   sh scripts/cuda-check.sh                  build, then run the tests
#   sh scripts/cuda-check.sh --build TARGETS  build TARGETS (make goals) only
#
# Needs the CUDA toolkit (nvcc, cuBLAS, cuSOLVER) and either the Debian
# build libraries (scripts/deps.sh) or their packages carried in
# build-cuda/debs (scripts/cuda-deps.sh fetch, on a Debian 12 machine);
# nothing is installed. BUILD (default build-cuda) is the build folder;
# logs go to $OUT when it is set (the device machine returns that folder),
# else to the build folder. Exit status 0 when every check passed.
set -u
mode=run
targets=cuda-tests
if [ "${1:-}" = --build ]; then
	shift
	mode=build
	targets=$*
fi
B=${BUILD:-build-cuda}
LOGS=${OUT:-$B}
mkdir -p "$B" "$LOGS"
t0=$(date +%s)

say() { printf 'cuda-check: %s\n' "$*"; }
die() { say "$*" >&2; exit 2; }

# ---- the toolkit and the GPU
NVCC=$(command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null) ||
	die "no nvcc on PATH or in /usr/local/cuda/bin"
# nvcc may be a wrapper outside the toolkit (/usr/local/bin/nvcc): the
# toolkit is the first candidate with the static runtime, as in config.mk
for d in "${CUDA_HOME:-}" "${NVCC%/bin/nvcc}" /usr/local/cuda /usr/lib/cuda; do
	[ -n "$d" ] && [ -e "$d/lib64/libcudart_static.a" ] && { CUDA_HOME=$d; break; }
done
[ -n "${CUDA_HOME:-}" ] && [ -e "$CUDA_HOME/lib64/libcudart_static.a" ] ||
	die "no CUDA toolkit with lib64/libcudart_static.a (set CUDA_HOME)"
"$NVCC" --version | tail -1
# headers and the static runtime to build; cuBLAS and cuSOLVER are opened
# at run time from lib64 (the tools' run path)
for f in include/cublas_v2.h include/cusolverDn.h lib64/libcudart_static.a; do
	[ -e "$CUDA_HOME/$f" ] || die "the CUDA toolkit in $CUDA_HOME has no $f"
done
for l in libcublas libcublasLt libcusolver; do
	ls "$CUDA_HOME"/lib64/$l.so* >/dev/null 2>&1 ||
		say "warning: no $l.so in $CUDA_HOME/lib64: CUDA contexts will look for it elsewhere"
done
ARCH=
if command -v nvidia-smi >/dev/null 2>&1; then
	nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv,noheader
	cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
	# only the GPU that is here: half the device compile time of config.mk's two
	case "$cap" in
	[0-9][0-9]|[0-9][0-9][0-9]) ARCH="-gencode arch=compute_$cap,code=sm_$cap" ;;
	esac
fi

# ---- the build libraries: the system's, or the carried packages
flags=$(sh scripts/cuda-deps.sh flags "$B/debs") || exit 2
deps=$(printf '%s\n' "$flags" | sed -n 's/^DEPS=//p')
say "build libraries: $deps"
set -- "BUILD=$B"
[ -n "$ARCH" ] && set -- "$@" "CUDA_ARCH=$ARCH"
if [ "$deps" != system ]; then
	set -- "$@" "BLAS_CFLAGS=$(printf '%s\n' "$flags" | sed -n 's/^BLAS_CFLAGS=//p')"
	set -- "$@" "BLAS_LIBS=$(printf '%s\n' "$flags" | sed -n 's/^BLAS_LIBS=//p')"
	LD_LIBRARY_PATH=$(printf '%s\n' "$flags" | sed -n 's/^LD_LIBRARY_PATH=//p')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
	export LD_LIBRARY_PATH
fi
# the libraries are here: scripts/deps.sh (apt-get) must not run
touch "$B/.deps-ok"

build() {
	jobs=$(nproc 2>/dev/null || echo 4)
	say "make -j$jobs $* ..."
	if ! make -j"$jobs" "$@" >"$LOGS/cuda-build.log" 2>&1; then
		grep -E 'error|Error' "$LOGS/cuda-build.log" | head -30 >&2
		tail -5 "$LOGS/cuda-build.log" >&2
		die "build failed (log: $LOGS/cuda-build.log)"
	fi
	if grep -q 'warning' "$LOGS/cuda-build.log"; then
		say "build warnings:"
		grep 'warning' "$LOGS/cuda-build.log" | sort -u | head -20
	fi
}

# shellcheck disable=SC2086
build "$@" $targets
say "built in $(($(date +%s) - t0)) s"
[ $mode = build ] && exit 0

# ---- the tests: real shapes, then small ones with every blocked loop cut small
rc=0
timeout 170 "$B/cuda/test_cuda" >"$LOGS/cuda-check.log" 2>&1 || rc=1
QK_CUDA_TINY=1 timeout 60 "$B/cuda/test_cuda" --quick >"$LOGS/cuda-check-tiny.log" 2>&1 || rc=1
grep -h '^# .*: [0-9.]* s$' "$LOGS/cuda-check.log" | tr '\n' ' ' | sed 's/# //g'; echo
say "real shapes: $(grep -c '^PASS' "$LOGS/cuda-check.log") passed," \
    "$(grep -c '^FAIL' "$LOGS/cuda-check.log") failed; tiny blocks:" \
    "$(grep -c '^PASS' "$LOGS/cuda-check-tiny.log") passed," \
    "$(grep -c '^FAIL' "$LOGS/cuda-check-tiny.log") failed"
if [ $rc -ne 0 ]; then
	grep -h '^FAIL\|^SKIP\|cuda emulator\|test_cuda:' "$LOGS/cuda-check.log" \
		"$LOGS/cuda-check-tiny.log" | head -40
	tail -3 "$LOGS/cuda-check.log"
fi
say "$( [ $rc -eq 0 ] && echo PASS || echo FAIL ) in $(($(date +%s) - t0)) s (logs: $LOGS/cuda-check*.log)"
exit $rc
