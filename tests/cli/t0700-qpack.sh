#!/bin/sh
# t0700: qpack end to end on qsynth models quantized by qgptq (RTN) and qfp8:
# every format and scheme, config.json keys, the manifest and carried files,
# qverify's numbers equal on the naive and the packed checkpoint, a flipped
# byte found and named, refusals that write nothing, usage.
. "$(dirname "$0")/lib.sh"

for t in qsynth qcalib qgptq qfp8 qverify qcat; do
	if ! command -v $t >/dev/null; then
		test_skip 'qpack' "$t not built"
		test_done
	fi
done

# byte offset of a tensor's data in a safetensors file (8 + header + begin)
tensor_offset() { # file tensor
	n=$(od -An -t u8 -N8 "$1" | tr -d ' ')
	b=$(head -c $((8 + n)) "$1" | tail -c "$n" | tr -d ' ' |
		grep -o "\"$2\":{[^}]*}" | sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
	echo $((8 + n + b))
}

# flip the lowest bit of the byte at an offset
flip_byte() { # file offset
	v=$(od -An -t u1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "\\$(printf '%03o' $((v ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

# qverify's function numbers (PPL, KL, top-1) as printed
numbers() { # checkpoint
	qverify -q "$1" --base model --tokens tok.st |
		grep -E '^    "(ppl|ppl_ratio|kl_mean|kl_max|top1)": ' >"$1.numbers"
	test -s "$1.numbers"
}

test_expect_success 'setup: a tiny model, tokens, naive checkpoints' '
	qsynth -q --preset tiny -o model &&
	qcalib -q -m model --random -n 4 -L 32 --seed 3 -o tok.st &&
	qgptq -q --method rtn --calib tok.st -o w4 model &&
	qgptq -q --method rtn --calib tok.st --asym --group-size 32 -o w4a model &&
	qgptq -q --method rtn --calib tok.st --scheme w8a16 -o w8 model &&
	qgptq -q --method rtn --calib tok.st --scheme w8a8 -o w8a8 model &&
	qfp8 -q -o fp8 model
'

test_expect_success 'compressed-tensors: the format llm-compressor picks for each scheme' '
	for s in w4 w4a w8 w8a8 fp8; do qpack -q -o $s-ct $s || exit 1; done &&
	expect_grep w4-ct/config.json "\"format\": \"pack-quantized\"" &&
	expect_grep w4a-ct/config.json "\"format\": \"pack-quantized\"" &&
	expect_grep w8-ct/config.json "\"format\": \"pack-quantized\"" &&
	expect_grep w8a8-ct/config.json "\"format\": \"int-quantized\"" &&
	expect_grep fp8-ct/config.json "\"format\": \"float-quantized\"" &&
	expect_grep w4-ct/config.json "\"quantization_status\": \"compressed\"" &&
	expect_grep w4-ct/config.json "\"version\": \"0.12.2\"" &&
	qcat --list w4-ct >list &&
	expect_grep list "model.layers.0.mlp.down_proj.weight_packed	I32	[128, 48]" &&
	expect_grep list "model.layers.0.mlp.down_proj.weight_shape	I64	[2]" &&
	qcat --list w4a-ct >list &&
	expect_grep list "model.layers.0.mlp.down_proj.weight_zero_point	I32	[16, 12]" &&
	qcat --list w8a8-ct >list &&
	expect_grep list "model.layers.0.mlp.down_proj.weight	I8	[128, 384]"
'

test_expect_success 'qverify gives the same PPL, KL and top-1 on naive and packed (compressed-tensors)' '
	for s in w4 w4a w8 w8a8 fp8; do
		numbers $s && numbers $s-ct && expect_same $s.numbers $s-ct.numbers || exit 1
	done &&
	qverify -q w4-ct --base model --tokens tok.st >rep.json &&
	expect_grep rep.json "\"manifest\": \"verified\"" &&
	expect_grep rep.json "\"verdict\": \"pass\""
'

test_expect_success 'gptq: AutoGPTQ tensors and quantize_config, v1 symmetric, gptq_v2 asymmetric' '
	qpack -q -f gptq -o w4-gptq w4 &&
	qpack -q -f gptq -o w4a-gptq w4a &&
	qpack -q -f gptq -o w8-gptq w8 &&
	qcat --list w4-gptq >list &&
	expect_grep list "model.layers.0.mlp.down_proj.qweight	I32	[48, 128]" &&
	expect_grep list "model.layers.0.mlp.down_proj.qzeros	I32	[3, 16]" &&
	expect_grep list "model.layers.0.mlp.down_proj.scales	F16	[3, 128]" &&
	expect_grep list "model.layers.0.mlp.down_proj.g_idx	I32	[384]" &&
	expect_grep w4-gptq/config.json "\"quant_method\": \"gptq\"" &&
	expect_grep w4-gptq/config.json "\"checkpoint_format\": \"gptq\"" &&
	expect_grep w4-gptq/config.json "\"desc_act\": false" &&
	expect_grep w4-gptq/config.json "\"sym\": true" &&
	expect_grep w4a-gptq/config.json "\"checkpoint_format\": \"gptq_v2\"" &&
	expect_grep w4a-gptq/config.json "\"group_size\": 32" &&
	expect_grep w8-gptq/config.json "\"group_size\": -1" &&
	expect_grep w8-gptq/config.json "\"bits\": 8" &&
	test -f w4-gptq/quantize_config.json &&
	expect_grep w4-gptq/quantize_config.json "\"bits\": 4" &&
	expect_grep w4-gptq/quant_card.md "checkpoint_format \"gptq\"" &&
	qcat --verify w4-gptq && qcat --verify w4a-gptq && qcat --verify w8-gptq
'

test_expect_success 'awq: AutoAWQ GEMM tensors and config, symmetric written with zero point 8' '
	qpack -q -f awq -o w4-awq w4 &&
	qpack -q -f awq -o w4a-awq w4a &&
	qcat --list w4-awq >list &&
	expect_grep list "model.layers.0.mlp.down_proj.qweight	I32	[384, 16]" &&
	expect_grep list "model.layers.0.mlp.down_proj.qzeros	I32	[3, 16]" &&
	expect_grep list "model.layers.0.mlp.down_proj.scales	F16	[3, 128]" &&
	expect_grep w4-awq/config.json "\"quant_method\": \"awq\"" &&
	expect_grep w4-awq/config.json "\"version\": \"gemm\"" &&
	expect_grep w4-awq/config.json "\"zero_point\": true" &&
	expect_grep w4-awq/config.json "\"modules_to_not_convert\": null" &&
	expect_grep w4-awq/quant_card.md "every zero point is 8" &&
	test ! -e w4-awq/quantize_config.json &&
	qcat --verify w4-awq && qcat --verify w4a-awq
'

test_expect_success 'qverify reads gptq and awq artifacts: the same numbers as the naive input' '
	for p in w4-gptq w4a-gptq w4-awq w4a-awq; do
		numbers $p && expect_same ${p%%-*}.numbers $p.numbers || exit 1
	done
'

test_expect_success 'carried: tokenizer, generation config, report; the rest of config.json; a card' '
	for f in tokenizer.json tokenizer_config.json generation_config.json quant_report.jsonl; do
		expect_same w4/$f w4-gptq/$f || exit 1
	done &&
	expect_grep w4-awq/config.json "\"hidden_size\": 128" &&
	expect_grep w4-awq/config.json "\"torch_dtype\": \"bfloat16\"" &&
	for s in "## Scheme" "## Format" "## Method" "## Calibration" "## Worst layers" "## Files" \
	         "qgptq -q --method rtn --calib tok.st -o OUT model" "qpack -q -f awq -o OUT w4" \
	         "Token set (calibration)" "| \`model.layers."; do
		expect_grep w4-awq/quant_card.md "$s" || exit 1
	done
'

test_expect_success 'the manifest carries the history, base and token sets and adds qpack' '
	for f in w4-ct w4-gptq w4-awq; do
		expect_grep $f/quant_manifest.json "\"tool\": \"qsynth\"" &&
		expect_grep $f/quant_manifest.json "\"tool\": \"qgptq\"" &&
		expect_grep $f/quant_manifest.json "\"tool\": \"qpack\"" &&
		expect_grep $f/quant_manifest.json "\"role\": \"calibration\"" || exit 1
	done &&
	base=$(sed -n "/\"base\"/,/}/s/.*\"fingerprint\": \"\([0-9a-f]*\)\".*/\1/p" w4/quant_manifest.json) &&
	test -n "$base" && expect_grep w4-gptq/quant_manifest.json "$base"
'

test_expect_success 'deterministic: the same input and options give the same bytes; threads do not matter' '
	qpack -q -f gptq -o again w4 &&
	diff -r w4-gptq again &&
	qpack -q -f awq --threads 1 -o again1 w4 && qpack -q -f awq --threads 3 -o again3 w4 &&
	for f in w4-awq/*; do
		f=${f#w4-awq/}
		case $f in quant_card.md|quant_manifest.json) continue ;; esac
		expect_same again1/$f again3/$f && expect_same w4-awq/$f again1/$f || exit 1
	done
'

test_expect_success 'a flipped byte in a packed tensor: qverify exits 1 naming file and tensor' '
	cp -r w4-ct flip &&
	off=$(tensor_offset flip/model.safetensors model.layers.1.mlp.up_proj.weight_packed) &&
	flip_byte flip/model.safetensors $((off + 5)) &&
	{ qverify flip --base model --tokens tok.st >rep.json 2>err; test $? = 1; } &&
	expect_grep err "tensor '"'"'model.layers.1.mlp.up_proj.weight_packed'"'"' in '"'"'model.safetensors'"'"'" &&
	expect_grep rep.json "\"verdict\": \"fail\""
'

for fmt in gptq awq; do
	test_expect_success "a flipped byte in $fmt qzeros: qcat --verify and qverify exit 1 naming file and tensor" "
		cp -r w4-$fmt flip-$fmt &&
		off=\$(tensor_offset flip-$fmt/model.safetensors model.layers.0.self_attn.k_proj.qzeros) &&
		flip_byte flip-$fmt/model.safetensors \$off &&
		{ qcat --verify flip-$fmt 2>err; test \$? = 1; } &&
		expect_grep err 'model.layers.0.self_attn.k_proj.qzeros' && expect_grep err 'model.safetensors' &&
		{ qverify flip-$fmt >rep.json 2>err; test \$? = 1; } &&
		expect_grep err 'model.layers.0.self_attn.k_proj.qzeros' && expect_grep err 'model.safetensors'
	"
done

test_expect_success 'streams in and out: the same artifact as from the directory' '
	qcat -o - w4a >w4a.tar &&
	qpack -q -f gptq -o from-tar w4a.tar &&
	cat w4a.tar | qpack -q -f gptq -o from-pipe - &&
	qpack -q -f gptq -o from-dir w4a &&
	for d in from-tar from-pipe; do
		for f in config.json model.safetensors quantize_config.json quant_report.jsonl tokenizer.json; do
			expect_same from-dir/$f $d/$f || exit 1
		done
	done &&
	qcat --verify from-pipe &&
	qpack -q -f gptq -o - w4a >out.tar &&
	qcat -o untarred out.tar && diff -r from-dir untarred
'

test_expect_success 'shards: greedy under --max-shard-size with a correct index' '
	qpack -q -f awq --max-shard-size 100kB -o sh w4 &&
	ls sh/model-0000*-of-0000*.safetensors >shards &&
	test $(wc -l <shards) -gt 2 &&
	expect_grep sh/model.safetensors.index.json "\"total_size\": " &&
	expect_grep sh/model.safetensors.index.json "\"model.layers.1.mlp.down_proj.qweight\": " &&
	qcat --verify sh &&
	qcat --list sh | grep "^tensor" | cut -f2 | sort >a &&
	qcat --list w4-awq | grep "^tensor" | cut -f2 | sort >b &&
	expect_same a b &&
	numbers w4-ct && qpack -q --max-shard-size 60kB -o shct w4 && numbers shct &&
	expect_same w4-ct.numbers shct.numbers &&
	qcat -o - w4 | qpack -q --max-shard-size 60kB -o shpipe - && qcat --verify shpipe
'

test_expect_success 'shards from a stream equal those from the directory' '
	qpack -q --max-shard-size 60kB -o shdir w4 &&
	for f in shdir/*.safetensors shdir/model.safetensors.index.json; do
		expect_same $f shpipe/${f#shdir/} || exit 1
	done
'

refuse() { # title format input pattern
	test_expect_code 2 "$1" "
		qpack -f $2 -o refused $3 2>err ||
		{ st=\$?; expect_one_message qpack err && expect_grep err '$4' &&
		  test ! -e refused && test ! -e refused.partial && exit \$st; }
	"
}
refuse 'fp8 as gptq: refused, nothing written' gptq fp8 'fp8 weights'
refuse 'fp8 as awq: refused' awq fp8 'fp8 weights'
refuse 'w8a8 as gptq: activations cannot be expressed' gptq w8a8 'input activations'
refuse 'w8a8 as awq: refused' awq w8a8 'input activations'
refuse 'w8a16 as awq: 4-bit only' awq w8 '8-bit'
refuse 'an already packed checkpoint' gptq w4-ct 'already packed'
refuse 'a model that is not quantized' compressed-tensors model 'not quantized'

test_expect_success 'an ignored decoder Linear: awq lists it, gptq refuses' '
	qgptq -q --method rtn --calib tok.st --ignore "re:.*layers\.1\.mlp\.down_proj" -o ign model &&
	qpack -q -f awq -o ign-awq ign &&
	expect_grep ign-awq/config.json "\"model.layers.1.mlp.down_proj\"" &&
	qcat --list ign-awq >list &&
	expect_grep list "model.layers.1.mlp.down_proj.weight	BF16" &&
	test_must_fail_2() { "$@"; test $? = 2; } &&
	test_must_fail_2 qpack -q -f gptq -o ign-gptq ign 2>err &&
	expect_grep err "model.layers.1.mlp.down_proj" && test ! -e ign-gptq
'

test_expect_success 'a stream whose layers differ as the scheme says: planned and packed as the directory' '
	qcat -o - ign | qpack -q -f awq --max-shard-size 60kB -o ign-pipe - &&
	qpack -q -f awq --max-shard-size 60kB -o ign-dir ign &&
	for f in ign-dir/*.safetensors ign-dir/model.safetensors.index.json ign-dir/config.json; do
		expect_same $f ign-pipe/${f#ign-dir/} || exit 1
	done
'

test_expect_code 2 'a truncated shard: one message, exit 2, nothing left' '
	cp -r w4 trunc && f=$(ls trunc/*.safetensors | head -1) &&
	head -c 5000 $f >t && mv t $f &&
	qpack -o trunc-out trunc 2>err ||
	{ st=$?; expect_one_message qpack err && test ! -e trunc-out && test ! -e trunc-out.partial && exit $st; }
'

test_expect_success 'an existing output needs --force' '
	mkdir -p busy && echo x >busy/file &&
	{ qpack -q -o busy w4 2>err; test $? = 2; } && expect_grep err "busy" &&
	qpack -q --force -o busy w4 && test ! -e busy/file && qcat --verify busy
'

test_expect_success 'usage: --help, --version and bad invocations' '
	qpack --help >out && expect_grep out "usage: qpack" &&
	for o in --format --output --max-shard-size --threads --force --quiet --verbose --help --version; do
		expect_grep out "$o" || exit 1
	done &&
	qpack --version >out && expect_grep out "qpack" &&
	for args in "" "w4" "-o x" "-o x w4 w4a" "-f ggml -o x w4" "--max-shard-size 0 -o x w4" \
	            "--max-shard-size 5XB -o x w4" "--threads 0 -o x w4" "--bogus -o x w4" "-o"; do
		{ qpack $args >out 2>err; test $? = 2; } || { echo "args: $args"; exit 1; }
		test ! -s out && expect_grep err "usage: qpack" || exit 1
	done
'

test_done
