#!/bin/sh
# t0520: issue 5's end-to-end run at the real Llama-3.2-1B shape (hidden
# 2048, intermediate 8192, 32 heads, 8 KV heads, vocabulary 128256, tied
# embeddings), four decoder layers: qsynth + qcalib --random + qgptq
# --scheme w4a16 + qverify. 9216 calibration tokens, more than the widest
# Linear input (8192), so that no Hessian is singular. About two minutes on
# 2 cores.
. "$(dirname "$0")/lib.sh"

if ! command -v qsynth >/dev/null || ! command -v qcalib >/dev/null ||
	! command -v qverify >/dev/null; then
	test_skip 'qgptq on the 1B shape' 'qsynth, qcalib or qverify not built'
	test_done
fi

test_expect_success 'setup: 4 layers of Llama-3.2-1B, 9216 random tokens, 1024 to evaluate' '
	qsynth -q --preset llama-3.2-1b --layers 4 --seed 3 -o m &&
	expect_grep m/config.json "\"hidden_size\": 2048" &&
	expect_grep m/config.json "\"vocab_size\": 128256" &&
	qcalib -q -m m --random -n 9 -L 1024 --seed 1 -o c.st &&
	qcalib -q -m m --random -n 4 -L 256 --seed 2 -o e.st
'
test_expect_success 'qgptq --scheme w4a16 reports every Linear below round-to-nearest' '
	qgptq -q --scheme w4a16 --calib c.st --report r.jsonl -o q m &&
	sed "s/.*\"layer\":\"\([^\"]*\)\".*\"err_out\":\([^,]*\),.*\"err_rtn\":\([^,]*\),.*/\1 \2 \3/" \
		r.jsonl >e &&
	test "$(wc -l <e)" = 28 &&
	awk "{ if (!(\$2 > 0 && \$2 < \$3)) { print \"not below RTN:\", \$0; bad = 1 } } END { exit bad }" e
'
if [ -s "$TEST_DIR/e" ]; then
	awk '{ s += $2 / $3 } END { printf "# mean err_out/err_rtn over %d Linears: %.4f\n", NR, s / NR }' \
		"$TEST_DIR/e"
fi
test_expect_success 'qverify: integrity holds and the function metrics are reported' '
	qverify q --base m --tokens e.st -o v.json 2>err &&
	expect_grep v.json "\"manifest\": \"verified\"" &&
	expect_grep v.json "\"kl_mean\"" && expect_grep v.json "\"top1\"" &&
	expect_grep v.json "\"ppl_ratio\"" && expect_grep err "qverify: pass"
'
test_done
