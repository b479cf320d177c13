#!/bin/sh
# t0720: qgptq on llama.cpp's K-quant grids (--scheme gguf-*) and qpack -f
# gguf of the result, on a qsynth model whose Linear inputs are whole
# super-blocks (256, 768): GPTQ has a lower err_out than round to nearest on
# the same grid for every Linear, and a lower KL in qverify (checkpoint and
# GGUF file alike); the Q4_K_M mix puts Q6_K where llama.cpp's recipe does;
# the GGUF file holds the checkpoint's blocks byte for byte; stream and
# directory give the same file; blocks that do not decode to their float
# weight are refused by qpack and found by qverify; --resume gives the
# bytes of an uninterrupted run; options the grid does not take are usage
# errors.
. "$(dirname "$0")/lib.sh"

for t in qsynth qcalib qgptq qverify qpack qcat; do
	if ! command -v $t >/dev/null; then
		test_skip 'qgptq gguf k-quants' "$t not built"
		test_done
	fi
done

# errs REPORT: "layer err_out" per line
errs() { sed -n 's/.*"layer":"\([^"]*\)".*"err_out":\([^,]*\),.*/\1 \2/p' "$1"; }
# kl REPORT.json: the mean KL qverify measured
kl() { sed -n 's/^ *"kl_mean": \([0-9.e+-]*\),*$/\1/p' "$1"; }
# put_bf16 FILE TENSOR INDEX BYTES: overwrite element INDEX of a BF16 tensor
put_bf16() {
	n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
	o=$(head -c $((8 + n)) "$1" | tail -c "$n" | grep -o "\"$2\":{[^}]*}" |
		sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
	printf "$4" | dd of="$1" bs=1 seek=$((8 + n + o + 2 * $3)) conv=notrunc 2>/dev/null
}
# flip FILE POS: xor the byte at POS with 1
flip() {
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "\\$(printf '%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

test_expect_success 'setup: 4 layers, hidden 256, MLP 768; calibration and evaluation tokens' '
	qsynth -q --hidden 256 --intermediate 768 --heads 4 --kv-heads 2 --layers 4 --vocab 1024 \
		--rope-scaling llama3 --no-tie -o model &&
	qcalib -q -m model --random -n 8 -L 64 --seed 3 -o calib.st &&
	qcalib -q -m model --random -n 8 -L 64 --seed 4 -o eval.st &&
	qgptq -q --scheme gguf-q4_k_m --calib calib.st --report gptq.jsonl -o g model &&
	qgptq -q --scheme gguf-q4_k_m --method rtn --calib calib.st --report rtn.jsonl -o r model
'

test_expect_success 'the checkpoint: float weights, ggml blocks, no quantization_config' '
	qcat --list g >list &&
	expect_grep list "model.layers.0.self_attn.q_proj.weight	F32	[256, 256]" &&
	expect_grep list "model.layers.0.self_attn.q_proj.weight_ggml_q4_k	U8	[256, 144]" &&
	expect_grep list "model.layers.3.mlp.down_proj.weight_ggml_q6_k	U8	[256, 630]" &&
	! grep -q quantization_config g/config.json
'

test_expect_success 'Q4_K_M: Q6_K for attn_v and ffn_down of layers 2 and 3 (of 4), as llama.cpp' '
	grep -c "\"ggml_type\":\"Q6_K\"" gptq.jsonl >n6 && echo 4 >want && expect_same n6 want &&
	for l in 2 3; do
		for m in self_attn.v_proj mlp.down_proj; do
			grep "model.layers.$l.$m\"" gptq.jsonl >line &&
			expect_grep line "\"ggml_type\":\"Q6_K\"" || exit 1
		done
	done
'

test_expect_success 'GPTQ on the grid: lower err_out than RTN on the same grid, every Linear' '
	errs gptq.jsonl >eg && errs rtn.jsonl >er &&
	test "$(wc -l <eg)" -eq 28 && test "$(wc -l <er)" -eq 28 &&
	paste -d " " eg er >both &&
	awk "{ if (\$1 != \$3 || !(\$2 < \$4)) { print \"not lower: \" \$0; bad = 1 } }
	     END { exit bad }" both
'

test_expect_success 'qverify: both pass (blocks decode to the weights); GPTQ has the lower KL' '
	qverify -q g --base model --tokens eval.st >g.json &&
	qverify -q r --base model --tokens eval.st >r.json &&
	expect_grep g.json "\"ggml_linears\": 28" &&
	expect_grep g.json "\"verdict\": \"pass\"" &&
	kg=$(kl g.json) && kr=$(kl r.json) && echo "# KL gptq $kg rtn $kr" &&
	awk "BEGIN { exit !($kg < $kr) }"
'

test_expect_success 'qpack -f gguf: Q4_K_M file, the checkpoint blocks byte for byte' '
	qpack -q -f gguf -o g.gguf g && qpack -q -f gguf -o r.gguf r &&
	qverify -q g.gguf >rep.json && expect_grep rep.json "\"gguf_type\": \"Q4_K\"" &&
	f=g/model-00002-of-00004.safetensors &&
	hl=$(od -An -tu8 -N8 $f | tr -d " ") &&
	dd if=$f bs=1 skip=8 count=$hl 2>/dev/null >hdr &&
	offs=$(sed "s/.*\"model.layers.1.self_attn.v_proj.weight_ggml_q4_k\":{[^}]*\"data_offsets\":\[\([0-9]*\),\([0-9]*\)\].*/\1 \2/" hdr) &&
	set -- $offs && test $(($2 - $1)) -eq $((128 * 144)) &&
	dd if=$f bs=1 skip=$((8 + hl + $1)) count=$(($2 - $1)) 2>/dev/null >blocks &&
	od -An -tx1 -v blocks | tr -d " \n" >blocks.hex &&
	od -An -tx1 -v g.gguf | tr -d " \n" >gguf.hex &&
	grep -q -F -f blocks.hex gguf.hex
'

test_expect_success 'qverify on the GGUF files: GPTQ has the lower KL there too' '
	qverify -q g.gguf --base model --tokens eval.st >gg.json &&
	qverify -q r.gguf --base model --tokens eval.st >rg.json &&
	kg=$(kl gg.json) && kr=$(kl rg.json) && echo "# GGUF KL gptq $kg rtn $kr" &&
	awk "BEGIN { exit !($kg < $kr) }"
'

test_expect_success 'a stream in gives the same file' '
	qcat -o - g | qpack -q -f gguf -o - - >gs.gguf &&
	expect_same g.gguf gs.gguf
'

test_expect_success 'Q5_K and Q6_K by round to nearest without tokens: packed and read back' '
	qgptq -q --scheme gguf-q5_k --method rtn -o q5 model &&
	qgptq -q --scheme gguf-q6_k --method rtn -o q6 model &&
	qpack -q -f gguf -o q5.gguf q5 && qpack -q -f gguf -o q6.gguf q6 &&
	qverify -q q5.gguf >rep.json && expect_grep rep.json "\"gguf_type\": \"Q5_K\"" &&
	qverify -q q6.gguf >rep.json && expect_grep rep.json "\"gguf_type\": \"Q6_K\"" &&
	qverify -q q6 >rep.json && expect_grep rep.json "\"verdict\": \"pass\""
'

test_expect_code 2 'qpack refuses blocks that do not decode to their weight, leaving no file' '
	cp -R g bad && chmod -R u+w bad &&
	f=bad/model-00002-of-00004.safetensors &&
	flip $f $(($(wc -c <$f) - 1)) &&
	qpack -q -f gguf -o bad.gguf bad 2>err
	st=$?
	expect_grep err "does not decode" && expect_one_message qpack err && test ! -e bad.gguf &&
	exit $st
'

test_expect_code 1 'qverify finds them' '
	qverify -q bad >rep.json
	st=$?
	expect_grep rep.json "v_proj.weight_ggml_q4_k'"'"': row 127 does not decode" && exit $st
'

test_expect_success '--resume after a failed run: the finished layers come back, same bytes' '
	cp -R model nan && chmod -R u+w nan &&
	put_bf16 nan/model-00004-of-00004.safetensors model.layers.3.mlp.up_proj.weight 1 "\300\177" &&
	st=0; qgptq -q --scheme gguf-q4_k_m --calib calib.st --resume -o res nan 2>err || st=$?
	test $st = 2 && test ! -e res && test -f res.partial/model-00003-of-00004.safetensors &&
	cp model/model-00004-of-00004.safetensors nan/ &&
	qgptq --scheme gguf-q4_k_m --calib calib.st --resume -o res nan 2>err &&
	expect_grep err "layers 0 to 2 are done" &&
	qgptq -q --scheme gguf-q4_k_m --calib calib.st -o full nan &&
	same_dirs full res
'

test_expect_code 2 'usage: the grid takes no --group-size' '
	qgptq -q --scheme gguf-q4_k --group-size 32 --calib calib.st -o x model
'

test_expect_code 2 'usage: nor act-order' '
	qgptq -q --scheme gguf-q4_k --actorder static --calib calib.st -o x model
'

test_done
