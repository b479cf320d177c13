#!/bin/sh
# demo.sh: the built-in example behind `make demo`. It synthesizes a small
# Llama-architecture model, builds calibration and evaluation token sets from
# the bundled public-domain text, quantizes, packs and verifies, printing
# each command before it runs. Everything happens in $DEMO_DIR (default
# build/demo), which is replaced on every run.
set -eu
: "${QBIN:?QBIN must name the directory of the built tools}"
PATH="$QBIN:$PATH"
export PATH
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${DEMO_DIR:-$top/build/demo}
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"

step() {
	printf '\n== %s\n' "$1"
	shift
	printf '$ %s\n' "$*"
	"$@"
}
have() { [ -x "$QBIN/$1" ]; }

printf 'demo: working in %s\n' "$dir"

step "A synthetic Llama-3-style model: 4 layers, hidden 256, GQA, llama3 rope, outlier channels" \
	qsynth --preset llama-3.1-8b --layers 4 --hidden 256 --intermediate 768 --heads 8 \
	--kv-heads 2 --vocab 2048 --seed 1 -o model
ls -l model

step "Calibration tokens from the bundled text, with the model's own tokenizer" \
	qcalib -m model --split docs -n 32 -L 128 --seed 1 -o calib.st "$top/calib/public-domain.txt"
step "Evaluation tokens (another seed, so other windows of the text)" \
	qcalib -m model --split docs -n 16 -L 128 --seed 2 -o eval.st "$top/calib/public-domain.txt"
step "What is in the token set" qcalib --show calib.st

step "FP8 E4M3 weights per channel, dynamic per-token activations (W8A8-FP8)" \
	qfp8 --report fp8.jsonl -o fp8 model
printf '\nthe three Linears with the largest relative weight error:\n'
sed 's/.*"layer":"\([^"]*\)".*"err_w":\([^,]*\),.*/\2 \1/' fp8.jsonl | sort -gr | head -n 3

if have qgptq; then
	step "GPTQ W4A16 (int4, groups of 128) with the calibration tokens" \
		qgptq --scheme w4a16 --calib calib.st --report gptq.jsonl -o w4a16 model
	printf '\nGPTQ output error against round-to-nearest, first layer:\n'
	grep '"model.layers.0\.' gptq.jsonl | sed 's/.*"layer":"\([^"]*\)".*"err_out":\([^,]*\),.*"err_rtn":\([^,]*\),.*/  \1: err_out \2  err_rtn \3/'
fi

if have qawq; then
	step "AWQ W4A16 (int4, groups of 128, zero points): scales searched per smoothing point, folded into the norms and Linears" \
		qawq --scheme w4a16 --calib calib.st --report awq.jsonl -o w4a16-awq model
	printf '\nAWQ: the ratio each smoothing point of the first layer chose, and the loss it bought (at ratio 0, chosen):\n'
	grep '"model.layers.0\.' awq.jsonl | grep -o '"smooth":{[^}]*}' | sort -u |
		sed 's/.*"prev":"\([^"]*\)".*"ratio":\([^,]*\),"loss_r0":\([^,]*\),"loss":\([^,]*\),.*/  \1: ratio \2, loss \3 -> \4/'
fi

if have qpack && have qgptq; then
	step "Pack for vLLM (compressed-tensors pack-quantized)" \
		qpack -f compressed-tensors -o w4a16-packed w4a16
fi

if have qsmooth && have qgptq && have qpack && have qverify; then
	step "W8A8-INT8 without smoothing: int8 activations meet the outlier channels" \
		qgptq -q --scheme w8a8 --calib calib.st -o w8a8-plain model
	step "SmoothQuant, then GPTQ W8A8, then packed, in one pipe" \
		sh -c 'qsmooth -q --calib calib.st -o - model | qgptq -q --scheme w8a8 --calib calib.st -o - - | qpack -q -o w8a8-smooth -'
	qverify -q w8a8-plain --base model --tokens eval.st -o verify-w8a8-plain.json
	qverify -q w8a8-smooth --base model --tokens eval.st -o verify-w8a8-smooth.json
	printf '\nW8A8 KL against the base: without smoothing %s, with %s\n' \
		"$(sed -n 's/^    "kl_mean": \([^,]*\),$/\1/p' verify-w8a8-plain.json)" \
		"$(sed -n 's/^    "kl_mean": \([^,]*\),$/\1/p' verify-w8a8-smooth.json)"
fi

step "Streams: the same FP8 quantization through a pipe, checked on arrival" \
	sh -c 'qcat -o - model | qfp8 -q -o - - | qcat --verify -'

step "The manifest records who made the artifact from what" qcat --verify fp8
sed -n '/"history"/,/\]$/p' fp8/quant_manifest.json | grep '"tool"'

if have qverify; then
	step "Verify the FP8 artifact against its base model on the evaluation tokens" \
		qverify fp8 --base model --tokens eval.st --max-ppl-ratio 1.1 --max-kl 0.1 --min-top1 0.8 \
		-o verify-fp8.json
	if have qgptq; then
		step "Verify the W4A16 artifact" \
			qverify w4a16 --base model --tokens eval.st -o verify-w4a16.json
	fi
	if have qgptq && have qawq; then
		step "Verify the AWQ artifact" \
			qverify w4a16-awq --base model --tokens eval.st -o verify-w4a16-awq.json
		printf '\nW4A16 KL against the base: GPTQ %s, AWQ %s\n' \
			"$(sed -n 's/^    "kl_mean": \([^,]*\),$/\1/p' verify-w4a16.json)" \
			"$(sed -n 's/^    "kl_mean": \([^,]*\),$/\1/p' verify-w4a16-awq.json)"
	fi
	if have qgptq && have qpack; then
		step "Verify the packed release artifact itself: the same numbers as its naive input" \
			qverify w4a16-packed --base model --tokens eval.st -o verify-packed.json
	fi
fi

# the same pipeline as a recipe: every variant of recipes/demo.yaml through
# make -j2, each ending in a verified release bundle (a variant whose tool is
# not built is left out)
if have qrecipe && have qgptq && have qsmooth && have qpack && have qverify; then
	variants="w4a16-gptq w8a8-int8 fp8-dynamic"
	if have qawq; then variants="$variants w4a16-awq"; fi
	unset MAKEFLAGS MFLAGS MAKELEVEL    # a make of its own, not part of `make demo`
	mkdir recipe
	step "A recipe (recipes/demo.yaml): its variants as make targets, two steps at a time" \
		sh -c "cd recipe && qrecipe make '$top/recipes/demo.yaml' | make -f - -j2 $variants"
	ls recipe/release
	sed -n '/^## Release gates/,/^## Artifacts/p' recipe/release/w8a8-int8/quant_card.md | sed '$d'
	step "Run again: every target exists, nothing is made" \
		sh -c "cd recipe && qrecipe make '$top/recipes/demo.yaml' | make -f - -j2 $variants"
fi

printf '\ndemo: done; everything is in %s\n' "$dir"
