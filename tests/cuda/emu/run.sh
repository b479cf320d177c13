#!/bin/sh
# run.sh DIR - the CUDA backend on the emulator (make check-cuda-emu): DIR/test_cuda
# with small shapes, as is and with every blocked loop cut small
# (QK_CUDA_TINY=1), then as on a machine without a GPU (it must say so and
# skip, exit 77). Logs in DIR/*.log; a failure prints the failing lines.
set -u
dir=$1
fail=0
run() {
	log=$dir/$1.log
	shift
	env "$@" "$dir/test_cuda" --quick >"$log" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		echo "check-cuda-emu: $* failed (exit $rc):" >&2
		grep -E '^FAIL|emulator|test_cuda' "$log" >&2 || tail -20 "$log" >&2
		fail=1
	fi
}
run test QK_CUDA_MATH=
run tiny QK_CUDA_TINY=1
env QK_EMU_NO_DEVICE=1 "$dir/test_cuda" --quick >"$dir/nodev.log" 2>&1
rc=$?
if [ $rc -ne 77 ]; then
	echo "check-cuda-emu: without a device the test must skip (exit 77), got $rc:" >&2
	cat "$dir/nodev.log" >&2
	fail=1
fi
[ $fail -eq 0 ] || exit 1
n=$(grep -c '^PASS' "$dir/test.log")
echo "check-cuda-emu: ok ($n checks, twice; without a device: skipped)"
