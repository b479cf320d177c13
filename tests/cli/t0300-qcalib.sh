#!/bin/sh
# t0300: qcalib end to end, on tokenizers written here (both BPE families)
# and, when the shared data is there, the real ones.
. "$(dirname "$0")/lib.sh"

# ---- fixtures: two small model directories ----

# Byte-level BPE: ids 0..255 are the bytes in GPT-2's ByteLevel spelling,
# 256 "Ġt", 257 "he", 258 "Ġthe", then <|bos|> 259 and <|eos|> 260.
mkdir bl
awk 'BEGIN {
	printf "{\"added_tokens\": [{\"id\": 259, \"content\": \"<|bos|>\", \"special\": true, \"normalized\": false},"
	printf " {\"id\": 260, \"content\": \"<|eos|>\", \"special\": true, \"normalized\": false}],"
	printf " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false},"
	printf " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<|bos|>\"}}, {\"Sequence\": {\"id\": \"A\"}}],"
	printf " \"special_tokens\": {\"<|bos|>\": {\"id\": \"<|bos|>\", \"ids\": [259]}}},"
	printf " \"decoder\": {\"type\": \"ByteLevel\"},"
	printf " \"model\": {\"type\": \"BPE\", \"vocab\": {"
	n = 0
	for (b = 0; b < 256; b++) {
		if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) cp = b
		else cp = 256 + n++
		if (cp == 34 || cp == 92) s = sprintf("\\%c", cp)
		else if (cp < 128) s = sprintf("%c", cp)
		else s = sprintf("%c%c", 192 + int(cp / 64), 128 + cp % 64)
		printf "\"%s\": %d, ", s, b
	}
	printf "\"\304\240t\": 256, \"he\": 257, \"\304\240the\": 258},"
	printf " \"merges\": [\"\304\240 t\", \"h e\", \"\304\240t he\"]}}\n"
}' >bl/tokenizer.json
printf '{"bos_token": "<|bos|>", "eos_token": "<|eos|>"}\n' >bl/tokenizer_config.json
printf '{"vocab_size": 261, "eos_token_id": 260}\n' >bl/config.json

# SentencePiece-style BPE: <unk> <s> </s>, byte fallback <0x00>..<0xFF> as
# ids 3..258, then ▁ 259, a 260, b 261, ▁a 262, ab 263, ▁ab 264.
mkdir spm
awk 'BEGIN {
	u = "\342\226\201"
	printf "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true, \"normalized\": false},"
	printf " {\"id\": 1, \"content\": \"<s>\", \"special\": true, \"normalized\": false},"
	printf " {\"id\": 2, \"content\": \"</s>\", \"special\": true, \"normalized\": false}],"
	printf " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"%s\"},", u
	printf " {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"%s\"}]},", u
	printf " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}, {\"Sequence\": {\"id\": \"A\"}}],"
	printf " \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1]}}},"
	printf " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"%s\"}, \"content\": \" \"},", u
	printf " {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]},"
	printf " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"byte_fallback\": true, \"fuse_unk\": true, \"vocab\": {"
	printf "\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, "
	for (b = 0; b < 256; b++) printf "\"<0x%02X>\": %d, ", b, b + 3
	printf "\"%s\": 259, \"a\": 260, \"b\": 261, \"%sa\": 262, \"ab\": 263, \"%sab\": 264},", u, u, u
	printf " \"merges\": [\"%s a\", \"a b\", \"%sa b\"]}}\n", u, u
}' >spm/tokenizer.json
printf '{"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>"}\n' >spm/tokenizer_config.json

