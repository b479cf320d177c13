#!/bin/sh
# t1630: fault injection. Each writing tool runs under an LD_PRELOAD shim
# (tests/fault/qfault.c) that fails its Nth write, fsync, rename, file mmap
# or read with ENOSPC or EIO, for N = 1, 2, ... until the run succeeds.
# Every failed run exits non-zero (never by a signal) with one line that
# quotes the file it failed on, and leaves no OUT, no OUT.partial, no
# temporary file and no spill directory; the input is untouched; the run
# that succeeds writes an OUT that verifies.
. "$(dirname "$0")/lib.sh"

SHIM=${QFAULT_SHIM:-$QBIN/../tests/libqfault.so}
if [ ! -f "$SHIM" ]; then
	test_skip 'fault injection' "no shim at $SHIM (make builds it with the tests)"
	test_done
fi
# under SANITIZE=1 the sanitizer runtime need not come first
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
export ASAN_OPTIONS

# a digest of every file under the given paths (names and bytes)
digest() { find "$@" -type f | LC_ALL=C sort | xargs cat | cksum; }

# fault_loop KIND ERRNO TOOL ARGS... ($OUT is the output, default OUT; the
# inputs are in $IN, default in/)
# Runs until success; prints how many runs failed.
fault_loop() {
	kind=$1 errno=$2 tool=$3
	shift 3
	OUT=${OUT:-OUT} IN=${IN:-in}
	before=$(digest "$IN")
	fn=1
	while :; do
		rm -rf "$OUT" "$OUT.partial" tmp && mkdir tmp
		st=0
		TMPDIR=$PWD/tmp QFAULT_CALL=$kind QFAULT_N=$fn QFAULT_ERRNO=$errno QFAULT_LOG=$PWD/fired \
			LD_PRELOAD=$SHIM "$tool" "$@" >stdout 2>err || st=$?
		[ "$st" = 0 ] && break
		what="$tool, $kind $errno #$fn:"
		[ "$st" -lt 128 ] || { echo "$what killed by a signal ($st)"; cat err; return 1; }
		expect_one_message "$tool" err >/dev/null || { echo "$what not one line:"; cat err; return 1; }
		grep -q "'[^']*'" err || { echo "$what names no file:"; cat err; return 1; }
		test ! -e "$OUT" && test ! -e "$OUT.partial" || { echo "$what left $OUT"; cat err; return 1; }
		left=$(find . -name '.*.tmp-*' | head -1)
		test -z "$left" || { echo "$what left $left"; return 1; }
		test -z "$(ls -A tmp)" || { echo "$what left a spill: $(ls -A tmp)"; return 1; }
		test "$(digest "$IN")" = "$before" || { echo "$what changed the input"; return 1; }
		fn=$((fn + 1))
		[ $fn -le 3000 ] || { echo "$tool $kind: no success after 3000 runs"; return 1; }
	done
	test -e "$OUT" || { echo "$tool $kind: the successful run wrote no $OUT"; return 1; }
	if [ -f "$OUT/config.json" ]; then
		qcat --verify "$OUT" >/dev/null || { echo "$tool $kind: $OUT does not verify"; return 1; }
	fi
	echo "$tool $kind $errno: $((fn - 1)) failed runs"
}

test_expect_success 'setup: inputs under in/' '
	mkdir in &&
	qsynth -q --layers 1 --hidden 64 --intermediate 128 --heads 2 --kv-heads 2 --vocab 300 \
		-o in/m &&
	qcalib -q -m in/m --random -n 4 -L 16 -o in/c.st &&
	qgptq -q --method rtn --group-size 32 -o in/g in/m &&
	qcat -o - in/m >in/m.tar
'

for spec in \
	"qcat -q -o OUT in/m" \
	"qcat -q -o OUT in/m.tar" \
	"qsynth -q --layers 1 --hidden 64 --intermediate 128 --heads 2 --kv-heads 2 --vocab 300 -o OUT" \
	"qcalib -q -m in/m --random -n 4 -L 16 -o OUT" \
	"qgptq -q --threads 1 --calib in/c.st --group-size 32 -o OUT in/m" \
	"qgptq -q --threads 1 --method rtn --group-size 32 --mem 30MB -o OUT in/m.tar" \
	"qfp8 -q --threads 1 -o OUT in/m" \
	"qpack -q -o OUT in/g" \
	"qpack -q -f gptq -o OUT in/g" \
	"qawq -q --threads 1 --calib in/c.st --group-size 32 -o OUT in/m" \
	"qsmooth -q --threads 1 --calib in/c.st -o OUT in/m"; do
	# T1630_ONLY=TOOL runs one tool's loops (when working on it)
	case "$spec" in "${T1630_ONLY:-}"*) ;; *) continue ;; esac
	for fault in write:ENOSPC read:EIO mmap:EIO rename:EIO fsync:EIO; do
		test_expect_success "${spec%% -*} (${spec#* -q }): failing each ${fault%:*} with ${fault#*:}" "
			fault_loop ${fault%:*} ${fault#*:} $spec
		"
	done
done

# qrecipe's own writing step: release assembles release/VARIANT from the
# artifacts and qverify reports make left in work/ (the steps before it are
# the tools above, run by make)
test_expect_success 'setup: a recipe made up to its release step' '
	mkdir rq &&
	printf "%s\n" "model: {source: synth, synth: {preset: tiny, layers: 1, seed: 1}}" \
		"calib: {source: random, rows: 4, len: 16, seed: 1}" \
		"eval: {source: random, rows: 2, len: 16, seed: 2}" "defaults: {threads: 1}" "variants:" \
		"  fp8: {steps: [{qfp8: , pipe: true}], release: [compressed-tensors], gates: {max-kl: 0.5}}" \
		>rq/r.yaml &&
	(cd rq && qrecipe run -q r.yaml >log 2>&1) || { cat rq/log; exit 1; }
	test -d rq/release/fp8 && rm -rf rq/release rq/.qrecipe/release
'
for fault in write:ENOSPC read:EIO rename:EIO fsync:EIO; do
	test_expect_success "qrecipe (release r.yaml fp8): failing each ${fault%:*} with ${fault#*:}" "
		(cd rq && OUT=release/fp8 IN=work fault_loop ${fault%:*} ${fault#*:} qrecipe release r.yaml fp8) &&
		qcat --verify rq/release/fp8/compressed-tensors >/dev/null
	"
done

test_done
