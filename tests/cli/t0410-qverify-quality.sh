#!/bin/sh
# t0410: qverify --tasks, --prompts, --answers on a qsynth model and its
# W4A16 (naive, packed, GPTQ layout), W8A8 and FP8 artifacts: every report
# field, the outputs file, gates passing and failing (exit 1 naming the
# task), lm-eval sample files, bad task files (exit 2 naming file:line),
# usage errors.
. "$(dirname "$0")/lib.sh"

for t in qsynth qcalib qgptq qfp8 qpack; do
	command -v $t >/dev/null || { test_skip 'qverify quality' "$t not built"; test_done; }
done

# run a command, fail unless it exits with the given status
expect_exit() { # status command...
	want=$1
	shift
	st=0
	"$@" || st=$?
	[ "$st" = "$want" ] || { echo "exit status $st, expected $want: $*"; return 1; }
}

# the value of a numeric field of a one-line JSON file (first occurrence)
field() { # file key
	sed -n "s/.*\"$2\": *\([-0-9.e+]*\).*/\1/p" "$1" | head -n 1
}

test_expect_success 'setup: a model, its artifacts, task, prompt and answer files' '
	qsynth -q --preset tiny -o m &&
	qsynth -q --preset tiny --seed 9 -o other &&
	qcalib -q -m m --random -n 4 -L 32 --seed 3 -o c.st &&
	qgptq -q --calib c.st -o w4 m &&
	qpack -q -o w4p w4 &&
	qpack -q -f gptq -o w4g w4 &&
	qgptq -q --scheme w8a8 --calib c.st -o a8 m &&
	qfp8 -q -o f8 m &&
	cat >mc.jsonl <<-EOT &&
	{"context": "The capital of France is", "choices": ["Paris", "Rome", "Berlin", "Madrid"], "gold": 0}
	{"context": "Two plus two is", "choices": ["four", "five", "six"], "gold": 0}

	{"context": "The sky is", "choices": ["blue", "green", "made of cheese"], "gold": 2}
	{"context": "A cat says", "choices": [" meow", " woof"], "gold": 0, "delimiter": ""}
	{"context": "Water boils at 100 deg", "choices": ["rees", "rees Celsius", "s"], "gold": 1, "delimiter": ""}
	{"context": "Question: best fruit?\nAnswer:", "choices": ["apple", "pear", "plum", "fig"], "gold": 3}
	{"context": "One, two, three,", "choices": ["four", "five"], "gold": 0}
	{"context": "Red, green and", "choices": ["blue", "yellow", "black"], "gold": 0}
	EOT
	cat >pr.jsonl <<-EOT &&
	{"prompt": "Once upon a time"}
	{"id": "fox", "prompt": "The quick brown fox"}
	{"prompt": "In 1492, Columbus"}
	EOT
	cat >ans.jsonl <<-EOT &&
	{"question": "What is 2+2?", "answer": "2+2=4\n#### 4"}
	{"prompt": "Say 7:", "target": "7"}
	EOT
	cat >samples_arc.jsonl <<-EOT
	{"doc_id": 0, "doc": {}, "target": 1, "arguments": [["Q: sky?\nA:", " blue"], ["Q: sky?\nA:", " red"]]}
	{"doc_id": 1, "target": "0", "arguments": {"gen_args_0": {"arg_0": "Q: sea?\nA:", "arg_1": " wet"}, "gen_args_1": {"arg_0": "Q: sea?\nA:", "arg_1": " dry"}}}
	EOT
'

