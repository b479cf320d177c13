#!/bin/sh
# t0850: qrecipe and recipes/. Every shipped recipe checks; malformed recipes,
# ours and llm-compressor's, give one line naming file:line:column and exit
# 2; llm-compressor recipes give the commands their modifiers mean; the demo
# recipe runs with make -j2, and killed in the middle and run again it makes
# only what was missing, with the same bytes as an uninterrupted run; a
# changed option remakes only what depends on it; a failed gate leaves the
# artifact out of the release and make fails; a tool that is not installed
# fails its variant at run time, not at check time; the 1B recipe runs end to
# end on a qsynth model of its shape cut to 2 layers; libyaml is linked by
# qrecipe alone.
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
data=$top/tests/data/recipes

if ! command -v qrecipe >/dev/null; then
	test_skip 'qrecipe' 'qrecipe not built'
	test_done
fi

# targets CMDS: the target of each command line: release/VARIANT for a
# release, else its -o (qverify's is followed by "|| test $? = 1", a step's
# by its input, qsynth's and random qcalib's by nothing)
targets() {
	sed -n -e 's/^qrecipe release [^ ]* \([^ ]*\).*/release\/\1/p;t' \
		-e 's/.* -o \([^ ]*\) || test .*/\1/p;t' \
		-e 's/.* -o \([^ ]*\) [^ ]*$/\1/p;t' \
		-e 's/.* -o \([^ ]*\)$/\1/p' "$1"
}
# commands LOG: the tool command lines make printed, sorted
commands() { grep '^q[a-z0-9]* ' "$1" | sort; }

test_expect_success 'every shipped recipe checks, also as the tests and the demo run them' '
	for f in "$top"/recipes/*.yaml; do
		qrecipe check -q "$f" || exit 1
		qrecipe check -q "$f" GATES=off >/dev/null || exit 1
	done &&
	qrecipe check -q "$top/recipes/llama-3.2-1b.yaml" SOURCE=synth LAYERS=2 DATA=random &&
	qrecipe check "$top/recipes/demo.yaml" 2>err && expect_grep err "4 variants"
'

test_expect_success 'malformed recipes: one line, FILE:LINE:COLUMN: message, exit 2' '
	count=0 &&
	for f in "$data"/bad-*.yaml "$data"/lc-bad-*.yaml; do
		pos=$(sed -n "1s/^# \([0-9]*:[0-9]*\):.*/\1/p" "$f")
		test -n "$pos" || { echo "$f: no position in its first line"; exit 1; }
		st=0; qrecipe check "$f" >out 2>err || st=$?
		test $st = 2 || { echo "$f: exit $st"; exit 1; }
		test ! -s out || exit 1
		expect_one_message qrecipe err || exit 1
		grep -q "^qrecipe: $f:$pos: " err || { echo "$f: not at $pos:"; cat err; exit 1; }
		count=$((count + 1))
	done &&
	test $count -ge 10
'

test_expect_success 'llm-compressor recipes give the commands their modifiers mean' '
	c() { qrecipe check -q -v "$data/$1" MODEL=m CALIB=c.st >"$1.out" && cat "$1.out"; } &&
	c lc-gptq-w4a16.yaml &&
	expect_grep lc-gptq-w4a16.yaml.out "qgptq --scheme w4a16 --clip minmax --damp 0.02 --calib c.st --resume -f -q -o work/quant/1-qgptq m" &&
	c lc-w8a8-smoothquant.yaml &&
	expect_grep lc-w8a8-smoothquant.yaml.out "qsmooth --alpha 0.8 --calib c.st --resume -f -q -o work/quant/1-qsmooth m" &&
	expect_grep lc-w8a8-smoothquant.yaml.out "qgptq --scheme w8a8 --clip minmax --calib c.st --resume -f -q -o work/quant/2-qgptq work/quant/1-qsmooth" &&
	c lc-fp8-dynamic.yaml &&
	expect_grep lc-fp8-dynamic.yaml.out "qfp8 --resume -f -q -o work/default/1-qfp8 m" &&
	c lc-awq.yaml &&
	expect_grep lc-awq.yaml.out "qawq --scheme w4a16 --asym --duo-scaling on --no-clip --calib c.st --resume -f -q -o work/quant/1-qawq m" &&
	c lc-ignore-groups.yaml &&
	expect_grep lc-ignore-groups.yaml.out "qgptq --scheme w8a8 --act static --actorder static --clip mse --ignore '"'"'re:.*mlp.down_proj\$'"'"' --ignore model.layers.0.self_attn.o_proj --calib c.st --resume -f -q -o work/quant/1-qgptq m" &&
	for f in lc-*.out; do
		expect_grep "$f" "qpack -f compressed-tensors --force -q -o work/" || exit 1
		expect_grep "$f" "qverify work/" || exit 1
	done
