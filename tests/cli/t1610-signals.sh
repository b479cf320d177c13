#!/bin/sh
# t1610: signals and pipes leave nothing that looks like an artifact.
# SIGINT, SIGTERM and SIGHUP remove OUT.partial (kept with --resume) and
# spill directories, and the tool dies by the signal; a closed pipe
# downstream ends the writer by SIGPIPE (141); an upstream stream cut at any
# tar block boundary or inside a tensor is an error and leaves no OUT (every
# boundary and offsets inside every block: test_ckpt's test_stream_every_cut,
# in one process); kill
# -9 at several points leaves no OUT or a complete one, and --resume then
# finishes a run whose files equal an uninterrupted run's.
. "$(dirname "$0")/lib.sh"

# up to 30 s for path $1 to exist
wait_for() {
	i=0
	while [ ! -e "$1" ]; do
		[ $i -lt 600 ] || { echo "$1 never appeared"; return 1; }
		sleep 0.05
		i=$((i + 1))
	done
}
# run a command with SIGINT and SIGQUIT at their defaults: a background job of
# a non-interactive shell starts with them ignored, and ignored they stay
run_sigdfl() { exec perl -e '$SIG{INT} = $SIG{QUIT} = "DEFAULT"; exec @ARGV or die "exec: $!"' "$@"; }
GPTQ="qgptq -q --threads 1 --calib c.st --group-size 32"

test_expect_success 'setup: a model that takes a moment to quantize, a small one, streams' '
	qsynth -q --layers 4 --hidden 256 --intermediate 768 --heads 4 --kv-heads 4 --vocab 512 -o m &&
	qcalib -q -m m --random -n 16 -L 64 -o c.st &&
	qcat -o - m >m.tar &&
	qsynth -q --layers 1 --hidden 32 --intermediate 64 --heads 2 --kv-heads 2 --vocab 260 \
		--tie -o s &&
	qcat -o - s >s.tar &&
	$GPTQ --resume -o ref m
'

for sig in INT:130 TERM:143 HUP:129; do
	name=${sig%:*} code=${sig#*:}
	test_expect_success "SIG$name removes OUT.partial and the spills, status $code" "
		rm -rf o o.partial sp && mkdir sp &&
		TMPDIR=\$PWD/sp run_sigdfl $GPTQ --mem 40MB -o o - <m.tar & pid=\$!
		wait_for o.partial &&
		kill -$name \$pid &&
		st=0 && { wait \$pid || st=\$?; } &&
		{ test \$st = $code || { echo \"status \$st\"; exit 1; }; } &&
		{ test ! -e o && test ! -e o.partial || { ls -d o*; exit 1; }; } &&
		{ test -z \"\$(ls -A sp)\" || { ls -A sp; exit 1; }; }
	"
done

test_expect_success 'SIGTERM with --resume keeps OUT.partial; the resumed run completes it' '
	rm -rf o o.partial &&
	$GPTQ --resume -o o m & pid=$!
	wait_for o.partial/qgptq-resume.json &&
	kill -TERM $pid &&
	st=0 && { wait $pid || st=$?; } &&
	test $st = 143 && test ! -e o && test -d o.partial &&
	$GPTQ --resume -o o m && test ! -e o.partial && same_dirs o ref
'

test_expect_success 'a closed pipe downstream: SIGPIPE (141), no spill left' '
	rm -rf sp && mkdir sp &&
	{ qcat -o - m; echo $? >st1; } | head -c 1000 >/dev/null &&
	test "$(cat st1)" = 141 &&
	{ TMPDIR=$PWD/sp $GPTQ --mem 40MB -o - - <m.tar; echo $? >st2; } | head -c 100 >/dev/null &&
	test "$(cat st2)" = 141 && test -z "$(ls -A sp)"
'

test_expect_success 'a stream cut at every fifth block boundary, or inside a block, is an error' '
	rm -rf out &&
	size=$(wc -c <s.tar) &&
	k=0 &&
	while [ $k -lt "$size" ]; do
		for cut in $k $((k + 100)); do
			head -c $cut s.tar >cut.tar
			st=0; qcat -q -o out cut.tar 2>err || st=$?
			test $st = 2 || { echo "cut at $cut: status $st"; exit 1; }
			test ! -e out && test ! -e out.partial || { echo "cut at $cut left output"; exit 1; }
			expect_one_message qcat err || exit 1
		done
		k=$((k + 2560))
	done
'

test_expect_success 'a quantizer reading a cut stream fails and writes nothing' '
	rm -rf out &&
	size=$(wc -c <m.tar) &&
	for cut in 512 4096 $((size / 3)) $((size / 2 + 7)) $((size - 1024)) $((size - 512)); do
		head -c $cut m.tar >cut.tar
		st=0; qgptq -q --method rtn --group-size 32 -o out cut.tar 2>err || st=$?
		test $st = 2 || { echo "cut at $cut: status $st"; cat err; exit 1; }
		test ! -e out && test ! -e out.partial || { echo "cut at $cut left output"; exit 1; }
	done
'

test_expect_success 'kill -9 at several points: no OUT or a complete one; --resume finishes it' '
	for d in 0.05 0.2 0.5 0.9 1.4; do
		rm -rf o o.partial
		$GPTQ --resume -o o m & pid=$!
		sleep $d
		kill -9 $pid 2>/dev/null || :
		wait $pid || :
		if [ -e o ]; then
			qcat --verify o >/dev/null || { echo "after $d s: OUT does not verify"; exit 1; }
		else
			$GPTQ --resume -o o m || { echo "after $d s: the resumed run failed"; exit 1; }
		fi
		same_dirs o ref || { echo "after $d s: OUT differs from the uninterrupted run"; exit 1; }
		test ! -e o.partial || { echo "after $d s: o.partial left"; exit 1; }
	done
'

test_done