# The same vocabulary as a SentencePiece tokenizer.model (no tokenizer.json):
# protobuf ModelProto written byte by byte. Each piece is field 1 holding
# {1: piece, 2: score (float, little-endian), 3: type}; scores -1, -2, -3
# for ▁a, ab, ▁ab give the merge order of spm/ (types: 1 normal, 2 unknown,
# 3 control, 6 byte). Field 2 (trainer_spec): model_type 2 (BPE),
# byte_fallback 1; field 3 (normalizer_spec): name "identity",
# add_dummy_prefix 1, remove_extra_whitespaces 0.
mkdir spmm
LC_ALL=C awk 'function piece(s, f0, f1, f2, f3, type,   n) {
	n = length(s)
	printf "%c%c%c%c%s%c%c%c%c%c%c%c", 10, n + 9, 10, n, s, 21, f0, f1, f2, f3, 24, type
}
BEGIN {
	piece("<unk>", 0, 0, 0, 0, 2); piece("<s>", 0, 0, 0, 0, 3); piece("</s>", 0, 0, 0, 0, 3)
	for (b = 0; b < 256; b++) piece(sprintf("<0x%02X>", b), 0, 0, 0, 0, 6)
	u = "\342\226\201"
	piece(u, 0, 0, 0, 0, 1); piece("a", 0, 0, 0, 0, 1); piece("b", 0, 0, 0, 0, 1)
	piece(u "a", 0, 0, 128, 191, 1); piece("ab", 0, 0, 0, 192, 1); piece(u "ab", 0, 0, 64, 192, 1)
	printf "%c%c%c%c%c%c%c", 18, 5, 24, 2, 152, 2, 1
	printf "%c%c%c%c%s%c%c%c%c", 26, 14, 10, 8, "identity", 24, 1, 32, 0
}' >spmm/tokenizer.model
cp spm/tokenizer_config.json spmm/

printf 'the theme of the thesis.\n\nthe other paragraph\nwith two lines.\n\n\n\nand the third one, the last.\n' >text.txt

# ---- usage ----

test_expect_success 'qcalib --help prints usage on stdout' '
	qcalib --help >out && expect_grep out "usage: qcalib" && expect_grep out "--template"
'
test_expect_success 'qcalib --version' 'qcalib --version | grep -q "^qcalib (qtoolkit)"'
test_expect_code 2 'unknown option is a usage error' 'qcalib --bogus 2>err; st=$?; expect_grep err "usage:"; exit $st'
test_expect_code 2 'no inputs is a usage error' 'qcalib -m bl -o x.st 2>err; st=$?; expect_grep err "no inputs"; exit $st'
test_expect_code 2 'no model is a usage error' 'qcalib text.txt -o x.st 2>err; st=$?; expect_grep err "no model"; exit $st'
test_expect_code 2 '--field and --template together' 'qcalib -m bl --field a --template "{a}" x.jsonl 2>/dev/null'
test_expect_code 2 'bad --template' 'qcalib -m bl --template "{a" x.jsonl 2>/dev/null'
test_expect_code 2 '-n 0 is refused' 'qcalib -m bl -n 0 text.txt 2>/dev/null'

# ---- random ----

test_expect_success '--random twice gives identical bytes (file and stdout)' '
	qcalib -m bl --random -n 4 -L 16 --seed 1 -o r1.st &&
	qcalib -m bl --random -n 4 -L 16 --seed 1 >r2.st &&
	expect_same r1.st r2.st &&
	qcalib -m bl --random -n 4 -L 16 --seed 2 -o r3.st &&
	! cmp -s r1.st r3.st
'
# 64 ids, none of them special: each row decodes to at least 64 bytes
test_expect_success '--random never draws special tokens' '
	qcalib -m bl --random -n 64 -L 64 --seed 3 -o r.st &&
	for k in 0 17 63; do
		qcalib --show r.st --decode $k -m bl >dec$k &&
		test "$(wc -c <dec$k)" -ge 64 || { echo "row $k decodes to fewer than 64 bytes"; exit 1; }
	done &&
	cat dec0 dec17 dec63 >dec && ! grep -q "<|" dec
'
test_expect_success '--show summarizes a token set' '
	qcalib --show r1.st >show &&
	expect_grep show "rows:       4" && expect_grep show "length:     16" &&
	expect_grep show "seed:       1" && expect_grep show "\"random\":true" &&
	expect_grep show "vocab_size: 261"
'

# ---- text ----

