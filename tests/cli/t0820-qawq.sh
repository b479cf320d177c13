#!/bin/sh
# t0820: qawq. On a model with outlier channels every Linear ends below
# round to nearest and the artifact closer to the base than RTN and GPTQ;
# the report says what each smoothing point bought; --scales-only computes
# the base function; the pipe to qpack -f awq works and the release measures
# as the naive artifact; --then gptq, w8a16, v -> o without GQA, --ignore,
# --resume, --mem, streams, determinism; bad input is refused as qgptq
# refuses it (exit 2, one line, nothing written). The search itself is held
# to a plain reference implementation in tests/unit/test_awq.c.
. "$(dirname "$0")/lib.sh"

for t in qsynth qcalib qverify qpack qgptq qcat; do
	if ! command -v $t >/dev/null; then
		test_skip 'qawq' "$t not built"
		test_done
	fi
done

# kl FILE: kl_mean of a qverify report
kl() { sed -n 's/^    "kl_mean": \([^,]*\),$/\1/p' "$1"; }
# lt A B: A < B as numbers
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }
# "layer err_out err_rtn" for each line of a report
errs() {
	sed 's/.*"layer":"\([^"]*\)".*"err_out":\([^,]*\),.*"err_rtn":\([^,]*\),.*/\1 \2 \3/' "$1"
}
# put_bf16 FILE TENSOR INDEX BYTES: overwrite element INDEX of a BF16 tensor
put_bf16() {
	n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
	o=$(head -c $((8 + n)) "$1" | tail -c "$n" | grep -o "\"$2\":{[^}]*}" |
		sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
	printf "$4" | dd of="$1" bs=1 seek=$((8 + n + o + 2 * $3)) conv=notrunc 2>/dev/null
}
# sh has no pipefail: `producer CMD... | consumer && producers_ok`
producer() { "$@" || echo "$1 exited with status $?" >>producers.err; }
producers_ok() { [ ! -s producers.err ] || { cat producers.err; rm -f producers.err; return 1; }; }
# thash DIR TENSOR: the tensor's XXH3-64 in DIR's manifest
thash() {
	tr -d ' \n' <"$1/quant_manifest.json" | grep -o "\"$2\":{[^}]*}" |
		sed 's/.*"xxh3_64":"\([0-9a-f]*\)".*/\1/'
}
# verify NAME MODEL: KL of NAME against MODEL on the evaluation tokens into NAME.json
verify() { qverify "$1" --base "$2" --tokens e.st -o "$1.json" 2>/dev/null; }
# the loss sample of most runs here: 4 of the 16 calibration sequences
L="--loss-tokens 512"

test_expect_success 'setup: a model with outlier channels (GQA) and two token sets' '
	qsynth -q --preset tiny --layers 3 --hidden 256 --intermediate 768 --heads 8 \
		--kv-heads 4 --seed 11 -o m &&
	qcalib -q -m m --random -n 16 -L 128 --seed 1 -o c.st &&
	qcalib -q -m m --random -n 8 -L 128 --seed 9 -o e.st
'

test_expect_success 'w4a16: a checkpoint whose manifest verifies, one report line per Linear' '
	qawq -q $L --calib c.st --report r.jsonl -o a m && qcat --verify a &&
	test "$(wc -l <r.jsonl)" = 21 && test "$(wc -l <a/quant_report.jsonl)" = 21
'

test_expect_success 'config.json and tensors: int4 groups of 128 with zero points, norms rewritten' '
	expect_grep a/config.json "\"format\": \"naive-quantized\"" &&
	expect_grep a/config.json "\"group_size\": 128" &&
	expect_grep a/config.json "\"num_bits\": 4" &&
	expect_grep a/config.json "\"symmetric\": false" &&
	qcat --list a >list &&
	grep "model.layers.0.self_attn.q_proj.weight	" list | grep -q I8 &&
	grep "model.layers.0.mlp.down_proj.weight_zero_point	" list | grep -q "I8.*\[256, 6\]" &&
	grep "model.layers.2.input_layernorm.weight	" list | grep -q BF16 &&
	a0=$(thash a model.layers.0.input_layernorm.weight) &&
	m0=$(thash m model.layers.0.input_layernorm.weight) &&
	test -n "$a0" && test -n "$m0" && test "$a0" != "$m0" &&
	test "$(thash a model.embed_tokens.weight)" = "$(thash m model.embed_tokens.weight)"
'

test_expect_success 'every Linear: err_out below err_rtn; each point reports its ratio, losses, clips' '
	errs r.jsonl >e && test "$(wc -l <e)" = 21 &&
	awk "{ if (!(\$2 > 0 && \$2 < \$3)) { print \"not below RTN:\", \$0; bad = 1 } } END { exit bad }" e &&
	test "$(grep -c "\"smooth\":{\"prev\":\"input_layernorm\"" r.jsonl)" = 9 &&
	test "$(grep -c "\"smooth\":{\"prev\":\"mlp.up_proj\"" r.jsonl)" = 3 &&
	test "$(grep -c "\"smooth_rows\":{\"prev\":\"mlp.up_proj\"" r.jsonl)" = 3 &&
	grep "self_attn.o_proj" r.jsonl | grep -q "\"smooth\":null" &&
	grep "self_attn.q_proj" r.jsonl | grep -q "\"clip\":null" &&
	grep "mlp.down_proj" r.jsonl | grep -q "\"clip\":{\"groups\":1536,\"clipped\":" &&
	expect_grep r.jsonl "\"loss_r0\":" && expect_grep r.jsonl "\"loss_rtn\":" &&
	expect_grep r.jsonl "\"duo_scaling\":true" && expect_grep r.jsonl "\"n_tokens\":2048" &&
	expect_grep r.jsonl "\"err_tokens\":512"
