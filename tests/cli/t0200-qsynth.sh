#!/bin/sh
# t0200: qsynth writes deterministic checkpoints, as a directory or a stream.
. "$(dirname "$0")/lib.sh"

test_expect_success 'same seed twice gives identical directories' '
	qsynth -q --preset tiny --seed 1 -o a &&
	qsynth -q --preset tiny --seed 1 -o b &&
	diff -r a b
'

test_expect_success 'another seed gives other weights' '
	qsynth -q --preset tiny --seed 2 -o c &&
	! cmp -s a/model-00001-of-00002.safetensors c/model-00001-of-00002.safetensors
'

test_expect_success 'the stream lists members in layer order and untars to the directory' '
	qsynth -q --preset tiny --seed 1 --layers 3 -o d &&
	qsynth -q --preset tiny --seed 1 --layers 3 -o - >s.tar &&
	tar tf s.tar >members &&
	printf "%s\n" config.json generation_config.json tokenizer.json tokenizer_config.json \
		model-00001-of-00003.safetensors model-00002-of-00003.safetensors \
		model-00003-of-00003.safetensors model.safetensors.index.json \
		quant_manifest.json >expect &&
	expect_same expect members &&
	mkdir x && tar xf s.tar -C x && diff -r d x
'

# the tensors of layer 0 and the embeddings, by their hashes in the manifests
layer0() { tr -d ' \n' <"$1/quant_manifest.json" | grep -o '"model\.\(layers\.0\.\|embed\)[^}]*}'; }
test_expect_success '--layers keeps the first layers of the full model' '
	qsynth -q --preset tiny --seed 1 --layers 1 -o one &&
	layer0 a >a0 && layer0 one >one0 && test "$(wc -l <a0)" = 10 && expect_same a0 one0
'

test_expect_success 'config.json has the preset shape and the shape options' '
	qsynth -q --preset llama-3.1-8b --layers 1 --hidden 256 --intermediate 512 --heads 4 \
		--kv-heads 2 --vocab 1000 -o m8 &&
	expect_grep m8/config.json "\"num_hidden_layers\": 1" &&
	expect_grep m8/config.json "\"hidden_size\": 256" &&
	expect_grep m8/config.json "\"head_dim\": 64" &&
	expect_grep m8/config.json "\"vocab_size\": 1000" &&
	expect_grep m8/config.json "\"tie_word_embeddings\": false" &&
	expect_grep m8/config.json "\"rope_type\": \"llama3\"" &&
	test ! -e m8/model.safetensors.index.json &&
	grep -q -a lm_head.weight m8/model.safetensors
'

test_expect_success 'f32 output and no outliers' '
	qsynth -q --dtype f32 --outliers 0 -o f32 &&
	expect_grep f32/config.json "\"torch_dtype\": \"float32\""
'

test_expect_success '--help and --version go to stdout with status 0' '
	qsynth --help >h && expect_grep h "usage: qsynth" && expect_grep h "--preset" &&
	qsynth --version >v && expect_grep v "qsynth (qtoolkit)"
'

test_expect_code 2 'an unknown preset is a usage error' 'qsynth --preset gpt2 -o z 2>err'
test_expect_success '... with one message naming the preset' '
	! qsynth --preset gpt2 -o z 2>err && grep -q "^qsynth: unknown preset .gpt2." err && test ! -e z
'
test_expect_code 2 'no output is a usage error' 'qsynth --preset tiny'
test_expect_code 2 'heads that do not divide the KV heads' 'qsynth --heads 4 --kv-heads 3 -o z'
test_expect_code 2 'an odd head dimension' 'qsynth --hidden 96 --heads 32 -o z'
test_expect_code 2 'an existing output directory is not replaced' 'qsynth -q -o a 2>err'
test_expect_success '... and is left as it was' 'diff -r a b && test ! -e a.partial'
test_expect_success '--force replaces it' '
	qsynth -q --seed 2 -f -o a && cmp a/model-00001-of-00002.safetensors c/model-00001-of-00002.safetensors
'
# a SentencePiece model published without tokenizer.json (Vicuna v1.5): the
# smallest valid tokenizer.model, one piece <unk> (type 2), BPE (type 2)
test_expect_success '--tokenizer copies a tokenizer.model when there is no tokenizer.json' '
	mkdir spmtok && printf "\012\011\012\005<unk>\030\002\022\002\030\002" >spmtok/tokenizer.model &&
	qsynth -q --preset vicuna-7b --layers 1 --hidden 64 --intermediate 128 --heads 2 --kv-heads 2 \
		--tokenizer spmtok -o vic &&
	cmp vic/tokenizer.model spmtok/tokenizer.model && test ! -e vic/tokenizer.json &&
	printf "ab" >ab.txt && qcalib -m vic --encode ab.txt >ids && echo 0 >want && cmp ids want
'
test_expect_success '--tokenizer with neither tokenizer file: exit 2, named' '
	mkdir notok && { qsynth -q --tokenizer notok -o nt 2>err; test $? = 2; } && test ! -e nt &&
	expect_grep err "no tokenizer.json or tokenizer.model in" && expect_one_message qsynth err
'
if [ -n "${QC_SHARED_DATA:-}" ] && [ -f "$QC_SHARED_DATA/tokenizers/llama3/tokenizer.json" ]; then
	test_expect_success '--tokenizer copies a real tokenizer' '
		qsynth -q --preset llama-3.2-1b --layers 1 --hidden 64 --intermediate 128 --heads 2 \
			--kv-heads 1 --tokenizer "$QC_SHARED_DATA/tokenizers/llama3" -o real &&
		cmp real/tokenizer.json "$QC_SHARED_DATA/tokenizers/llama3/tokenizer.json"
	'
else
	test_skip '--tokenizer copies a real tokenizer' 'no shared tokenizer data'
fi
test_done