test_expect_success 'text in pad mode: one paragraph per row, BOS first' '
	qcalib -m bl --mode pad -n 3 -L 64 -o p.st text.txt 2>err &&
	expect_grep err "3 documents, 3 used" &&
	for k in 0 1 2; do qcalib --show p.st --decode $k -m bl || exit 1; done >dec &&
	expect_grep dec "<|bos|>the theme of the thesis." &&
	expect_grep dec "<|bos|>the other paragraph" &&
	expect_grep dec "with two lines." &&
	expect_grep dec "<|bos|>and the third one, the last."
'
test_expect_success 'text in pack mode: full rows with EOS between documents' '
	qcalib -m bl --split lines -n 2 -L 20 -o k.st text.txt 2>err &&
	qcalib --show k.st >show && expect_grep show "tokens:     40 of 40" &&
	{ qcalib --show k.st --decode 0 -m bl && qcalib --show k.st --decode 1 -m bl; } >dec &&
	expect_grep dec "<|eos|>"
'
test_expect_success 'the same inputs and seed give the same file; another seed reorders' '
	seq 1 300 >nums.txt &&
	qcalib -m bl --split lines -n 4 -L 32 --seed 5 -o s1.st nums.txt &&
	qcalib -m bl --split lines -n 4 -L 32 --seed 5 -o s2.st nums.txt &&
	expect_same s1.st s2.st &&
	qcalib -m bl --split lines -n 4 -L 32 --seed 6 -o s3.st nums.txt &&
	! cmp -s s1.st s3.st
'
test_expect_success 'standard input and the source hash' '
	qcalib -m bl --split none -n 1 -L 8 -o i.st - <text.txt &&
	qcalib --show i.st >show && expect_grep show "<stdin>"
'
test_expect_success 'too little text: fewer rows and a warning' '
	qcalib -m bl --mode pad -n 10 -L 8 -o w.st text.txt 2>err &&
	expect_grep err "only 3 of 10 rows" &&
	qcalib --show w.st >show && expect_grep show "rows:       3"
'
test_expect_code 2 'pack with not enough text for one row' '
	qcalib -m bl -n 1 -L 100000 -o x.st text.txt 2>err; st=$?; expect_one_message qcalib err; exit $st
'
test_expect_code 2 'empty input is an error' '
	: >empty.txt && printf "\n  \n\n" >blank.txt &&
	qcalib -m bl -o x.st empty.txt blank.txt 2>err; st=$?
	expect_one_message qcalib err && expect_grep err "no text"; [ ! -e x.st ]; exit $st
'
test_expect_success 'invalid UTF-8 is tokenized as bytes and decodes back' '
	printf "ok \377\376 caf\303 end" >bad.txt &&
	qcalib -m bl --mode pad --split none -n 1 -L 64 -o b.st bad.txt &&
	qcalib --show b.st --decode 0 -m bl >dec &&
	printf "<|bos|>ok \377\376 caf\303 end\n" >want && expect_same dec want &&
	qcalib -m spm --encode bad.txt >ids && test -s ids
'

# ---- JSON Lines ----

cat >d.jsonl <<'EOF'
{"text": "the first record", "n": 1}
[1, 2]
{"other": "no text field"}
not json at all

{"text": "the second record"}
{"text": 42}
EOF

test_expect_success 'JSON Lines: used and skipped records are reported' '
	qcalib -m bl --field text --mode pad -n 8 -L 16 -o j.st d.jsonl 2>err &&
	expect_grep err "6 records, 3 skipped (2 not JSON objects, 1 without the field)" &&
	expect_grep err "3 documents, 3 used" &&
	qcalib --show j.st >show && expect_grep show "rows:       3"
'
test_expect_success 'JSON Lines: a template over fields' '
	qcalib -m bl --template "Q: {text}\n#{n}" --mode pad -n 8 -L 32 -o t.st d.jsonl 2>err &&
	expect_grep err "6 records, 5 skipped" &&
	qcalib --show t.st --decode 0 -m bl >dec &&
	printf "<|bos|>Q: the first record\n#1\n" >want && expect_same dec want
'
test_expect_code 2 'JSON Lines: --strict stops at the first bad line' '
	qcalib -m bl --field text --strict -o x.st d.jsonl 2>err; st=$?
	expect_one_message qcalib err && expect_grep err "line 2: not a JSON object"; exit $st
