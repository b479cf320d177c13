#!/bin/sh
# t0800: qsmooth. The smoothed model computes the base function; W8A8 with
# smoothing beats W8A8 without, for RTN and GPTQ weights; --alpha search is
# at least as good as the best of the fixed 0.3, 0.5, 0.8; the pipe to qgptq
# and qpack works and the release measures as the naive artifact; static
# and dynamic W8A8 both evaluate; bad input is refused.
. "$(dirname "$0")/lib.sh"

# kl FILE: kl_mean of a qverify report
kl() { sed -n 's/^    "kl_mean": \([^,]*\),$/\1/p' "$1"; }
# lt A B: A < B as numbers
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }
# put_bf16 FILE TENSOR INDEX BYTES: overwrite element INDEX of a BF16 tensor
put_bf16() {
	n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
	o=$(head -c $((8 + n)) "$1" | tail -c "$n" | grep -o "\"$2\":{[^}]*}" |
		sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
	printf "$4" | dd of="$1" bs=1 seek=$((8 + n + o + 2 * $3)) conv=notrunc 2>/dev/null
}
# w8a8 NAME MODEL METHOD: quantize MODEL as W8A8 with METHOD and measure it
# against the base into NAME.json
w8a8() {
	qgptq -q --scheme w8a8 --method "$3" --calib c.st -o "$1" "$2" &&
	qverify "$1" --base m --tokens e.st -o "$1.json" 2>/dev/null
}

test_expect_success 'setup: a model with outlier channels and two token sets' '
	qsynth -q --preset tiny --layers 4 --hidden 256 --intermediate 768 --heads 8 \
		--kv-heads 4 --seed 11 -o m &&
	qcalib -q -m m --random -n 32 -L 128 --seed 1 -o c.st &&
	qcalib -q -m m --random -n 16 -L 128 --seed 9 -o e.st
'

test_expect_success 'the smoothed model computes the base function (KL below 1e-4)' '
	qsmooth -q --calib c.st --report r.jsonl -o s05 m &&
	qverify s05 --base m --tokens e.st --max-kl 0.0001 -o v.json 2>/dev/null &&
	lt "$(kl v.json)" 0.0001 &&
	cmp m/config.json s05/config.json
'

test_expect_success 'one report line per smoothed group, with what it bought' '
	test "$(wc -l <r.jsonl)" = 8 &&
	expect_grep r.jsonl "\"layer\":\"model.layers.3.post_attention_layernorm\"" &&
	expect_grep r.jsonl "\"balance\":[\"mlp.gate_proj\",\"mlp.up_proj\"]" &&
	expect_grep r.jsonl "\"alpha\":0.5" && expect_grep r.jsonl "\"act_qerr_after\":" &&
	sed "s/.*\"err_out\":\([^,]*\),.*\"err_rtn\":\([^,]*\),.*/\1 \2/" r.jsonl >errs &&
	while read -r eo er; do
		lt "$eo" "$er" || { echo "err_out $eo not below $er"; exit 1; }
	done <errs
'

test_expect_success 'W8A8 with smoothing beats W8A8 without, for RTN and for GPTQ' '
	w8a8 plain-rtn m rtn && w8a8 plain-gptq m gptq &&
	w8a8 s05-rtn s05 rtn && w8a8 s05-gptq s05 gptq &&
	echo "rtn $(kl plain-rtn.json) -> $(kl s05-rtn.json), gptq $(kl plain-gptq.json) -> $(kl s05-gptq.json)" &&
	lt "$(kl s05-rtn.json)" "$(kl plain-rtn.json)" &&
	lt "$(kl s05-gptq.json)" "$(kl plain-gptq.json)"
'

test_expect_success '--alpha search is at least as good as the best of 0.3, 0.5 and 0.8' '
	qsmooth -q --alpha 0.3 --calib c.st -o s03 m && qsmooth -q --alpha 0.8 --calib c.st -o s08 m &&
	qsmooth -q --alpha search --report rs.jsonl --calib c.st -o ss m &&
	for a in 03 08 s; do w8a8 s$a-rtn s$a rtn || exit 1; w8a8 s$a-gptq s$a gptq || exit 1; done &&
	for q in rtn gptq; do
		best=$(for a in 03 05 08; do kl s$a-$q.json || exit 1; done | sort -g | head -n 1)
		echo "$q: search $(kl ss-$q.json), best fixed $best"
		test -n "$best" || exit 1
		awk -v s="$(kl ss-$q.json)" -v b="$best" "BEGIN { exit !(s <= b) }" || exit 1
	done &&
	expect_grep rs.jsonl "\"alpha_mode\":\"search\"" &&
	test "$(grep -c "\"alpha\":" rs.jsonl)" = 8
'

