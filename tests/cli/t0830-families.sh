#!/bin/sh
# t0830: the quantizers on the model families (doc/models.md): a Gemma 2
# model (qsynth's gemma2-tiny: (1 + w) norms, sandwich norms, GeGLU,
# soft-capping, a 16-token window that the 64-token sequences outgrow) and a
# Vicuna-shaped one (Llama 2). Smoothing (qsmooth, qawq --scales-only) keeps
# the function (KL below 1e-4; for Gemma folded into the (1 + w) norms as
# w' = (1 + w) / s - 1); GPTQ W4A16, AWQ, FP8 and SmoothQuant + W8A8 pack and
# verify end to end; a resumed Gemma 2 run reads its smoothed norms back
# right; features the runtime lacks are refused (exit 2, naming the config
# field) before any output.
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

# the families' models: Gemma 2 as published (its window outgrown by the
# 64-token sequences), and Vicuna v1.5's (Llama 2) shape cut small
for fam in gemma2 vicuna qwen2; do
	if [ $fam = gemma2 ]; then
		make_model="qsynth -q --preset gemma2-tiny --seed 3 -o m-$fam"
		norm2=pre_feedforward_layernorm
	elif [ $fam = qwen2 ]; then
		make_model="qsynth -q --preset qwen2-0.5b --layers 2 --hidden 128 --intermediate 384 \
			--heads 4 --kv-heads 2 --vocab 512 --seed 3 -o m-$fam"
		norm2=post_attention_layernorm
	else
		make_model="qsynth -q --preset vicuna-7b --layers 2 --hidden 128 --intermediate 384 \
			--heads 4 --kv-heads 4 --vocab 512 --seed 3 -o m-$fam"
		norm2=post_attention_layernorm
	fi
	test_expect_success "$fam: setup: the model and two token sets" "
		$make_model &&
		qcalib -q -m m-$fam --random -n 16 -L 64 --seed 1 -o c-$fam.st &&
		qcalib -q -m m-$fam --random -n 8 -L 64 --seed 2 -o e-$fam.st
	"
	# ver NAME: qverify artifact NAME against the base into NAME.json
	ver="qverify --base m-$fam --tokens e-$fam.st"
	test_expect_success "$fam: qsmooth keeps the function (KL below 1e-4), naming the family's norms" "
		qsmooth -q --calib c-$fam.st --report r-$fam.jsonl -o s-$fam m-$fam &&
		$ver s-$fam --max-kl 0.0001 -o v-s-$fam.json 2>/dev/null &&
		echo \"smoothed KL \$(kl v-s-$fam.json)\" && lt \"\$(kl v-s-$fam.json)\" 0.0001 &&
		expect_grep r-$fam.jsonl '\"layer\":\"model.layers.1.$norm2\"' &&
		expect_grep r-$fam.jsonl '\"layer\":\"model.layers.0.input_layernorm\"' &&
		cmp m-$fam/config.json s-$fam/config.json
	"
	test_expect_success "$fam: qawq --scales-only keeps the function too" "
		qawq -q --scales-only --calib c-$fam.st -o a0-$fam m-$fam &&
		$ver a0-$fam --max-kl 0.0001 -o v-a0-$fam.json 2>/dev/null &&
		echo \"AWQ scales KL \$(kl v-a0-$fam.json)\" && lt \"\$(kl v-a0-$fam.json)\" 0.0001
	"
	test_expect_success "$fam: SmoothQuant + W8A8 packs and verifies, and beats W8A8 alone" "
		qgptq -q --scheme w8a8 --calib c-$fam.st -o w8s-$fam s-$fam &&
		qpack -q -o rel-w8s-$fam w8s-$fam &&
		$ver rel-w8s-$fam -o v-w8s-$fam.json 2>/dev/null &&
		qgptq -q --scheme w8a8 --calib c-$fam.st -o w8-$fam m-$fam &&
		$ver w8-$fam -o v-w8-$fam.json 2>/dev/null &&
		echo \"W8A8 KL \$(kl v-w8-$fam.json), smoothed first \$(kl v-w8s-$fam.json)\" &&
		lt \"\$(kl v-w8s-$fam.json)\" \"\$(kl v-w8-$fam.json)\"
	"
	test_expect_success "$fam: GPTQ W4A16, AWQ and FP8 pack and verify end to end" "
		qgptq -q --scheme w4a16 --calib c-$fam.st -o w4-$fam m-$fam &&
		qpack -q -o rel-w4-$fam w4-$fam && $ver rel-w4-$fam -o v-w4-$fam.json 2>/dev/null &&
		qawq -q --calib c-$fam.st -o awq-$fam m-$fam &&
		qpack -q -f awq -o rel-awq-$fam awq-$fam &&
		$ver rel-awq-$fam -o v-awq-$fam.json 2>/dev/null &&
		qfp8 -q --calib c-$fam.st --act static --kv-cache -o fp8-$fam m-$fam &&
		qpack -q -o rel-fp8-$fam fp8-$fam && $ver rel-fp8-$fam -o v-fp8-$fam.json 2>/dev/null &&
		echo \"KL: GPTQ W4A16 \$(kl v-w4-$fam.json), AWQ \$(kl v-awq-$fam.json), FP8 \$(kl v-fp8-$fam.json)\" &&
		lt \"\$(kl v-awq-$fam.json)\" \"\$(kl v-w4-$fam.json)\" &&
		lt \"\$(kl v-fp8-$fam.json)\" \"\$(kl v-w4-$fam.json)\"
	"
done
cp -r m-gemma2 m && cp c-gemma2.st c.st && cp e-gemma2.st e.st

# tensor DIR NAME: the dtype and bytes (hex) of tensor NAME in checkpoint DIR
tensor() {
	for f in "$1"/*.safetensors; do
		n=$(od -An -tu8 -N8 "$f" | tr -d ' ')
		h=$(head -c $((8 + n)) "$f" | tail -c "$n" | grep -o "\"$2\":{[^}]*}") || continue
		echo "$h" | sed 's/.*"dtype":"\([^"]*\)".*/\1/'
		o=$(echo "$h" | sed 's/.*"data_offsets":\[\([0-9]*\),\([0-9]*\)\].*/\1 \2/')
		set -- $o
		tail -c +$((8 + n + $1 + 1)) "$f" | head -c $(($2 - $1)) | od -An -tx1
		return 0
	done
	echo "no tensor $2 in $1"
	return 1
}

test_expect_success 'qwen2: the quantizers leave the q/k/v biases as they were and the packers carry them' '
	for d in rel-w4-qwen2 rel-awq-qwen2 rel-fp8-qwen2 rel-w8s-qwen2; do
		for b in q k v; do
			tensor m-qwen2 model.layers.1.self_attn.${b}_proj.bias >want || exit 1
			tensor $d model.layers.1.self_attn.${b}_proj.bias >got || exit 1
			head -1 got | grep -q BF16 || { echo "$d: $b bias is $(head -1 got)"; exit 1; }
			if [ $d = rel-w8s-qwen2 ] && [ $b = v ]; then continue; fi
			cmp want got || { echo "$d: the $b bias changed"; exit 1; }
		done
	done &&
	! tensor rel-w4-qwen2 model.layers.1.self_attn.o_proj.bias >/dev/null
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