'

test_expect_success 'AWQ ends closer to the base than round to nearest and than GPTQ' '
	qgptq -q --method rtn --asym --calib c.st -o rtn m && qgptq -q --calib c.st -o gq m &&
	verify a m && verify rtn m && verify gq m &&
	echo "KL: awq $(kl a.json), gptq $(kl gq.json), rtn $(kl rtn.json)" &&
	lt "$(kl a.json)" "$(kl rtn.json)" && lt "$(kl a.json)" "$(kl gq.json)"
'

test_expect_success '--scales-only: the smoothed BF16 model computes the base function' '
	qawq -q --scales-only --calib c.st --report rs.jsonl -o s m &&
	cmp m/config.json s/config.json && verify s m && lt "$(kl s.json)" 0.0001 &&
	test "$(wc -l <rs.jsonl)" = 9 &&
	expect_grep rs.jsonl "\"layer\":\"model.layers.1.post_attention_layernorm\"" &&
	expect_grep rs.jsonl "\"pow2\":true" && expect_grep rs.jsonl "\"err_tokens\":2048" &&
	qcat --list s >ls && grep "layers.0.mlp.up_proj.weight	" ls | grep -q BF16 &&
	! grep -q weight_scale ls
'

test_expect_success '--scales-only --pow2 off: scales as searched, every smoothed weight rounded once' '
	qawq -q $L --scales-only --pow2 off --calib c.st -o s2 m && verify s2 m &&
	echo "KL $(kl s2.json)" && lt 0 "$(kl s2.json)" && lt "$(kl s2.json)" 0.001
'

test_expect_success 'qawq -o - | qpack -f awq in one pipe; the release measures as the naive one' '
	producer qawq -q $L --calib c.st -o - m | qpack -q -f awq -o rel - && producers_ok &&
	expect_grep rel/config.json "\"quant_method\": \"awq\"" &&
	verify rel m && grep -v "\"artifact\"" rel.json >x1 && grep -v "\"artifact\"" a.json >x2 &&
	expect_same x1 x2 &&
	qpack -q -f compressed-tensors -o relct a && verify relct m &&
	test "$(kl relct.json)" = "$(kl a.json)"
'