test_expect_success 'smooth | qgptq w8a8 | qpack in one pipe; the release measures as the naive one' '
	producer() { "$@" || echo "$1 failed" >>pipe.err; } &&
	producer qsmooth -q --calib c.st -o - m | producer qgptq -q --scheme w8a8 --calib c.st -o - - |
		qpack -q -o rel - && test ! -s pipe.err &&
	qgptq -q --scheme w8a8 --calib c.st -o naive s05 &&
	qverify rel --base m --tokens e.st -o a.json 2>/dev/null &&
	qverify naive --base m --tokens e.st -o b.json 2>/dev/null &&
	grep -v "\"artifact\"" a.json >a2 && grep -v "\"artifact\"" b.json >b2 &&
	expect_same a2 b2
'

test_expect_success 'static W8A8: int8 input scales, packed as int-quantized, evaluated as vLLM runs it' '
	qgptq -q --scheme w8a8 --act static --calib c.st -o st s05 &&
	qcat --list st >l && grep "layers.0.self_attn.q_proj.input_scale	" l | grep -q "BF16.*\[1\]" &&
	tr -d " \n" <st/config.json | grep -q "\"input_activations\":{[^}]*\"dynamic\":false" &&
	qpack -q -o stp st && expect_grep stp/config.json "\"format\": \"int-quantized\"" &&
	qverify st --base m --tokens e.st -o s1.json 2>/dev/null &&
	qverify stp --base m --tokens e.st -o s2.json 2>/dev/null &&
	test "$(kl s1.json)" = "$(kl s2.json)" &&
	lt "$(kl s05-rtn.json)" "$(kl s1.json)"
'

test_expect_success '--resume after a failed run gives the same checkpoint' '
	cp -r m bad &&
	put_bf16 bad/model-00004-of-00004.safetensors model.layers.3.mlp.up_proj.weight 1 "\300\177" &&
	! qsmooth -q --resume --calib c.st -o res bad 2>/dev/null && test -d res.partial &&
	cp m/model-00004-of-00004.safetensors bad/ &&
	qsmooth --resume --calib c.st -o res bad 2>err && expect_grep err "layers 0 to 2 are done" &&
	for f in s05/*.safetensors s05/quant_report.jsonl; do cmp "$f" "res/${f#s05/}" || exit 1; done
'

test_expect_success 'NaN in a weight: exit 2, one message naming the tensor, no output' '
	put_bf16 bad/model-00002-of-00004.safetensors model.layers.1.self_attn.k_proj.weight 3 "\300\177" &&
	st=0; qsmooth -q --calib c.st -o z bad 2>err || st=$?
	test $st = 2 && expect_one_message qsmooth err &&
	expect_grep err "model.layers.1.self_attn.k_proj" && test ! -e z && test ! -e z.partial
'

test_expect_success 'a token set for another vocabulary: exit 2, nothing written' '
	qsynth -q --preset tiny --vocab 1024 -o big && qcalib -q -m big --random -n 2 -L 64 -o far.st &&
	st=0; qsmooth -q --calib far.st -o z m 2>err || st=$?
	test $st = 2 && expect_one_message qsmooth err && expect_grep err vocabulary && test ! -e z
'
test_expect_success '--smooth-vo and --smooth-ud without grouped-query attention: same function' '
	qsynth -q --preset tiny --layers 2 --hidden 256 --intermediate 768 --heads 8 --kv-heads 8 \
		--seed 12 -o mh &&
	qsmooth -q --smooth-vo --smooth-ud --report rv.jsonl --calib c.st -o sv mh &&
	test "$(wc -l <rv.jsonl)" = 8 && expect_grep rv.jsonl "\"layer\":\"model.layers.1.self_attn.v_proj\"" &&
	expect_grep rv.jsonl "\"balance\":[\"mlp.down_proj\"]" &&
	qverify sv --base mh --tokens e.st -o vv.json 2>/dev/null && lt "$(kl vv.json)" 0.0001
'
test_expect_code 2 'alpha above 1' 'qsmooth --alpha 1.5 --calib c.st -o z m'
test_expect_code 2 'alpha below 0' 'qsmooth --alpha -0.1 --calib c.st -o z m'
test_expect_code 2 'alpha that is not a number' 'qsmooth --alpha lots --calib c.st -o z m'
test_expect_code 2 'no token set' 'qsmooth -o z m'
test_expect_code 2 '--ignore: nothing is quantized' 'qsmooth --ignore lm_head --calib c.st -o z m'
test_expect_code 2 '--smooth-vo with grouped-query attention' 'qsmooth -q --smooth-vo --calib c.st -o z m'
test_expect_code 2 'an already quantized input' 'qsmooth -q --calib c.st -o z naive'
test_done
