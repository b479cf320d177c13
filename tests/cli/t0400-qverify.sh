#!/bin/sh
# t0400: qverify end to end on qsynth models and qcalib token sets: a model
# against itself, thresholds, streams, a flipped byte (exit 1, tensor named),
# truncated and malformed inputs (exit 2), usage.
. "$(dirname "$0")/lib.sh"

if ! command -v qsynth >/dev/null || ! command -v qcalib >/dev/null; then
	test_skip 'qverify' 'qsynth or qcalib not built'
	test_done
fi

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

test_expect_success 'setup: a tiny model and token sets' '
	qsynth -q --preset tiny -o model &&
	qcalib -q -m model --random -n 4 -L 32 --seed 3 -o tok.st &&
	qsynth -q --preset tiny --layers 1 -o onelayer &&
	qsynth -q --preset tiny --vocab 1024 -o bigvocab &&
	qcalib -q -m bigvocab --random -n 2 -L 16 -o big.st
'

test_expect_success 'a model against itself: KL 0, top-1 1, PPL ratio 1, exit 0' '
	qverify model --base model --tokens tok.st >rep.json 2>err &&
	expect_grep rep.json "\"verdict\": \"pass\"" &&
	expect_grep rep.json "\"kl_mean\": 0.0," &&
	expect_grep rep.json "\"kl_max\": 0.0," &&
	expect_grep rep.json "\"top1\": 1.0" &&
	expect_grep rep.json "\"ppl_ratio\": 1.0," &&
	expect_grep rep.json "\"manifest\": \"verified\"" &&
	expect_grep rep.json "\"base_fingerprint\": \"matches\"" &&
	expect_grep rep.json "\"err_w_max\": 0.0," &&
	expect_grep err "qverify: pass"
'

test_expect_success 'the tightest thresholds hold for identical models' '
	qverify -q model --base model --tokens tok.st --max-kl 0 --min-top1 1 --max-ppl-ratio 1 >/dev/null 2>err &&
	test ! -s err
'

test_expect_success 'the report is deterministic and -o writes it instead of stdout' '
	qverify -q model --base model --tokens tok.st -o rep2.json >out &&
	test ! -s out &&
	expect_same rep.json rep2.json
'

test_expect_success 'untied FP32 model without llama3 scaling, BF16 activations' '
	qsynth -q --preset tiny --no-tie --dtype f32 --rope-scaling none -o f32 &&
	qverify -q f32 --base f32 --tokens tok.st --act-dtype bf16 --max-kl 0 >rep.json &&
	expect_grep rep.json "\"tie_word_embeddings\": false"
'

test_expect_success 'perplexity alone with --tokens and no base' '
	qverify -q model --tokens tok.st >rep.json &&
	expect_grep rep.json "\"ppl\":" &&
	! grep -q "\"ppl_ratio\"" rep.json &&
	expect_grep rep.json "\"numerics\": null"
'

test_expect_success 'a stream on standard input' '
	qcat -q -o - model | qverify - >rep.json 2>err &&
	expect_grep rep.json "\"manifest\": \"verified\"" &&
	expect_grep rep.json "\"artifact\": \"-\""
'

test_expect_success 'a stream against a directory base, with tokens' '
	qcat -q -o - model | qverify -q - --base model --tokens tok.st --max-kl 0 >rep.json
'

test_expect_success 'a flipped byte in tensor data: exit 1, the tensor named' '
	rm -rf broken && cp -r model broken &&
	f=broken/model-00002-of-00002.safetensors &&
	off=$(tensor_offset $f model.layers.1.mlp.up_proj.weight) &&
	flip_byte $f $((off + 101)) &&
	st=0 && qverify broken --base model --tokens tok.st >rep.json 2>err || st=$? &&
	test $st = 1 &&
	expect_grep err "FAIL: integrity: manifest: tensor '"'"'model.layers.1.mlp.up_proj.weight'"'"'" &&
	expect_grep rep.json "\"verdict\": \"fail\"" &&
	expect_grep rep.json "\"manifest\": \"mismatch\"" &&
	expect_grep rep.json "\"function\": null"
'

test_expect_success 'the same flipped byte through a stream: exit 1' '
	st=0 && qcat -q -o - broken | qverify -q - >rep.json 2>err || st=$? &&
	test $st = 1 &&
	expect_grep rep.json "model.layers.1.mlp.up_proj.weight"
'

test_expect_success 'a threshold not met: exit 1, named' '
	st=0 && qverify onelayer --base onelayer --tokens tok.st --max-kl 0 >/dev/null 2>err || st=$? &&
	test $st = 0 &&
	st=0 && qverify model --base model --tokens tok.st --max-ppl-ratio 0.5 >rep.json 2>err || st=$? &&
	test $st = 1 &&
	expect_grep err "FAIL: function: ppl_ratio 1 exceeds max_ppl_ratio 0.5"
'