test_expect_success 'a stream in and two runs: the same checkpoint' '
	producer qcat -q -o - m | qawq -q $L --calib c.st -o - - >s.tar && producers_ok &&
	mkdir x && tar xf s.tar -C x &&
	for f in a/*.safetensors a/config.json a/quant_report.jsonl; do cmp "$f" "x/${f#a/}" || exit 1; done
'

test_expect_success '--then gptq: GPTQ on the smoothed weights, below RTN, closer than either alone' '
	qawq -q $L --then gptq --calib c.st --report rg.jsonl -o ag m &&
	expect_grep rg.jsonl "\"method\":\"awq+gptq\"" && expect_grep rg.jsonl "\"damp\":" &&
	errs rg.jsonl | awk "{ if (!(\$2 < \$3)) exit 1 }" &&
	expect_grep ag/config.json "\"observer\": \"mse\"" &&
	verify ag m && echo "KL awq+gptq $(kl ag.json)" && lt "$(kl ag.json)" "$(kl gq.json)"
'

test_expect_success '--duo-scaling off --grid 10 --sym --no-clip: what the options say' '
	qawq -q $L --duo-scaling off --grid 10 --sym --no-clip --calib c.st --report rd.jsonl -o d m &&
	expect_grep rd.jsonl "\"duo_scaling\":false" && ! grep -q "\"clip\":{" rd.jsonl &&
	expect_grep d/config.json "\"symmetric\": true" && qcat --list d >ld &&
	! grep -q weight_zero_point ld &&
	sed "s/.*\"ratio\":\([0-9.e-]*\).*/\1/;t;d" rd.jsonl |
		awk "{ r = \$1 * 10; if (r != int(r) || \$1 >= 1) exit 1 }" &&
	errs rd.jsonl | awk "{ if (!(\$2 <= \$3)) exit 1 }" &&
	grep "o_proj" rd.jsonl | grep -q "\"smooth\":null"
'

test_expect_success 'w8a16: int8, one scale per output channel, below RTN' '
	qawq -q $L --scheme w8a16 --calib c.st --report r8.jsonl -o w8 m && qcat --list w8 >l8 &&
	grep "layers.1.mlp.down_proj.weight_scale	" l8 | grep -q "\[256, 1\]" &&
	expect_grep w8/config.json "\"strategy\": \"channel\"" &&
	errs r8.jsonl | awk "{ if (!(\$2 < \$3)) exit 1 }"
'

test_expect_success 'without GQA: v -> o smoothed too, the function kept by --scales-only' '
	qsynth -q --preset tiny --layers 2 --hidden 256 --intermediate 768 --heads 8 --kv-heads 8 \
		--seed 12 -o mh &&
	qawq -q $L --calib c.st --report rv.jsonl -o av mh &&
	test "$(grep -c "\"smooth\":{\"prev\":\"self_attn.v_proj\"" rv.jsonl)" = 2 &&
	grep "self_attn.v_proj\"" rv.jsonl | grep -q "\"smooth_rows\":{\"prev\":\"self_attn.v_proj\"" &&
	errs rv.jsonl | awk "{ if (!(\$2 < \$3)) exit 1 }" &&
	qawq -q $L --scales-only --calib c.st -o sv mh && verify sv mh && lt "$(kl sv.json)" 0.0001
'

test_expect_success '--ignore: the Linear stays BF16 and its point is not smoothed' '
	qawq -q $L --ignore "re:.*down_proj" --calib c.st --report ri.jsonl -o ig m && qcat --list ig >li &&
	grep "layers.0.mlp.down_proj.weight	" li | grep -q BF16 && ! grep -q "down_proj.weight_scale" li &&
	test "$(wc -l <ri.jsonl)" = 18 && ! grep -q "\"prev\":\"mlp.up_proj\"" ri.jsonl &&
	test "$(thash ig model.layers.1.mlp.down_proj.weight)" = \
		"$(thash m model.layers.1.mlp.down_proj.weight)" &&
	test "$(thash ig model.layers.1.mlp.up_proj.weight)" != \
		"$(thash m model.layers.1.mlp.up_proj.weight)" &&
	errs ri.jsonl | awk "{ if (!(\$2 < \$3)) exit 1 }" && qverify -q ig >/dev/null
'

test_expect_success '--mem: BF16 activations when FP32 ones do not fit' '
	qawq $L --mem 38.5MB --calib c.st -o mem m 2>err && expect_grep err "activations held in BF16" &&
	qverify -q mem >/dev/null
