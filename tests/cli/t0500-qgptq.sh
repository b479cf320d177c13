#!/bin/sh
# t0500: qgptq on a tiny qsynth model: schemes and their tensors, GPTQ below
# RTN on every Linear, integrity through qverify, determinism, streams,
# --resume after a failure, --mem, and bad inputs (exit 2, one message, no
# output).
. "$(dirname "$0")/lib.sh"

if ! command -v qsynth >/dev/null || ! command -v qcalib >/dev/null; then
	test_skip 'qgptq' 'qsynth or qcalib not built'
	test_done
fi

# "layer err_out err_rtn" for each line of a report
errs() {
	sed 's/.*"layer":"\([^"]*\)".*"err_out":\([^,]*\),.*"err_rtn":\([^,]*\),.*/\1 \2 \3/' "$1"
}
# put_bf16 FILE TENSOR INDEX BYTES: overwrite element INDEX of a BF16 tensor
# in a safetensors file with two bytes given as printf octal escapes
put_bf16() {
	n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
	o=$(head -c $((8 + n)) "$1" | tail -c "$n" | grep -o "\"$2\":{[^}]*}" |
		sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
	printf "$4" | dd of="$1" bs=1 seek=$((8 + n + o + 2 * $3)) conv=notrunc 2>/dev/null
}
# sh has no pipefail: a pipeline's status is its last command's. Write
# `producer CMD... | consumer && producers_ok`; a failed producer is noted
# in producers.err and producers_ok fails, naming it.
producer() { "$@" || echo "$1 exited with status $?" >>producers.err; }
producers_ok() { [ ! -s producers.err ] || { cat producers.err; rm -f producers.err; return 1; }; }

test_expect_success 'setup: a small model and a token set' '
	qsynth -q --preset tiny --layers 3 --seed 5 -o m &&
	qcalib -q -m m --random -n 8 -L 96 --seed 1 -o c.st
'

test_expect_success 'w4a16: a checkpoint whose manifest verifies, 21 report lines' '
	qgptq -q --calib c.st --report r.jsonl -o w4 m && qcat --verify w4 &&
	test "$(wc -l <r.jsonl)" = 21 && test "$(wc -l <w4/quant_report.jsonl)" = 21
'

test_expect_success 'config.json: the W4A16 scheme in full' '
	expect_grep w4/config.json "\"format\": \"naive-quantized\"" &&
	expect_grep w4/config.json "\"quant_method\": \"compressed-tensors\"" &&
	expect_grep w4/config.json "\"group_size\": 128" &&
	expect_grep w4/config.json "\"num_bits\": 4" &&
	expect_grep w4/config.json "\"observer\": \"mse\"" &&
	expect_grep w4/config.json "\"input_activations\": null" &&
	expect_grep w4/config.json "\"lm_head\""
'

test_expect_success 'tensors: I8 codes, BF16 group scales (a partial last group), no zero points' '
	qcat --list w4 >list &&
	grep "model.layers.0.self_attn.q_proj.weight	" list | grep -q "I8" &&
	grep "model.layers.0.self_attn.q_proj.weight_scale	" list | grep -q "BF16.*\[128, 1\]" &&
	grep "model.layers.0.mlp.down_proj.weight_scale	" list | grep -q "\[128, 3\]" &&
	! grep -q weight_zero_point list &&
	grep "model.embed_tokens.weight	" list | grep -q BF16
'

test_expect_success 'every Linear: err_out below err_rtn, errors finite, n_tokens counted' '
	errs r.jsonl >e &&
	test "$(wc -l <e)" = 21 &&
	awk "{ if (!(\$2 > 0 && \$2 < \$3)) { print \"not below RTN:\", \$0; bad = 1 } } END { exit bad }" e &&
	expect_grep r.jsonl "\"n_tokens\":768" && expect_grep r.jsonl "\"damp\":0.01"
'

test_expect_success 'qverify: integrity passes, and PPL, KL and top-1 against the base' '
	qverify w4 --base m --tokens c.st >v.json 2>err &&
	expect_grep v.json "\"verdict\": \"pass\"" &&
	expect_grep v.json "\"ppl_ratio\":" && expect_grep v.json "\"kl_mean\":" &&
	expect_grep err "integrity: ok"
'

test_expect_success 'GPTQ ends closer to the base than RTN' '
	qgptq -q --method rtn --calib c.st --report rr.jsonl -o rtn m &&
	qverify -q w4 --base m --tokens c.st >v1.json &&
	qverify -q rtn --base m --tokens c.st >v2.json &&
	k1=$(sed -n "s/.*\"kl_mean\": \([0-9.e+-]*\),.*/\1/p" v1.json) &&
	k2=$(sed -n "s/.*\"kl_mean\": \([0-9.e+-]*\),.*/\1/p" v2.json) &&
	awk "BEGIN { exit !($k1 < $k2) }"
'

test_expect_success 'rtn: err_out equals err_rtn; without tokens the output errors are null' '
	errs rr.jsonl | awk "{ if (\$2 != \$3) exit 1 }" &&
	qgptq -q --method rtn -o rtn0 m &&
	expect_grep rtn0/quant_report.jsonl "\"err_out\":null" &&
	expect_grep rtn0/quant_report.jsonl "\"n_tokens\":0"
'

test_expect_success 'two runs give identical checkpoints' '
	qgptq -q --calib c.st --report r.jsonl -o w4b m && diff -r w4 w4b
'

test_expect_success 'a stream in and out gives the same checkpoint' '
	producer qcat -q -o - m | qgptq -q --calib c.st -o - - >s.tar && producers_ok &&
	mkdir x && tar xf s.tar -C x && qcat --verify x &&
	for f in w4/*.safetensors w4/config.json w4/quant_report.jsonl; do cmp "$f" "x/${f#w4/}" || exit 1; done
'

test_expect_success 'w8a16: int8 per channel' '
	qgptq -q --scheme w8a16 --calib c.st --report r8.jsonl -o w8 m && qcat --list w8 >l8 &&
	grep "layers.1.mlp.down_proj.weight_scale	" l8 | grep -q "\[128, 1\]" &&
	expect_grep w8/config.json "\"strategy\": \"channel\"" &&
	errs r8.jsonl | awk "{ if (!(\$2 < \$3)) exit 1 }"
'

test_expect_success 'w8a8: int-quantized, dynamic per-token int8 activations recorded' '
	qgptq -q --scheme w8a8 --calib c.st -o a8 m &&
	expect_grep a8/config.json "\"format\": \"int-quantized\"" &&
	expect_grep a8/config.json "\"strategy\": \"token\"" &&
	expect_grep a8/config.json "\"dynamic\": true" &&
	qverify -q a8 >/dev/null
'

test_expect_success '--asym --group-size 32 --actorder none --clip minmax: zero points, below RTN' '
	qgptq -q --asym --group-size 32 --actorder none --clip minmax --calib c.st \
		--report ra.jsonl -o asym m && qcat --list asym >la &&
	grep "layers.0.self_attn.o_proj.weight_zero_point	" la | grep -q "I8.*\[128, 4\]" &&
	expect_grep asym/config.json "\"symmetric\": false" &&
	expect_grep asym/config.json "\"observer\": \"minmax\"" &&
	expect_grep ra.jsonl "\"actorder\":\"none\"" &&
	errs ra.jsonl | awk "{ if (!(\$2 < \$3)) exit 1 }" &&
	qverify -q asym >/dev/null
'

test_expect_success '--clip mse-h: the search weighted by the Hessian diagonal, below RTN' '
	qgptq -q --clip mse-h --calib c.st --report rh.jsonl -o mh m &&
	expect_grep rh.jsonl "\"clip\":\"mse-h\"" &&
	errs rh.jsonl | awk "{ if (!(\$2 < \$3)) exit 1 }" && ! diff -q w4 mh >/dev/null
'

test_expect_success '--ignore leaves matching layers in BF16' '
	qgptq -q --calib c.st --ignore "re:.*down_proj" -o ig m && qcat --list ig >li &&
	grep "layers.0.mlp.down_proj.weight	" li | grep -q BF16 &&
	! grep -q "down_proj.weight_scale" li && expect_grep ig/config.json "re:.*down_proj" &&
	test "$(wc -l <ig/quant_report.jsonl)" = 18 && qverify -q ig >/dev/null
'

test_expect_success '--mem: BF16 activations when FP32 ones do not fit' '
	qgptq --mem 7.4MB --calib c.st -o mem m 2>err &&
	expect_grep err "activations held in BF16" && qverify -q mem >/dev/null
'

test_expect_code 2 '--mem below what a layer needs: an error before any work' '
	qgptq --mem 100KB --calib c.st -o mem2 m 2>err; st=$?;
	expect_one_message qgptq err && expect_grep err "too small" && test ! -e mem2 && exit $st
'

test_expect_success '--resume after a failed run reuses its layers and gives the same checkpoint' '
	rm -rf bad && cp -r m bad &&
	put_bf16 bad/model-00003-of-00003.safetensors model.layers.2.mlp.up_proj.weight 1 "\300\177" &&
	! qgptq -q --resume --calib c.st -o res bad 2>err &&
	test ! -e res && test -f res.partial/model-00002-of-00003.safetensors &&
	cp m/model-00003-of-00003.safetensors bad/ &&
	qgptq --resume --calib c.st --report rres.jsonl -o res bad 2>err &&
	expect_grep err "layers 0 to 1 are done" &&
	test ! -e res.partial &&
	for f in w4/*.safetensors w4/config.json w4/quant_report.jsonl; do
		cmp "$f" "res/${f#w4/}" || exit 1
	done &&
	test ! -e res/qgptq-resume.json
'

test_expect_success '--resume with other options refuses the partial run' '
	rm -rf bad2 && cp -r bad bad2 &&
	put_bf16 bad2/model-00003-of-00003.safetensors model.layers.2.mlp.up_proj.weight 1 "\300\177" &&
	! qgptq -q --resume --calib c.st -o res2 bad2 2>/dev/null &&
	st=0 && qgptq -q --resume --damp 0.02 --calib c.st -o res2 m 2>err || st=$? &&
	test $st = 2 && expect_one_message qgptq err && expect_grep err "another set of options"
'

test_expect_success 'NaN in a weight: exit 2, one message naming the tensor, no output' '
	st=0 && qgptq -q --calib c.st -o z bad2 2>err || st=$? &&
	test $st = 2 && expect_one_message qgptq err &&
	expect_grep err "model.layers.2.mlp.up_proj" && test ! -e z && test ! -e z.partial
'

test_expect_success 'a shape that disagrees with config.json: exit 2' '
	rm -rf shp && cp -r m shp &&
	sed "s/\"intermediate_size\": 384/\"intermediate_size\": 256/" m/config.json >shp/config.json &&
	st=0 && qgptq -q --calib c.st -o z shp 2>err || st=$? &&
	test $st = 2 && expect_one_message qgptq err && expect_grep err "mlp" && test ! -e z
'

test_expect_success 'token ids beyond the vocabulary: exit 2 naming the token set' '
	qsynth -q --preset tiny --vocab 1024 -o big && qcalib -q -m big --random -n 2 -L 64 -o big.st &&
	st=0 && qgptq -q --calib big.st -o z m 2>err || st=$? &&
	test $st = 2 && expect_one_message qgptq err && expect_grep err "big.st" &&
	expect_grep err "vocabulary" && test ! -e z
'

test_expect_code 2 'an already quantized input is refused' 'qgptq -q --calib c.st -o z w4'
test_expect_code 2 'gptq without a token set is a usage error' 'qgptq -q -o z m'
test_expect_code 2 'a group size that is not offered' 'qgptq --group-size 48 --calib c.st -o z m'
test_expect_code 2 'w8a8 with zero points is refused' 'qgptq --scheme w8a8 --asym --calib c.st -o z m'
test_expect_code 2 'an unknown scheme' 'qgptq --scheme w3a16 --calib c.st -o z m'
test_expect_code 2 '--resume to a stream' 'qgptq --resume --calib c.st -o - m'
test_expect_code 2 '--clip mse-h without tokens' 'qgptq --method rtn --clip mse-h -o z m'
test_expect_code 2 'a missing model' 'qgptq --calib c.st -o z nowhere'
test_expect_success '--mem spills activations to scratch files without changing a bit' '
	qsynth -q --layers 2 --seed 4 -o mspill &&
	qcalib -q -m mspill --random -n 64 -L 128 --seed 2 -o big.st &&
	qgptq -v --mem 12MB --calib big.st -o sp12 mspill 2>log12 &&
	expect_grep log12 "spilled to zstd scratch files" &&
	qgptq -v --mem 16MB --calib big.st -o sp16 mspill 2>log16 &&
	expect_grep log16 "held in BF16" && ! grep -q spilled log16 &&
	for f in sp12/*.safetensors; do cmp "$f" "sp16/${f#sp12/}" || exit 1; done
'
test_expect_code 2 '--mem below what a layer needs besides its activations' '
	qgptq -q --mem 8MB --calib big.st -o sp8 mspill
'
# A Linear of more than 1024 rows and at least 1024 inputs gets err_out and
# err_rtn from a sample of its rows (err_rows); --exact-errors measures
# every row. The codes are the same either way.
test_expect_success 'setup: a layer of 1024 inputs whose gate/up have 2048 rows' '
	qsynth -q --preset tiny --layers 1 --hidden 1024 --intermediate 2048 --heads 8 \
		--kv-heads 2 --seed 6 -o mwide &&
	qcalib -q -m mwide --random -n 8 -L 256 --seed 3 -o cw.st &&
	qgptq -q --calib cw.st --report samp.jsonl -o wsamp mwide &&
	qgptq -q --exact-errors --calib cw.st --report exact.jsonl -o wexact mwide
'
test_expect_success 'sampled: gate/up on 512 rows, the rest on every row' '
	test "$(grep -c "\"err_rows\":512" samp.jsonl)" = 2 &&
	grep "mlp.gate_proj" samp.jsonl | grep -q "\"err_rows\":512" &&
	grep "mlp.up_proj" samp.jsonl | grep -q "\"err_rows\":512" &&
	! grep -q err_rows exact.jsonl &&
	grep "mlp.gate_proj" wsamp/quant_report.jsonl | grep -q "\"err_rows\":512"
'
test_expect_success '--exact-errors: the same codes and scales, errors within 2 %' '
	for f in wsamp/*.safetensors; do cmp "$f" "wexact/${f#wsamp/}" || exit 1; done &&
	errs samp.jsonl >es && errs exact.jsonl >ee && test "$(wc -l <es)" = 7 &&
	paste es ee | awk "{ if (\$1 != \$4) bad = 1; for (i = 2; i <= 3; i++) {
		r = \$i / \$(i + 3); if (r < 0.98 || r > 1.02) { print; bad = 1 } } } END { exit bad }" &&
	paste es ee | awk "\$1 ~ /q_proj|down_proj/ && (\$2 != \$5 || \$3 != \$6) { bad = 1 } END { exit bad }"
'
test_expect_success '--method rtn samples the same way: err_out is err_rtn, within 2 % of every row' '
	qgptq -q --method rtn --calib cw.st --report rs.jsonl -o wrs mwide &&
	qgptq -q --method rtn --exact-errors --calib cw.st --report re.jsonl -o wre mwide &&
	test "$(grep -c "\"err_rows\":512" rs.jsonl)" = 2 &&
	for f in wrs/*.safetensors; do cmp "$f" "wre/${f#wrs/}" || exit 1; done &&
	errs rs.jsonl >rs && errs re.jsonl >re && test "$(wc -l <rs)" = 7 &&
	paste rs re | awk "{ if (\$2 != \$3) bad = 1; r = \$2 / \$5; if (r < 0.98 || r > 1.02) { print; bad = 1 } }
		END { exit bad }"
'
test_expect_success '--help on stdout, exit 0' 'qgptq --help >h && expect_grep h "--actorder"'
test_done
