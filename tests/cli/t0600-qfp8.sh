#!/bin/sh
# t0600: qfp8 writes FP8 checkpoints, deterministic, from directories and pipes.
. "$(dirname "$0")/lib.sh"

# sh has no pipefail: a pipeline's status is its last command's. Write
# `producer CMD... | consumer && producers_ok`; a failed producer is noted
# in producers.err and producers_ok fails, naming it.
producer() { "$@" || echo "$1 exited with status $?" >>producers.err; }
producers_ok() { [ ! -s producers.err ] || { cat producers.err; rm -f producers.err; return 1; }; }

test_expect_success 'setup: a small model' '
	qsynth -q --preset tiny --layers 3 --seed 5 -o m
'
test_expect_success 'quantize a directory; the manifest verifies' '
	qfp8 -q --report r.jsonl -o f m && qcat --verify f &&
	test "$(wc -l <r.jsonl)" = 21 && test "$(wc -l <f/quant_report.jsonl)" = 21
'
test_expect_success 'config.json carries the float-quantized scheme' '
	expect_grep f/config.json "\"format\": \"float-quantized\"" &&
	expect_grep f/config.json "\"quant_method\": \"compressed-tensors\"" &&
	expect_grep f/config.json "\"strategy\": \"token\"" &&
	expect_grep f/config.json "\"lm_head\""
'
test_expect_success 'the tensors are F8_E4M3 codes with BF16 channel scales' '
	qcat --list f >list &&
	grep "model.layers.0.self_attn.q_proj.weight	" list | grep -q F8_E4M3 &&
	grep "model.layers.0.self_attn.q_proj.weight_scale	" list | grep -q "BF16" &&
	grep "model.layers.0.self_attn.q_proj.weight_scale	" list | grep -q "\[128, 1\]" &&
	grep "model.embed_tokens.weight	" list | grep -q BF16
'
test_expect_success 'the report shows small weight errors and no output errors' '
	! grep -v "\"err_out\":null" r.jsonl &&
	awk -F"\"err_w\":" "{ split(\$2, a, \",\"); if (a[1] > 0.01 || a[1] <= 0) exit 1 }" r.jsonl
'
test_expect_success 'a stream in and out gives the same checkpoint as directories' '
	producer qsynth -q --preset tiny --layers 3 --seed 5 -o - | qfp8 -q -o - - >s.tar && producers_ok &&
	mkdir x && tar xf s.tar -C x && qcat --verify x &&
	for f in f/*.safetensors f/config.json f/quant_report.jsonl; do cmp "$f" "x/${f#f/}" || exit 1; done
'
test_expect_success 'two runs give identical checkpoints' '
	qfp8 -q --report r.jsonl -o g m && diff -r f g
'
test_expect_success 'the history records both tools and the base model' '
	expect_grep f/quant_manifest.json "\"tool\": \"qsynth\"" &&
	expect_grep f/quant_manifest.json "\"tool\": \"qfp8\"" &&
	base=$(sed -n "/\"base\"/,/}/s/.*\"fingerprint\": \"\\(.*\\)\".*/\\1/p" m/quant_manifest.json) &&
	expect_grep f/quant_manifest.json "$base"
'
test_expect_success '--shared-scale gives q/k/v one scale' '
	qfp8 -q --shared-scale -o sh m && qcat --list sh >l2 &&
	grep "layers.1.self_attn.k_proj.weight_scale	" l2 | grep -q "\[1\]"
'
test_expect_success '--ignore leaves matching layers in BF16' '
	qfp8 -q --ignore "re:.*down_proj" -o ig m && qcat --list ig >l3 &&
	grep "layers.0.mlp.down_proj.weight	" l3 | grep -q BF16 &&
	! grep -q "down_proj.weight_scale" l3 && expect_grep ig/config.json "re:.*down_proj"