'

test_expect_success '--resume after a failed run gives the same checkpoint' '
	cp -r m bad &&
	put_bf16 bad/model-00003-of-00003.safetensors model.layers.2.mlp.up_proj.weight 1 "\300\177" &&
	! qawq -q $L --resume --calib c.st -o res bad 2>/dev/null && test -d res.partial && test ! -e res &&
	cp m/model-00003-of-00003.safetensors bad/ &&
	qawq $L --resume --calib c.st -o res bad 2>err && expect_grep err "layers 0 to 1 are done" &&
	for f in a/*.safetensors a/quant_report.jsonl; do cmp "$f" "res/${f#a/}" || exit 1; done
'

test_expect_success '--resume with other options refuses the partial run' '
	put_bf16 bad/model-00003-of-00003.safetensors model.layers.2.mlp.up_proj.weight 1 "\300\177" &&
	! qawq -q $L --resume --calib c.st -o res2 bad 2>/dev/null &&
	st=0 && qawq -q $L --resume --grid 10 --calib c.st -o res2 m 2>err || st=$? &&
	test $st = 2 && expect_one_message qawq err && expect_grep err "another set of options"
'

test_expect_success 'NaN in a weight: exit 2, one message naming the tensor, no output' '
	st=0 && qawq -q $L --calib c.st -o z bad 2>err || st=$? &&
	test $st = 2 && expect_one_message qawq err &&
	expect_grep err "model.layers.2.mlp.up_proj" && test ! -e z && test ! -e z.partial
'

test_expect_success 'a shape that disagrees with config.json: exit 2' '
	rm -rf shp && cp -r m shp &&
	sed "s/\"intermediate_size\": 768/\"intermediate_size\": 512/" m/config.json >shp/config.json &&
	st=0 && qawq -q $L --calib c.st -o z shp 2>err || st=$? &&
	test $st = 2 && expect_one_message qawq err && expect_grep err "mlp" && test ! -e z
'

test_expect_success 'token ids beyond the vocabulary: exit 2 naming the token set' '
	qsynth -q --preset tiny --vocab 1024 -o big && qcalib -q -m big --random -n 2 -L 64 -o big.st &&
	st=0 && qawq -q --calib big.st -o z m 2>err || st=$? &&
	test $st = 2 && expect_one_message qawq err && expect_grep err "big.st" &&
	expect_grep err "vocabulary" && test ! -e z
'

test_expect_code 2 '--mem below what a layer needs: an error before any work' '
	qawq $L --mem 100KB --calib c.st -o mem2 m 2>err; st=$?;
	expect_one_message qawq err && expect_grep err "too small" && test ! -e mem2 && exit $st
'
test_expect_code 2 'an already quantized input is refused' 'qawq -q $L --calib c.st -o z a'
test_expect_code 2 'no token set is a usage error' 'qawq -q -o z m'
test_expect_code 2 'a group size that is not offered' 'qawq --group-size 48 --calib c.st -o z m'
test_expect_code 2 'an unknown scheme' 'qawq --scheme w8a8 --calib c.st -o z m'
test_expect_code 2 '--resume to a stream' 'qawq $L --resume --calib c.st -o - m'
test_expect_code 2 'a missing model' 'qawq --calib c.st -o z nowhere'
test_expect_code 2 '--then something else' 'qawq --then rtn --calib c.st -o z m'
test_expect_code 2 '--duo-scaling neither on nor off' 'qawq --duo-scaling maybe --calib c.st -o z m'
test_expect_code 2 'a grid of no ratios' 'qawq --grid 0 --calib c.st -o z m'
test_expect_code 2 '--scales-only with --then gptq' 'qawq --scales-only --then gptq --calib c.st -o z m'
test_expect_code 2 '--scales-only with --ignore' 'qawq --scales-only --ignore lm_head --calib c.st -o z m'
test_expect_success 'usage errors leave nothing and say one thing' '
	st=0 && qawq --grid 0 --calib c.st -o z m 2>err || st=$? &&
	test $st = 2 && test ! -e z && head -n 1 err | grep -q "^qawq: "
'
test_done