'

test_expect_success 'an llm-compressor recipe runs as it is on a tiny model' '
	qsynth -q --preset tiny --layers 2 -o tm && qcalib -q -m tm --random -n 4 -L 32 -o tc.st &&
	mkdir lc && cd lc &&
	qrecipe run "$data/lc-gptq-w4a16.yaml" MODEL=../tm CALIB=../tc.st EVAL=../tc.st MAX_KL=10 >log 2>&1 &&
	qcat --verify release/quant/compressed-tensors &&
	expect_grep release/quant/compressed-tensors/config.json "\"num_bits\": 4" &&
	expect_grep release/quant/quant_card.md "Verdict: **pass**"
'

# ---- the demo recipe, uninterrupted, and killed in the middle and rerun

demo=$top/recipes/demo.yaml
test_expect_success 'the demo recipe runs with make -j2 and releases every variant' '
	mkdir a && cd a &&
	qrecipe make "$demo" LAYERS=2 >Makefile &&
	make -f Makefile -j2 >log 2>&1 &&
	for v in w4a16-gptq w4a16-awq w8a8-int8 fp8-dynamic; do
		test -d release/$v || exit 1
		expect_grep release/$v/quant_card.md "Verdict: **pass**" || exit 1
	done &&
	expect_grep log "qsmooth --alpha 0.8 --threads 1 --calib work/calib.st -q -o - work/model | qgptq --scheme w8a8" &&
	test ! -e work/w8a8-int8/1-qsmooth &&
	qcat --verify release/w4a16-gptq/gptq &&
	make -f Makefile -j2 >log2 2>&1 && ! grep "^q" log2
'

# start the same run in b, in its own process group (setsid), and kill the
# group once the first artifact is packed: the other variants' steps are
# running then
mkdir "$TEST_DIR/b"
(
	cd "$TEST_DIR/b" || exit 1
	exec 2>kill.err       # the shell's "Terminated"
	qrecipe make "$demo" LAYERS=2 >Makefile || exit 1
	setsid sh -c 'exec make -f Makefile -j2 >log1 2>&1' &
	pid=$!
	i=0
	while [ $i -lt 1200 ] && ! test -d work/fp8-dynamic/compressed-tensors; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -TERM "-$pid"
	wait "$pid"
	echo "killed after $i polls (make: status $?)" >killed
)

test_expect_success 'killed in the middle: some steps done, some not' '
	cd b && cat killed && cat log1 &&
	targets ../a/log >all-targets && test -s all-targets &&
	: >done-targets && : >missing &&
	grep "^q" ../a/log >all-cmds &&
	while read -r cmd; do
		t=$(printf "%s\n" "$cmd" >cmd1 && targets cmd1)
		test -n "$t" || { echo "no target in: $cmd"; exit 1; }
		if test -e "$t"; then echo "$t" >>done-targets; else printf "%s\n" "$cmd" >>missing; fi
	done <all-cmds &&
	echo "done: $(wc -l <done-targets), missing: $(wc -l <missing)" &&
	test -s done-targets && test -s missing
'
[ -f "$TEST_DIR/b/missing" ] && echo "# $(cat "$TEST_DIR/b/killed"): $(wc -l <"$TEST_DIR/b/done-targets") targets done, $(wc -l <"$TEST_DIR/b/missing") to make"

test_expect_success 'the rerun makes only what was missing' '
	cd b &&
	make -f Makefile -j2 >log2 2>&1 && cat log2 &&
	commands log2 >ran && sort missing >want &&
	diff want ran
'

