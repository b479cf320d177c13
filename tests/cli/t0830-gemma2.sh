#!/bin/sh
# t0830: the quantizers on a Gemma 2 model (qsynth's gemma2-tiny: (1 + w)
# norms, sandwich norms, GeGLU, soft-capping, a 16-token window that the
# 64-token sequences outgrow). Smoothing (qsmooth, qawq --scales-only) folds
# its scales into the (1 + w) norms as w' = (1 + w) / s - 1 and keeps the
# function (KL below 1e-4); GPTQ W4A16, AWQ, FP8 and SmoothQuant + W8A8 pack
# and verify end to end; features the runtime lacks are refused (exit 2,
# naming the config field) before any output.
. "$(dirname "$0")/lib.sh"

# kl FILE: kl_mean of a qverify report
kl() { sed -n 's/^    "kl_mean": \([^,]*\),$/\1/p' "$1"; }
# lt A B: A < B as numbers
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }
# edit_config DIR KEY JSON: a copy of checkpoint m in DIR with config.json's
# KEY set to JSON
edit_config() {
	rm -rf "$1" && cp -r m "$1" &&
	sed "s/^{\$/{\n  \"$2\": $3,/" m/config.json >"$1/config.json"
}

test_expect_success 'setup: a Gemma 2 model and two token sets longer than its window' '
	qsynth -q --preset gemma2-tiny --seed 3 -o m &&
	expect_grep m/config.json "\"model_type\": \"gemma2\"" &&
	expect_grep m/config.json "\"sliding_window\": 16" &&
	qcalib -q -m m --random -n 16 -L 64 --seed 1 -o c.st &&
	qcalib -q -m m --random -n 8 -L 64 --seed 2 -o e.st
'

test_expect_success 'qsmooth keeps the function (KL below 1e-4), writing the Gemma 2 norm names' '
	qsmooth -q --calib c.st --report r.jsonl -o s m &&
	qverify s --base m --tokens e.st --max-kl 0.0001 -o v.json 2>/dev/null &&
	echo "smoothed KL $(kl v.json)" && lt "$(kl v.json)" 0.0001 &&
	expect_grep r.jsonl "\"layer\":\"model.layers.1.pre_feedforward_layernorm\"" &&
	expect_grep r.jsonl "\"layer\":\"model.layers.0.input_layernorm\"" &&
	cmp m/config.json s/config.json
'

test_expect_success 'qawq --scales-only keeps the function too' '
	qawq -q --scales-only --calib c.st -o a0 m &&
	qverify a0 --base m --tokens e.st --max-kl 0.0001 -o va0.json 2>/dev/null &&
	echo "AWQ scales KL $(kl va0.json)" && lt "$(kl va0.json)" 0.0001
'

test_expect_success 'SmoothQuant + W8A8 packs and verifies, and beats W8A8 alone' '
	qgptq -q --scheme w8a8 --calib c.st -o w8s s && qpack -q -o rel-w8s w8s &&
	qverify rel-w8s --base m --tokens e.st -o vw8s.json 2>/dev/null &&
	qgptq -q --scheme w8a8 --calib c.st -o w8 m &&
	qverify w8 --base m --tokens e.st -o vw8.json 2>/dev/null &&
	echo "W8A8 KL $(kl vw8.json), smoothed first $(kl vw8s.json)" &&
	lt "$(kl vw8s.json)" "$(kl vw8.json)"
'

test_expect_success 'GPTQ W4A16, AWQ and FP8 pack and verify end to end' '
	qgptq -q --scheme w4a16 --calib c.st -o w4 m && qpack -q -o rel-w4 w4 &&
	qverify rel-w4 --base m --tokens e.st -o vw4.json 2>/dev/null &&
	qawq -q --calib c.st -o awq m && qpack -q -f awq -o rel-awq awq &&
	qverify rel-awq --base m --tokens e.st -o vawq.json 2>/dev/null &&
	qfp8 -q --calib c.st --act static --kv-cache -o fp8 m && qpack -q -o rel-fp8 fp8 &&
	qverify rel-fp8 --base m --tokens e.st -o vfp8.json 2>/dev/null &&
	echo "KL: GPTQ W4A16 $(kl vw4.json), AWQ $(kl vawq.json), FP8 $(kl vfp8.json)" &&
	lt "$(kl vawq.json)" "$(kl vw4.json)" && lt "$(kl vfp8.json)" "$(kl vw4.json)"
'

# put_bf16 FILE TENSOR INDEX BYTES: overwrite element INDEX of a BF16 tensor
put_bf16() {
	n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
	o=$(head -c $((8 + n)) "$1" | tail -c "$n" | grep -o "\"$2\":{[^}]*}" |
		sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
	printf "$4" | dd of="$1" bs=1 seek=$((8 + n + o + 2 * $3)) conv=notrunc 2>/dev/null
}

# a resumed run reads the smoothed (1 + w) norms of its finished layers
# back as the model applies them, so the rest of the walk is the same
test_expect_success 'setup: three layers, and a copy with a NaN in the last' '
	qsynth -q --preset gemma2-tiny --layers 3 --seed 4 -o m3 &&
	cp -r m3 bad &&
	put_bf16 bad/model-00003-of-00003.safetensors model.layers.2.mlp.up_proj.weight 1 "\300\177"
'
for method in "qsmooth --calib c.st" "qawq --calib c.st"; do
	tool=${method%% *}
	test_expect_success "$tool: --resume after a failed run gives the same bytes" "
		rm -rf full res res.partial &&
		$method -q --threads 2 -o full m3 &&
		st=0; $method -q --threads 2 --resume -o res bad 2>err || st=\$?
		test \$st = 2 && test ! -e res && test -f res.partial/$tool-resume.json &&
		cp m3/model-00003-of-00003.safetensors bad/ &&
		$method --threads 2 --resume -o res bad 2>err &&
		expect_grep err 'layers 0 to 1 are done' &&
		same_dirs full res
	"
	put_bf16 bad/model-00003-of-00003.safetensors model.layers.2.mlp.up_proj.weight 1 '\300\177'
done

test_expect_code 2 'mixture-of-experts layers are refused, naming the key, before any output' '
	edit_config moe num_local_experts 8 &&
	qgptq -q --scheme w4a16 --calib c.st -o moe-out moe 2>err; st=$?
	cat err; expect_one_message qgptq err &&
	expect_grep err "num_local_experts" && test ! -e moe-out && exit $st
'

test_expect_code 2 'Gemma 3 (QK-norm) is refused by its model_type' '
	rm -rf g3 && cp -r m g3 &&
	sed "s/\"gemma2\"/\"gemma3_text\"/" m/config.json >g3/config.json &&
	qverify g3 --tokens e.st 2>err; st=$?
	cat err; expect_grep err "unsupported model_type '"'"'gemma3_text'"'"'" && exit $st
'

test_expect_code 2 'a Gemma 2 layer_types pattern the runtime lacks is refused' '
	edit_config lt layer_types "[\"full_attention\", \"sliding_attention\"]" &&
	qfp8 -q -o lt-out lt 2>err; st=$?
	cat err; expect_grep err "layer_types" && test ! -e lt-out && exit $st
'

test_done