test_expect_success 'a model against itself: no flips, ROUGE 1, tightest gates hold' '
	qverify m --base m --tasks mc.jsonl --prompts pr.jsonl --answers ans.jsonl \
		--max-new-tokens 12 --min-acc-recovery 1 --max-flip-rate 0 --min-rouge1 1 \
		-o rep.json 2>err &&
	expect_grep rep.json "\"verdict\": \"pass\"" &&
	expect_grep rep.json "\"acc_diff\": 0.0" &&
	expect_grep rep.json "\"rate\": 0.0" &&
	expect_grep rep.json "\"rouge1\": 1.0" &&
	expect_grep rep.json "\"rougeL\": 1.0" &&
	expect_grep rep.json "\"exact_match\": 1.0" &&
	expect_grep rep.json "\"first_diff_mean\": 12.0" &&
	expect_grep rep.json "\"chat\": \"none\"" &&
	expect_grep rep.json "\"outputs\": \"rep.outputs.jsonl\"" &&
	test "$(wc -l <rep.outputs.jsonl)" = 13 &&
	expect_grep rep.outputs.jsonl "\"id\":\"fox\"" &&
	expect_grep rep.outputs.jsonl "\"target\":\"4\"" &&
	expect_grep err "choice   mc" &&
	expect_grep err "answer   ans" &&
	expect_grep err "generation (3 prompts, chat none): rouge1 1.0000" &&
	expect_grep err "tasks artifact" &&
	expect_grep err "tok/s"
'

test_expect_success 'every artifact format runs tasks and prompts against the base' '
	for a in w4 w4p w4g a8 f8; do
		qverify -q $a --base m --tasks mc.jsonl --prompts pr.jsonl --max-new-tokens 8 \
			-o r$a.json || exit 1
		for k in acc acc_stderr acc_norm acc_norm_stderr acc_diff acc_norm_diff acc_recovery \
			acc_norm_recovery right_to_wrong wrong_to_right right_to_wrong_rate \
			wrong_to_right_rate rouge1 rougeL exact_match first_diff_mean diverged \
			tokens_per_s base_tokens_per_s; do
			expect_grep r$a.json "\"$k\":" || exit 1
		done
	done &&
	# W4A16 decodes on packed int4 codes whatever the layout; the others in FP32
	for a in w4 w4p w4g; do expect_grep r$a.json "\"int4_linears\": 14" || exit 1; done &&
	expect_grep ra8.json "\"int4_linears\": 0" &&
	expect_grep rf8.json "\"int4_linears\": 0"
'

test_expect_success 'the report is deterministic' '
	qverify -q w4 --base m --tasks mc.jsonl --prompts pr.jsonl --max-new-tokens 8 \
		--outputs o2.jsonl >r2.json &&
	qverify -q w4 --base m --tasks mc.jsonl --prompts pr.jsonl --max-new-tokens 8 \
		--outputs o3.jsonl >r3.json &&
	grep -v "tokens_per_s\|outputs" r2.json >a && grep -v "tokens_per_s\|outputs" r3.json >b &&
	expect_same a b &&
	expect_same o2.jsonl o3.jsonl &&
	expect_same o2.jsonl rw4.outputs.jsonl
'

test_expect_success 'a stream artifact: its layers load again for the quality checks' '
	qcat -q -o - w4 | qverify -q - --base m --tokens c.st --tasks mc.jsonl \
		--prompts pr.jsonl --max-new-tokens 8 >st.json &&
	expect_grep st.json "\"int4_linears\": 14" &&
	expect_grep st.json "\"kl_mean\":" &&
	grep "\"rouge1\"" st.json >a && grep "\"rouge1\"" rw4.json >b && expect_same a b
'

test_expect_success 'gates fail against another model, naming the task (exit 1)' '
	# gold: the base model own answers, so the base scores 1
	qverify -q m --tasks mc.jsonl --outputs mine.jsonl >/dev/null &&
	sed -n "s/.*\"artifact_pred\":\([0-9]*\).*/\1/p" mine.jsonl >preds &&
	test "$(wc -l <preds)" = 8 &&
	grep -v "^[[:space:]]*$" mc.jsonl | paste -d "|" - preds |
		sed "s/\"gold\": [0-9]*\(.*\)|\([0-9]*\)$/\"gold\": \2\1/" >gold.jsonl &&
	qverify -q m --base m --tasks gold.jsonl >g.json &&
	test "$(field g.json acc)" = 1.0 &&
	expect_exit 1 qverify other --base m --tasks gold.jsonl --prompts pr.jsonl \
		--max-new-tokens 12 --min-acc-recovery 1 --max-flip-rate 0 --min-rouge1 1 \
		-o bad.json 2>err &&
	expect_grep err "FAIL: quality: tasks: gold: acc_recovery" &&
	expect_grep err "FAIL: quality: tasks: gold: flip rate" &&
	expect_grep err "FAIL: quality: prompts: pr: rouge1" &&
	expect_grep bad.json "\"verdict\": \"fail\""