test_expect_success 'a truncated shard: exit 2, one message, no report' '
	rm -rf trunc && cp -r model trunc &&
	f=trunc/model-00001-of-00002.safetensors &&
	head -c $(($(wc -c <$f) - 7)) $f >t && mv t $f &&
	st=0 && qverify trunc >out 2>err || st=$? &&
	test $st = 2 &&
	expect_one_message qverify err &&
	test ! -s out
'

test_expect_success 'a truncated stream: exit 2' '
	qcat -q -o - model | head -c 300000 >short.tar &&
	st=0 && qverify short.tar >out 2>err || st=$? &&
	test $st = 2 && test ! -s out &&
	expect_grep err "qverify: "
'

test_expect_success 'a missing artifact: exit 2' '
	st=0 && qverify nothing-here >out 2>err || st=$? &&
	test $st = 2 && expect_one_message qverify err && test ! -s out
'

test_expect_success 'a base of another shape: exit 2' '
	st=0 && qverify model --base onelayer >out 2>err || st=$? &&
	test $st = 2 && expect_grep err "not the same architecture" && test ! -s out
'

test_expect_success 'a token set of a larger vocabulary: exit 2' '
	st=0 && qverify model --tokens big.st >out 2>err || st=$? &&
	test $st = 2 && expect_grep err "vocabulary" && test ! -s out
'

test_expect_success 'a config.json that is not JSON: exit 2' '
	rm -rf badcfg && cp -r model badcfg && echo "{" >badcfg/config.json &&
	st=0 && qverify badcfg >out 2>err || st=$? &&
	test $st = 2 && expect_one_message qverify err
'

# quantized artifacts made by the toolkit's own quantizer
if command -v qfp8 >/dev/null; then
	test_expect_success 'qfp8 (channel weights, dynamic per-token inputs) against its base' '
		qfp8 -q -o fp8 model &&
		qverify fp8 --base model --tokens tok.st --max-ppl-ratio 2 --min-top1 0.5 >rep.json 2>err &&
		expect_grep rep.json "\"quantized_linears\": 14," &&
		expect_grep rep.json "\"weights\": \"fp8 channel symmetric\"" &&
		expect_grep rep.json "\"input_activations\": \"fp8 dynamic per-token\"" &&
		expect_grep rep.json "\"base_fingerprint\": \"matches\"" &&
		! grep -q "\"err_w_max\": 0.0," rep.json &&
		! grep -q "\"kl_mean\": 0.0," rep.json &&
		expect_grep err "qverify: pass"
	'
	test_expect_success 'qfp8 per-tensor with shared q/k/v and gate/up scales, as a stream' '
		qfp8 -q --shared-scale -o - model | qverify -q - --base model --tokens tok.st >rep.json &&
		expect_grep rep.json "\"weights\": \"fp8 tensor symmetric\""
	'
	test_expect_success 'an FP8 artifact under a KL bound it cannot meet: exit 1' '
		st=0 && qverify fp8 --base model --tokens tok.st --max-kl 0 >/dev/null 2>err || st=$? &&
		test $st = 1 && expect_grep err "FAIL: function: kl_mean"
	'
	test_expect_success 'a flipped byte in FP8 codes: exit 1, the tensor named' '
		rm -rf fp8b && cp -r fp8 fp8b &&
		f=fp8b/model-00001-of-00002.safetensors &&
		off=$(tensor_offset $f model.layers.0.self_attn.o_proj.weight) &&
		flip_byte $f $((off + 7)) &&
		st=0 && qverify -q fp8b >rep.json 2>err || st=$? &&
		test $st = 1 &&
		expect_grep rep.json "manifest: tensor '"'"'model.layers.0.self_attn.o_proj.weight'"'"'"
	'
else
	test_skip 'quantized artifacts' 'qfp8 not built'
fi

test_expect_success '--help and --version on stdout, exit 0' '
	qverify --help >out &&
	expect_grep out "usage: qverify ARTIFACT" &&
	expect_grep out "--max-ppl-ratio" &&
	qverify --version >out && expect_grep out "qverify (qtoolkit)"
'

test_expect_code 2 'no artifact: usage error' 'qverify'
test_expect_code 2 'two artifacts: usage error' 'qverify model model'
test_expect_code 2 'an unknown option' 'qverify --frobnicate model'
test_expect_code 2 'thresholds without base and tokens' 'qverify model --max-kl 0.1'
test_expect_code 2 'a top-1 bound outside 0..1' 'qverify model --base model --tokens tok.st --min-top1 2'
test_expect_code 2 'an unknown device' 'qverify --device tpu model'

test_expect_success 'usage errors say why on stderr and show the usage' '
	st=0 && qverify --max-kl x model 2>err || st=$? &&
	test $st = 2 &&
	expect_grep err "qverify: invalid number '"'"'x'"'"' for --max-kl" &&
	expect_grep err "usage: qverify"
'
test_done