'
test_expect_code 2 'an already quantized input is refused' 'qfp8 -q -o z f'
test_expect_code 2 'static activations need a token set' 'qfp8 --act static -o z m'
test_expect_code 2 'a missing token set is an input error' 'qfp8 --calib nothere.st -o z m'
test_expect_success 'with a token set, err_out is measured and equals err_rtn' '
	qcalib -q -m m --random -n 4 -L 32 --seed 3 -o c.st &&
	qfp8 -q --calib c.st --report rc.jsonl -o fc m &&
	! grep -q "\"err_out\":null" rc.jsonl && expect_grep rc.jsonl "\"n_tokens\":128" &&
	sed "s/.*\"err_out\":\([^,]*\),.*\"err_rtn\":\([^,]*\),.*/\1 \2/" rc.jsonl |
		awk "\$1 != \$2 || \$1 <= 0 || \$1 > 0.01 { exit 1 }" &&
	expect_grep fc/quant_manifest.json "\"role\": \"calibration\""
'
test_expect_success 'the weights do not depend on the token set' '
	for f in f/*.safetensors; do cmp "$f" "fc/${f#f/}"; done
'
test_expect_success 'static input scales and KV-cache scales' '
	qfp8 -q --calib c.st --act static --kv-cache -o fs m && qcat --list fs >l4 &&
	test "$(grep -c "input_scale	" l4)" = 21 &&
	grep -q "layers.2.self_attn.k_scale	BF16	\[1\]" l4 &&
	grep -q "layers.2.self_attn.v_scale	BF16	\[1\]" l4 &&
	tr -d " \n" <fs/config.json | grep -q "\"input_activations\":{[^}]*\"dynamic\":false" &&
	tr -d " \n" <fs/config.json | grep -q "\"kv_cache_scheme\":{\"actorder\""
'
test_expect_success 'calibrated runs work on streams, tied and untied, and equal the directory runs' '
	producer qsynth -q --preset tiny --layers 3 --seed 5 -o - |
		qfp8 -q --calib c.st --act static --kv-cache -o - - >fs.tar && producers_ok &&
	mkdir y && tar xf fs.tar -C y &&
	for f in fs/*.safetensors fs/config.json; do cmp "$f" "y/${f#fs/}" || exit 1; done &&
	producer qsynth -q --preset tiny --layers 2 --no-tie --seed 5 -o - |
		producer qfp8 -q --calib c.st -o - - | qcat --verify - && producers_ok
'
test_expect_success 'qverify runs the static artifact with its activation quantization' '
	qverify fs --base m --tokens c.st -o v.json 2>verr && expect_grep verr "fp8 static" ||
	expect_grep v.json "fp8 static per-tensor"
'
test_expect_code 2 'a missing model is an input error' 'qfp8 -o z nowhere'
# put_bf16 FILE TENSOR INDEX BYTES: overwrite element INDEX of a BF16 tensor
# in a safetensors file with two bytes given as printf octal escapes
put_bf16() {
	n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
	o=$(head -c $((8 + n)) "$1" | tail -c "$n" | grep -o "\"$2\":{[^}]*}" |
		sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
	printf "$4" | dd of="$1" bs=1 seek=$((8 + n + o + 2 * $3)) conv=notrunc 2>/dev/null
}
test_expect_success 'NaN in a weight is an error naming the tensor' '
	cp -r m bad &&
	put_bf16 bad/model-00002-of-00003.safetensors model.layers.1.mlp.up_proj.weight 1 "\300\177" &&
	! qfp8 -q -o z bad 2>err && expect_one_message qfp8 err &&
	expect_grep err "model.layers.1.mlp.up_proj.weight" && expect_grep err "[0, 1]" &&
	test ! -e z && test ! -e z.partial
'
test_expect_success 'an infinity too' '
	cp -r m inf &&
	put_bf16 inf/model-00003-of-00003.safetensors model.layers.2.self_attn.o_proj.weight 129 "\200\177" &&
	! qfp8 -q -o z inf 2>err && expect_grep err "model.layers.2.self_attn.o_proj.weight" &&
	expect_grep err "[1, 1]"
'
test_done
