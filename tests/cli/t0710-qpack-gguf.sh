#!/bin/sh
# t0710: qpack -f gguf on qsynth models: qgptq (GPTQ and RTN) and qawq with groups
# of 32 and F16 scales converts to Q4_0/Q8_0 bit for bit, so qverify gives
# the GGUF file the same numbers as the naive checkpoint (rope permutation
# and llama3 rope factors read back); stream in and out give the same
# bytes; schemes GGUF cannot hold are refused with the reason and leave no
# file; a damaged file is refused by qverify.
. "$(dirname "$0")/lib.sh"

for t in qsynth qcalib qgptq qawq qverify qcat; do
	if ! command -v $t >/dev/null; then
		test_skip 'qpack gguf' "$t not built"
		test_done
	fi
done

numbers() { # artifact
	qverify -q "$1" --base model --tokens tok.st >"$1.json" &&
	grep -E '^    "(ppl|ppl_ratio|kl_mean|kl_max|top1|err_w_mean|err_w_max)": ' "$1.json" \
		>"$1.numbers" &&
	test -s "$1.numbers"
}

test_expect_success 'setup: a tiny llama3-rope model, tokens, group-32 F16-scale checkpoints' '
	qsynth -q --preset tiny --layers 2 --rope-scaling llama3 --no-tie -o model &&
	qcalib -q -m model --random -n 4 -L 32 --seed 3 -o tok.st &&
	qgptq -q --group-size 32 --scale-dtype f16 --calib tok.st -o g4 model &&
	qgptq -q --method rtn --scheme w8a16 --group-size 32 --scale-dtype f16 --calib tok.st \
		-o r8 model &&
	qgptq -q --method rtn --calib tok.st -o w4 model &&
	qawq -q --sym --group-size 32 --scale-dtype f16 --calib tok.st -o a4 model
'

test_expect_success '--scale-dtype f16 stores F16 scales' '
	qcat --list g4 >list &&
	expect_grep list "model.layers.0.mlp.down_proj.weight_scale	F16	[128, 12]"
'

test_expect_success 'GPTQ and AWQ int4 -> Q4_0, RTN int8 -> Q8_0: a GGUF file each' '
	qpack -q -f gguf -o g4.gguf g4 &&
	qpack -q -f gguf -o r8.gguf r8 &&
	qpack -q -f gguf -o a4.gguf a4 &&
	test "$(head -c 4 g4.gguf)" = GGUF &&
	qverify -q g4.gguf >rep.json &&
	expect_grep rep.json "\"gguf_type\": \"Q4_0\"" &&
	expect_grep rep.json "\"verdict\": \"pass\"" &&
	qverify -q r8.gguf >rep.json &&
	expect_grep rep.json "\"gguf_type\": \"Q8_0\""
'

test_expect_success 'qverify: the same weight errors, PPL, KL and top-1 as the naive checkpoint' '
	for s in g4 r8 a4; do
		numbers $s && numbers $s.gguf && expect_same $s.numbers $s.gguf.numbers || exit 1
	done
'

test_expect_success 'a stream in and standard output give the same bytes' '
	qcat -o - g4 | qpack -q -f gguf -o - - >g4-stream.gguf &&
	expect_same g4.gguf g4-stream.gguf
'

test_expect_code 2 'group 128 is refused with the reason and no file' '
	qpack -q -f gguf -o w4.gguf w4 2>err
	st=$?
	expect_grep err "one scale per" && expect_one_message qpack err && test ! -e w4.gguf &&
	exit $st
'

test_expect_code 2 'an existing file is kept without --force' '
	echo keep >exists.gguf &&
	qpack -q -f gguf -o exists.gguf g4 2>err
	st=$?
	expect_grep exists.gguf keep && expect_grep err "exists" && exit $st
'

test_expect_code 2 'qverify refuses a GGUF file cut short, naming it' '
	head -c 100000 g4.gguf >cut.gguf &&
	qverify -q cut.gguf >/dev/null 2>err
	st=$?
	expect_grep err "cut.gguf" && exit $st
'

test_expect_code 2 'usage: --max-shard-size does not apply to one file' '
	qpack -q -f gguf --max-shard-size 1MB -o x.gguf g4
'

test_done