'

test_expect_success 'lm-eval sample files, chosen or detected' '
	qverify -q m --tasks samples_arc.jsonl --task-format lm-eval >s.json &&
	expect_grep s.json "\"format\": \"lm-eval\"" &&
	expect_grep s.json "\"task\": \"samples_arc\"" &&
	qverify -q m --tasks samples_arc.jsonl --tasks mc.jsonl --add-bos >s2.json &&
	expect_grep s2.json "\"task\": \"mc\""
'

test_expect_success 'chat messages need a template; llama3 and llama2 forms run' '
	echo "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}]}" >chat.jsonl &&
	expect_exit 2 qverify -q m --prompts chat.jsonl --chat none 2>err &&
	expect_one_message qverify err &&
	qverify -q m --prompts chat.jsonl --chat llama3 --max-new-tokens 4 >c3.json &&
	expect_grep c3.json "\"chat\": \"llama3\"" &&
	qverify -q m --prompts chat.jsonl --chat llama2 --max-new-tokens 4 >c2.json &&
	expect_grep c2.json "\"chat\": \"llama2\""
'

test_expect_success 'bad task and prompt files: exit 2 naming file and line' '
	for c in "{\"choices\": [\"a\", \"b\"], \"gold\": 0}|bad.jsonl:1: \"context\" is missing" \
		"{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"gold\": 5}|bad.jsonl:1: \"gold\" 5 is outside" \
		"{\"context\": \"c\", \"choices\": [\"a\", \"\"], \"gold\": 0}|bad.jsonl:1: choice 1 is empty" \
		"{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"gold\": 0}
{oops|bad.jsonl:2:"; do
		printf "%s\n" "${c%%|*}" >bad.jsonl || exit 1
		expect_exit 2 qverify -q m --base m --tasks bad.jsonl >out 2>err || exit 1
		expect_one_message qverify err || exit 1
		expect_grep err "${c#*|}" || exit 1
		test ! -s out || exit 1
	done &&
	echo "{\"prompt\": 3}" >badp.jsonl &&
	expect_exit 2 qverify -q m --prompts badp.jsonl 2>err &&
	expect_grep err "badp.jsonl:1: \"prompt\"" &&
	echo "{\"prompt\": \"x\"}" >bada.jsonl &&
	expect_exit 2 qverify -q m --answers bada.jsonl 2>err &&
	expect_grep err "bada.jsonl:1: \"target\" or \"answer\" is missing"
'

test_expect_success 'token ids outside the model vocabulary: exit 2 naming file and line' '
	qsynth -q --preset tiny --vocab 1024 -o big &&
	mkdir small && cp m/*.json m/*.safetensors small/ && rm small/quant_manifest.json &&
	cp big/tokenizer.json big/tokenizer_config.json small/ &&
	printf "%s\n" "{\"context\": \"<|reserved_special_token_400|>\", \"choices\": [\"a\", \"b\"], \"gold\": 0}" >oov.jsonl &&
	expect_exit 2 qverify -q small --tasks oov.jsonl 2>err &&
	expect_one_message qverify err &&
	expect_grep err "oov.jsonl:1" &&
	expect_grep err "outside the model" 
'

test_expect_success 'usage: gates need a base and their files; bad names' '
	expect_exit 2 qverify -q m --tasks mc.jsonl --min-acc-recovery 0.9 2>err &&
	expect_grep err "need --base" &&
	expect_exit 2 qverify -q m --base m --tasks mc.jsonl --min-rouge1 0.5 2>err &&
	expect_grep err "--min-rouge1 needs --prompts" &&
	expect_exit 2 qverify -q m --tasks mc.jsonl --task-format csv 2>err &&
	expect_exit 2 qverify -q m --prompts pr.jsonl --chat chatml 2>err &&
	expect_exit 2 qverify -q m --prompts pr.jsonl --max-new-tokens 0 2>err &&
	expect_exit 2 qverify -q m --answers ans.jsonl --answer-regex "(" 2>err &&
	expect_grep err "answer regex"
'

test_done