'

# ---- tokenizers ----

test_expect_success 'SentencePiece-style: ids worked by hand' '
	printf "ab ba" >ab.txt &&
	echo "264 259 261 260" >want && qcalib -m spm --encode ab.txt >ids && expect_same ids want &&
	echo "1 264 259 261 260" >want && qcalib -m spm --encode ab.txt --special >ids && expect_same ids want
'
test_expect_success 'byte-level: ids worked by hand' '
	printf "the the" >th.txt &&
	echo "116 257 258" >want && qcalib -m bl --encode th.txt >ids && expect_same ids want
'
test_expect_success 'SentencePiece-style: pad mode decodes back' '
	printf "ab abba a\n" >s.txt &&
	qcalib -m spm --mode pad -n 1 -L 32 -o sp.st s.txt &&
	qcalib --show sp.st --decode 0 -m spm >dec && printf "<s> ab abba a\n" >want && expect_same dec want
'
test_expect_success 'SentencePiece tokenizer.model: the ids of the same vocabulary as tokenizer.json' '
	qcalib -m spmm --encode ab.txt >ids && echo "264 259 261 260" >want && expect_same ids want &&
	printf "ab abba a, \303\251\n" >t.txt &&
	qcalib -m spmm --encode t.txt --special >a && qcalib -m spm --encode t.txt --special >b &&
	expect_same a b
'
test_expect_success 'SentencePiece tokenizer.model: pad mode decodes back, the set names its hash' '
	qcalib -m spmm --mode pad -n 1 -L 32 -o spmm.st s.txt &&
	qcalib --show spmm.st --decode 0 -m spmm >dec && printf "<s> ab abba a\n" >want && expect_same dec want &&
	qcalib --show spmm.st >show && h=$(xxhsum -H128 spmm/tokenizer.model | cut -d" " -f1) &&
	expect_grep show "$h"
'
test_expect_success 'a malformed tokenizer.model: exit 2, one line naming the file and the piece cut (the 7th, at byte 96)' '
	mkdir bad && head -c 100 spmm/tokenizer.model >bad/tokenizer.model &&
	{ qcalib -m bad --random -o x.st 2>err; test $? = 2; } && test ! -e x.st &&
	expect_one_message qcalib err && expect_grep err "bad/tokenizer.model" && expect_grep err "piece 6"
'
test_expect_code 2 'unsupported tokenizer type is named' '
	mkdir wp && printf "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}" >wp/tokenizer.json &&
	qcalib -m wp --random -o x.st 2>err; st=$?
	expect_one_message qcalib err && expect_grep err "WordPiece"; exit $st
'
test_expect_code 2 'missing tokenizer' '
	mkdir none && qcalib -m none --random -o x.st 2>err; st=$?
	expect_one_message qcalib err && expect_grep err "tokenizer.json"; exit $st
'
test_expect_code 2 'a file that is not a token set' '
	qcalib --show text.txt 2>err; st=$?; expect_one_message qcalib err; exit $st
'

# ---- the real tokenizers, when the shared data is there ----

sd=${QC_SHARED_DATA:-}
if [ -n "$sd" ] && [ -d "$sd/tokenizers/vectors" ]; then
	for pair in gpt2:gpt-2 llama3:llama-bpe tinyllama:llama-spm phi-3-mini:phi-3; do
		dir=${pair%%:*} vec=${pair#*:}
		test_expect_success "--encode matches the tokenizers library: $dir" "
			awk -v RS='\n__ggml_vocab_test__\n' 'NR >= 2 && NR <= 6 { printf \"%s\", \$0 > (\"case\" NR) }' \
				'$sd/tokenizers/vectors/$vec.inp' &&
			for k in 2 3 4 5 6; do
				qcalib --tokenizer '$sd/tokenizers/$dir' --encode case\$k >got &&
				sed -n \"\${k}p\" '$sd/tokenizers/vectors/$vec.out' | sed 's/^ //' >want &&
				expect_same got want || exit 1
			done
		"
	done
else
	test_skip '--encode matches the tokenizers library' 'no shared data (QC_SHARED_DATA)'
fi

test_done
