#!/bin/sh
# cuda-bench.sh - make cuda-bench: on a machine with an NVIDIA GPU, the
# benchmarks of the CUDA backend in about five minutes, ending with a table
# of ratios (doc/cuda.md, "Benchmarks"):
#
#  1. tests/cuda/bench_cuda: the GPU's ceilings (copy bandwidth, GEMM rate),
#     then every heavy operation on Llama-3.1-8B shapes: GPU and CPU times,
#     their ratio, the rate reached and its share of the ceiling;
#  2. end to end (QK_BENCH_E2E=0 skips it): a Llama-3.2-1B-shaped model of
#     QK_BENCH_1B_LAYERS (4) layers through qgptq on the CPU and on the GPU in
#     each math mode (QK_CUDA_MATH bf16, tf32, fp32), with err_out per Linear
#     and qverify's KL of the artifacts compared with the CPU's;
#     then a Llama-3.1-8B-shaped model of QK_BENCH_8B_LAYERS (4) layers with
#     512 x 2048 calibration tokens through qgptq on the GPU, timed and scaled
#     to the model's 32 layers, and qverify's perplexity pass over it, as a
#     share of the GEMM rate.
#
# The build is scripts/cuda-check.sh's (the same folder: after make
# cuda-check only the tools are left to build). Logs and reports go to $OUT
# when it is set, else to the build folder.
set -u
B=${BUILD:-build-cuda}
LOGS=${OUT:-$B}
E=$B/e2e
L1=${QK_BENCH_1B_LAYERS:-4}
L8=${QK_BENCH_8B_LAYERS:-4}
mkdir -p "$LOGS" "$E"
t0=$(date +%s)
say() { printf 'cuda-bench: %s\n' "$*"; }

sh scripts/cuda-check.sh --build cuda-tests "$B/bin/qsynth" "$B/bin/qcalib" "$B/bin/qgptq" \
	"$B/bin/qverify" || exit 2
say "built in $(($(date +%s) - t0)) s"

summary=$LOGS/cuda-bench-summary.txt
: >"$summary"
note() { printf '%s\n' "$*" | tee -a "$summary"; }

# ---- 1. the operations
timeout 150 "$B/cuda/bench_cuda" 2>&1 | tee "$LOGS/cuda-bench.log"
grep -q '^SKIP' "$LOGS/cuda-bench.log" && exit 1

[ "${QK_BENCH_E2E:-1}" = 0 ] && exit 0

# ---- 2. end to end
have_py=0
command -v python3 >/dev/null 2>&1 && have_py=1
secs() { # run a command, print its wall seconds to stdout; output to a log
	log=$1
	shift
	s=$(date +%s.%N)
	if ! "$@" >"$log" 2>&1; then
		say "failed: $* (log $log)" >&2
		tail -5 "$log" >&2
		echo -1
		return 1
	fi
	awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", b - a }'
}

