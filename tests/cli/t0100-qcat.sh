#!/bin/sh
# t0100: qcat converts checkpoints between directory and stream forms byte for
# byte, in canonical member order, lists them, and verifies manifests.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/t01-fixtures.inc"

mkckpt model 4
mkmanifest model

test_expect_success 'usage: --help on stdout, --version, bad usage exits 2' '
	qcat --help >help.out
	expect_grep help.out "usage: qcat"
	qcat --version >v.out
	grep -q "^qcat (qtoolkit) " v.out
	expect_status 2 qcat model
	expect_grep err "nothing to do"
	expect_status 2 qcat -o x
	expect_grep err "no checkpoint given"
	expect_status 2 qcat --list --verify model
	expect_grep err "exclude"
	expect_status 2 qcat --bogus model
	expect_grep err "unknown option"
	expect_status 2 qcat -f --list model
	expect_status 2 qcat --list model extra
'

test_expect_success 'dir -> stream -> dir is byte-identical' '
	qcat -o - model >s.tar
	qcat -o back - <s.tar
	for f in model/*; do expect_same "$f" "back/${f#model/}"; done
	test "$(ls back | wc -l)" = "$(ls model | wc -l)"
'

test_expect_success 'tar t lists members in canonical (layer) order' '
	tar tf s.tar >names
	printf "%s\n" config.json generation_config.json tokenizer.json \
		model-00001-of-00004.safetensors model-00002-of-00004.safetensors \
		model-00003-of-00004.safetensors model-00004-of-00004.safetensors \
		model.safetensors.index.json quant_manifest.json >expect
	expect_same names expect
	tar tvf s.tar | awk "{print \$1, \$2}" | sort -u >modes
	test "$(cat modes)" = "-rw-r--r-- 0/0"
'

test_expect_success 'streams are deterministic and GNU tar extracts them' '
	qcat -o - back >s2.tar
	expect_same s.tar s2.tar
	mkdir x
	tar -C x -xf s.tar
	diff -r model x
'

test_expect_success 'stream -> stream, through zstd and a pipe' '
	zstd -q -c s.tar >s.tar.zst
	qcat -o - s.tar.zst >s3.tar
	expect_same s.tar s3.tar
	zstd -q -c s.tar | qcat -o - - | qcat -o viapipe -
	diff -r model viapipe
'

test_expect_success 'a hand-made tar with ./ names and GNU padding reads the same' '
	tar -C model -cf gnu.tar ./config.json ./tokenizer.json ./generation_config.json \
		./model-00001-of-00004.safetensors ./model-00002-of-00004.safetensors \
		./model-00003-of-00004.safetensors ./model-00004-of-00004.safetensors \
		./model.safetensors.index.json ./quant_manifest.json
	qcat -o fromgnu gnu.tar
	diff -r model fromgnu
'

test_expect_success '--list prints one line per member and tensor' '
	qcat --list model >list.dir
	qcat --list - <s.tar >list.stream
	expect_same list.dir list.stream
	test "$(grep -c "^file	" list.dir)" = 5
	test "$(grep -c "^shard	" list.dir)" = 4
	test "$(grep -c "^tensor	" list.dir)" = 15
	expect_grep list.dir "tensor	model.embed_tokens.weight	BF16	[16, 8]	model-00001-of-00004.safetensors"
	head -1 list.dir | grep -q "^file	config.json	"
'

test_expect_success '--verify: a manifest computed with xxhsum matches, dir and stream' '
	qcat --verify model
	qcat --verify s.tar
	qcat -o - model | qcat --verify -
	qcat -v --verify model 2>v.err
	expect_grep v.err "match the manifest"
'

test_expect_success '--verify names the file and tensor that changed (exit 1)' '
	cp -r model bad
	f=bad/model-00003-of-00004.safetensors
	size=$(wc -c <$f)
	printf "\377" | dd of=$f bs=1 seek=$((size - 3)) conv=notrunc 2>/dev/null
	expect_status 1 qcat --verify bad
	expect_one_message qcat err
	expect_grep err "tensor '"'"'model.layers.2.input_layernorm.weight'"'"' in '"'"'model-00003-of-00004.safetensors'"'"' does not match the manifest"
	qcat -o - bad >bad.tar
	expect_status 1 qcat --verify bad.tar
'

test_expect_success '--verify: a changed small file, an extra file (exit 1)' '
	rm -rf bad
	cp -r model bad
	echo " " >>bad/tokenizer.json
	expect_status 1 qcat --verify bad
	expect_grep err "file '"'"'tokenizer.json'"'"' of '"'"'bad'"'"' does not match the manifest"
	rm -rf bad
	cp -r model bad
	echo x >bad/README.md
	expect_status 1 qcat --verify bad
	expect_grep err "file '"'"'README.md'"'"' of '"'"'bad'"'"' is not in the manifest"
'

test_expect_success '--verify without a manifest cannot verify (exit 2)' '
	rm -rf bad
	cp -r model bad
	rm bad/quant_manifest.json
	expect_status 2 qcat --verify bad
	expect_one_message qcat err
	expect_grep err "has no quant_manifest.json"
'

test_expect_success 'an existing output needs -f, which replaces it whole' '
	mkdir -p taken
	echo old >taken/old.txt
	expect_status 2 qcat -o taken model
	expect_grep err "exists and is not empty"
	test -f taken/old.txt
	qcat -f -o taken model
	diff -r model taken
	test ! -e taken.partial
'

test_expect_success 'a single-file checkpoint (no index) round-trips' '
	mkdir one
	cp model/config.json one/
	st_bf16 one/model.safetensors "model.embed_tokens.weight:4:2" "lm_head.weight:4:2"
	qcat -o - one | qcat -o one2 -
	diff -r one one2
	test "$(qcat --list one | grep -c "^tensor")" = 2
'

test_expect_success 'names longer than the 100-byte ustar field get pax records' '
	mkdir long
	cp model/config.json model/model-0000[1-4]* model/model.safetensors.index.json long/
	n=$(printf "%0150d" 0).json
	echo "{}" >"long/$n"
	qcat -o - long >long.tar
	tar tf long.tar | grep -qx "$n"
	qcat -o long2 long.tar
	diff -r long long2
'

test_done