test_expect_success 'and the results are the same bytes as the uninterrupted run' '
	diff -r -x ".*" a/release b/release &&
	diff -r -x ".*" a/work b/work &&
	! ls -d b/work/*/*.partial b/release/*.partial 2>/dev/null
'

test_expect_success 'a changed option remakes what depends on it, nothing else' '
	cd a &&
	qrecipe make "$demo" LAYERS=2 THREADS=2 | make -f - -j2 fp8-dynamic >log3 2>&1 && cat log3 &&
	commands log3 >ran &&
	test "$(wc -l <ran)" = 3 &&
	grep -q "^qfp8 --threads 2 " ran && grep -q "^qverify .* -j 2 " ran && grep -q "^qrecipe release " ran
'

# ---- gates and missing tools, on a tiny model

cat >"$TEST_DIR/gate.yaml" <<'EOF'
model:
  source: synth
  synth: {preset: tiny, layers: 2, seed: 3}
calib: {source: random, rows: 4, len: 32, seed: 1}
eval: {source: random, rows: 4, len: 32, seed: 2}
defaults: {threads: 1}
variants:
  fp8:
    steps: [{qfp8: , pipe: true}]
    release: [compressed-tensors]
    gates: {max-kl: 0.000001}
  awq:
    steps: [qawq]
    release: [compressed-tensors]
EOF

test_expect_success 'a failed gate leaves the artifact out of the release, and make fails' '
	mkdir g && cd g &&
	st=0; qrecipe make ../gate.yaml | make -f - fp8 >log 2>&1 || st=$?
	cat log && test $st != 0 &&
	expect_grep log "qrecipe: fp8: compressed-tensors artifact: function: kl_mean" &&
	expect_grep log "it is left out of the release (see release/fp8.failed/quant_card.md)" &&
	test ! -e release/fp8 && test -f release/fp8.failed/quant_card.md &&
	test ! -e release/fp8.failed/compressed-tensors &&
	expect_grep release/fp8.failed/quant_card.md "Verdict: **fail**" &&
	expect_grep release/fp8.failed/quant_card.md "| compressed-tensors | mean KL(base || artifact) | <= 1e-06 |" &&
	st=0; qrecipe make ../gate.yaml | make -f - fp8 >log2 2>&1 || st=$?
	test $st != 0 && commands log2 >ran && test "$(wc -l <ran)" = 1 && grep -q "^qrecipe release" ran &&
	st=0; qrecipe run ../gate.yaml fp8 >log3 2>&1 || st=$?
	test $st = 1 && expect_grep log3 "qrecipe: not released: fp8 (a gate failed"
'

test_expect_success 'a tool that is not installed fails its variant when it runs, not at check' '
	mkdir nobin && for t in "$QBIN"/q*; do
		test "${t##*/}" = qawq || ln -s "$t" nobin/ || exit 1
	done &&
	rm nobin/qrecipe && cp "$QBIN/qrecipe" nobin/ &&
	mkdir m && cd m &&
	PATH=$TEST_DIR/nobin:/usr/bin:/bin qrecipe check ../gate.yaml 2>err && expect_grep err "awq (" &&
	st=0; PATH=$TEST_DIR/nobin:/usr/bin:/bin qrecipe run ../gate.yaml GATES=off >log 2>&1 || st=$?
	cat log && test $st = 2 &&
	expect_grep log "qrecipe: cannot make work/awq/1-qawq: qawq is not installed (not on PATH)" &&
	expect_grep log "qrecipe: not released: awq (a step failed)" &&
	test -d release/fp8 && expect_grep release/fp8/quant_card.md "Gates: **off**"
'

# ---- the 1B recipe, on a qsynth model of its shape cut to 2 layers

test_expect_success 'the 1B recipe runs end to end on 2 layers of a qsynth model of its shape' '
	mkdir one && cd one &&
	qrecipe run "$top/recipes/llama-3.2-1b.yaml" SOURCE=synth LAYERS=2 DATA=random CALIB_ROWS=8 \
		CALIB_LEN=256 EVAL_ROWS=1 EVAL_LEN=128 GATES=off THREADS=2 fp8-dynamic >log 2>&1 &&
	cat log &&
	expect_grep log "qsynth --preset llama-3.2-1b --layers 2 --seed 0 --threads 2 -f -q -o work/model" &&
	expect_grep work/model/config.json "\"hidden_size\": 2048" &&
	expect_grep work/model/config.json "\"vocab_size\": 128256" &&
	expect_grep work/model/config.json "\"num_hidden_layers\": 2" &&
	qcat --verify release/fp8-dynamic/compressed-tensors &&
	test -s release/fp8-dynamic/quant_report.jsonl &&
	expect_grep release/fp8-dynamic/verify-compressed-tensors.json "\"verdict\": \"pass\"" &&
	expect_grep release/fp8-dynamic/quant_card.md "# meta-llama/Llama-3.2-1B: fp8-dynamic" &&
	expect_grep release/fp8-dynamic/quant_card.md "\`SOURCE=synth\`, \`LAYERS=2\`"
'

test_expect_success 'libyaml is linked by qrecipe alone' '
	command -v ldd >/dev/null || exit 0
	for t in "$QBIN"/q*; do
		ldd "$t" >ldd.out || exit 1
		if grep -q libyaml ldd.out; then echo "${t##*/}"; fi
	done >yaml-users &&
	cat yaml-users && test "$(cat yaml-users)" = qrecipe
'
test_done
