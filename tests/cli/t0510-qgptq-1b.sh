#!/bin/sh
# t0510: qsynth + qcalib --random + qgptq --scheme w4a16 + qverify on four
# layers with the structure of Llama-3.2-1B (GQA 4:1, head_dim 64, llama3
# rope scaling, tied embeddings, intermediate = 4 x hidden, outlier input
# channels), narrowed to hidden 1024 and a vocabulary of 8192 so that it
# runs in about a minute on 2 cores (tests/bench/bench_gptq.c times the full
# shapes). 5120 calibration tokens: more than the largest Linear input
# (4096), so no Hessian is singular and err_out measures more than the
# calibration set's own null space.
. "$(dirname "$0")/lib.sh"

if ! command -v qsynth >/dev/null || ! command -v qcalib >/dev/null ||
	! command -v qverify >/dev/null; then
	test_skip 'qgptq on a 1B-shaped model' 'qsynth, qcalib or qverify not built'
	test_done
fi

test_expect_success 'setup: 4 layers of the 1B shape, narrowed, and 5120 random tokens' '
	qsynth -q --preset llama-3.2-1b --layers 4 --hidden 1024 --intermediate 4096 \
		--heads 16 --kv-heads 4 --vocab 8192 --seed 3 -o m &&
	expect_grep m/config.json "\"num_key_value_heads\": 4" &&
	expect_grep m/config.json "\"rope_type\": \"llama3\"" &&
	qcalib -q -m m --random -n 8 -L 640 --seed 1 -o c.st
'

test_expect_success 'qgptq --scheme w4a16: 28 Linears reported' '
	qgptq -q --scheme w4a16 --calib c.st --report r.jsonl -o q m &&
	test "$(wc -l <r.jsonl)" = 28 && expect_grep r.jsonl "\"n_tokens\":5120"
'

test_expect_success 'every Linear of every layer: err_out below err_rtn' '
	sed "s/.*\"layer\":\"\([^\"]*\)\".*\"err_out\":\([^,]*\),.*\"err_rtn\":\([^,]*\),.*/\1 \2 \3/" \
		r.jsonl >e &&
	test "$(wc -l <e)" = 28 &&
	awk "{ if (!(\$2 > 0 && \$2 < \$3)) { print \"not below RTN:\", \$0; bad = 1 } } END { exit bad }" e
'
if [ -s "$TEST_DIR/e" ]; then
	awk '{ s += $2 / $3 } END { printf "# mean err_out/err_rtn over %d Linears: %.4f\n", NR, s / NR }' \
		"$TEST_DIR/e"
fi

test_expect_success 'qverify: integrity passes; PPL ratio, KL and top-1 against the base' '
	qverify q --base m --tokens c.st -o v.json 2>err &&
	expect_grep v.json "\"verdict\": \"pass\"" && expect_grep v.json "\"manifest\": \"verified\"" &&
	expect_grep v.json "\"quantized_linears\": 28" &&
	expect_grep v.json "\"ppl_ratio\":" && expect_grep v.json "\"kl_mean\":" &&
	expect_grep err "integrity: ok"
'
if [ -s "$TEST_DIR/err" ]; then
	grep "function:" "$TEST_DIR/err" | sed 's/^/# /'
fi
test_done
