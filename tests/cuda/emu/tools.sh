#!/bin/sh
# tools.sh DIR - the quantizers and qverify with --device cuda on the CUDA
# emulator against --device cpu (make check-cuda-emu-tools): DIR/bin holds
# the tools linked with the emulated backend. With QK_CUDA_MATH=fp32 the
# GPU path computes what the CPU does up to summation order, so:
#   qfp8, qsmooth     the same checkpoint bytes
#   qgptq (w4a16)     err_out of every Linear within 1% of the CPU's
#   qverify           perplexity and KL within 1e-5 (relative) of the CPU's
# The emulator checks on the way that every pointer a kernel or a copy gets
# is of the right kind (doc/cuda.md, "The emulator"): host memory handed to
# the device by libcommon aborts the run.
set -u
dir=$1
bin=$dir/bin
w=$dir/tools-test
rm -rf "$w"
mkdir -p "$w"
export QK_CUDA_MATH=fp32
fail=0
bad() {
	echo "check-cuda-emu-tools: $*" >&2
	fail=1
}
run() { # name, then the command; its output in $w/name.log
	n=$1
	shift
	"$@" >"$w/$n.log" 2>&1 || {
		bad "$n failed: $*"
		tail -5 "$w/$n.log" >&2
		return 1
	}
}
# the checkpoint's tensors, whatever its sharding
bytes() { cat "$1"/model*.safetensors | cksum; }

run synth "$bin/qsynth" -q -f --seed 3 -o "$w/m" || exit 1
run calib "$bin/qcalib" -m "$w/m" --random -n 2 -L 24 --seed 1 -q -o "$w/c.st" || exit 1
run eval "$bin/qcalib" -m "$w/m" --random -n 2 -L 16 --seed 2 -q -o "$w/e.st" || exit 1

for dev in cpu cuda; do
	run "fp8-$dev" "$bin/qfp8" --device "$dev" --calib "$w/c.st" --act static --kv-cache -q -f \
		-o "$w/f-$dev" "$w/m"
	run "smooth-$dev" "$bin/qsmooth" --device "$dev" --calib "$w/c.st" -q -f -o "$w/s-$dev" "$w/m"
	run "gptq-$dev" "$bin/qgptq" --device "$dev" --calib "$w/c.st" --report "$w/r-$dev.jsonl" -q \
		-f -o "$w/g-$dev" "$w/m"
	run "verify-$dev" "$bin/qverify" "$w/g-cpu" --base "$w/m" --tokens "$w/e.st" --device "$dev" \
		-q -o "$w/v-$dev.json"
done
[ $fail -eq 0 ] || exit 1

[ "$(bytes "$w/f-cpu")" = "$(bytes "$w/f-cuda")" ] || bad "qfp8: the CUDA checkpoint differs"
[ "$(bytes "$w/s-cpu")" = "$(bytes "$w/s-cuda")" ] || bad "qsmooth: the CUDA checkpoint differs"
# err_out per Linear, in report order
errs() { sed -n 's/.*"err_out": *\([^,}]*\).*/\1/p' "$1"; }
errs "$w/r-cpu.jsonl" >"$w/e-cpu"
errs "$w/r-cuda.jsonl" >"$w/e-cuda"
worst=$(paste "$w/e-cpu" "$w/e-cuda" | awk '
	{ d = ($2 - $1) / $1; if (d < 0) d = -d; if (d > m) m = d; n++ }
	END { if (n < 7) print "none"; else printf "%.3g\n", m }')
case $worst in
none) bad "qgptq: no err_out in the reports" ;;
*) awk -v m="$worst" 'BEGIN { exit !(m <= 0.01) }' ||
	bad "qgptq: err_out differs by $worst (relative) between the devices" ;;
esac
# the function metrics of qverify's report
metric() { tr ',{' '\n\n' <"$1" | sed -n "s/^ *\"$2\": *\\([-0-9.eE+][-0-9.eE+]*\\).*/\\1/p" | head -1; }
for k in ppl kl_mean; do
	a=$(metric "$w/v-cpu.json" $k)
	b=$(metric "$w/v-cuda.json" $k)
	awk -v a="$a" -v b="$b" 'BEGIN { d = (b - a) / a; if (d < 0) d = -d; exit !(a != "" && d <= 1e-5) }' ||
		bad "qverify: $k is $a on the CPU, $b on CUDA"
done
[ $fail -eq 0 ] || exit 1
echo "check-cuda-emu-tools: ok (qfp8, qsmooth identical; qgptq err_out within $worst; qverify equal)"