Q="$B/bin"
# a Llama-3.2-1B-shaped model: GPU and CPU quantize it alike
M1=$E/m1b
timeout 60 "$Q/qsynth" --preset llama-3.2-1b --layers "$L1" --seed 1 -q -f -o "$M1" &&
timeout 30 "$Q/qcalib" -m "$M1" --random -n 64 -L 512 --seed 1 -q -o "$E/calib1.st" &&
timeout 30 "$Q/qcalib" -m "$M1" --random -n 16 -L 512 --seed 2 -q -o "$E/eval1.st" || {
	say "cannot make the 1B-shaped model"
	exit 1
}
# the GPU in each math mode (QK_CUDA_MATH), then the CPU; qverify in FP32
# for all, so that only the artifacts differ
for dev in cuda-bf16 cuda-tf32 cuda-fp32 cpu; do
	math=${dev#cuda-}
	[ "$dev" = cpu ] && math=fp32
	t=$(secs "$LOGS/qgptq-1b-$dev.log" env QK_CUDA_MATH="$math" timeout 150 "$Q/qgptq" \
		--device "${dev%%-*}" --calib "$E/calib1.st" --report "$LOGS/report-1b-$dev.jsonl" -q -f \
		-o "$E/q1b-$dev" "$M1")
	note "qgptq 1B-shaped x $L1 layers, 32768 tokens, $dev: $t s"
	secs "$LOGS/qverify-1b-$dev.log" env QK_CUDA_MATH=fp32 timeout 90 "$Q/qverify" "$E/q1b-$dev" \
		--base "$M1" --tokens "$E/eval1.st" --device cuda -q -o "$LOGS/verify-1b-$dev.json" >/dev/null
done
if [ $have_py = 1 ]; then
	python3 - "$LOGS" <<'EOF' | tee -a "$summary"
import json, sys, os
d = sys.argv[1]
def rep(dev):
    out = {}
    for line in open(os.path.join(d, "report-1b-%s.jsonl" % dev)):
        o = json.loads(line)
        out[o["layer"]] = o["err_out"]
    return out
def kl(dev):
    return json.load(open(os.path.join(d, "verify-1b-%s.json" % dev)))["function"]["kl_mean"]
for mode in ("bf16", "tf32", "fp32"):
    dev = "cuda-" + mode
    try:
        g, c = rep(dev), rep("cpu")
        worst, name = 0.0, ""
        for k in c:
            if c[k] and g.get(k) is not None:
                r = abs(g[k] - c[k]) / abs(c[k])
                if r > worst:
                    worst, name = r, k
        print("QK_CUDA_MATH=%s: err_out per Linear vs CPU, worst %.4f (%s) over %d Linears: %s"
              % (mode, worst, name, len(c), "PASS (<= 0.01)" if worst <= 0.01 else "FAIL (> 0.01)"))
    except Exception as e:
        print("QK_CUDA_MATH=%s: err_out comparison: cannot read the reports (%s)" % (mode, e))
    try:
        a, b = kl(dev), kl("cpu")
        r = abs(a - b) / abs(b)
        print("QK_CUDA_MATH=%s: qverify KL(base || artifact) %.6g, CPU-made %.6g, difference %.4f: %s"
              % (mode, a, b, r, "PASS (<= 0.02)" if r <= 0.02 else "FAIL (> 0.02)"))
    except Exception as e:
        print("QK_CUDA_MATH=%s: KL comparison: cannot read the qverify reports (%s)" % (mode, e))
EOF
fi

# a Llama-3.1-8B-shaped model: the GPU's time for 512 x 2048 tokens
M8=$E/m8b
if timeout 120 "$Q/qsynth" --preset llama-3.1-8b --layers "$L8" --seed 1 -q -f -o "$M8" &&
   timeout 30 "$Q/qcalib" -m "$M8" --random -n 512 -L 2048 --seed 1 -q -o "$E/calib8.st" &&
   timeout 30 "$Q/qcalib" -m "$M8" --random -n 256 -L 2048 --seed 2 -q -o "$E/eval8.st"; then
	t=$(secs "$LOGS/qgptq-8b.log" timeout 240 "$Q/qgptq" --device cuda --calib "$E/calib8.st" \
		--report "$LOGS/report-8b.jsonl" -q -f -o "$E/q8b" "$M8")
	note "qgptq W4A16 8B-shaped x $L8 layers, 512 x 2048 tokens, GPU: $t s;" \
	     "scaled to 32 layers: $(awk -v t="$t" -v l="$L8" 'BEGIN { printf "%.0f", t * 32 / l }') s (target < 120 s)"
	t=$(secs "$LOGS/qverify-8b.log" timeout 120 "$Q/qverify" "$M8" --tokens "$E/eval8.st" \
		--device cuda -q -o "$LOGS/verify-8b.json")
	# FLOPs of the pass: 2 per parameter per token (layers and lm_head;
	# attention's products add 2% at 2048 tokens and are left out); the
	# wall time includes reading the checkpoint
	if [ $have_py = 1 ]; then
		python3 - "$t" "$L8" "$LOGS/cuda-bench.log" <<'EOF' | tee -a "$summary"
import re, sys
t, layers = float(sys.argv[1]), int(sys.argv[2])
params = layers * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336) + 128256 * 4096
flops = 2.0 * params * 256 * 2048
rate = None
for line in open(sys.argv[3]):
    m = re.search(r"GEMM 8192\^3 ([0-9.]+) TFLOP/s", line)
    if m:
        rate = float(m.group(1))
if t > 0 and rate:
    got = flops / t / 1e12
    print("qverify perplexity pass, 8B-shaped x %d layers, 256 x 2048 tokens: %.1f s, %.1f TFLOP/s = %.0f%% "
          "of the GEMM rate (target >= 60%%)" % (layers, t, got, 100 * got / rate))
EOF
	fi
else
	note "cannot make the 8B-shaped model (see above)"
fi
note "(the W4A16 decode GEMV is not implemented: no bandwidth figure)"
say "done in $(($(date +%s) - t0)) s; summary: $summary"
cat "$summary"
