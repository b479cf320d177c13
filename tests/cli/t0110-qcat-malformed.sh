#!/bin/sh
# t0110: malformed checkpoints through qcat: each one exits 2 with exactly one
# line "qcat: ..." naming the problem, writes nothing to stdout, leaves no
# output directory (nor its .partial) behind, and does not crash (under
# SANITIZE=1 a sanitizer report would be a second line on stderr).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/t01-fixtures.inc"

mkckpt model 3
qcat -o - model >good.tar

# A directory holding config.json and one crafted model.safetensors.
bad_st() { # json datalen [header-length]
	rm -rf b
	mkdir b
	echo '{}' >b/config.json
	st_raw b/model.safetensors "$@"
}
T='"dtype":"U8","shape":[4],"data_offsets":[0,4]'

test_expect_success 'truncated shard' '
	cp -r model b1
	f=b1/model-00002-of-00003.safetensors
	head -c $(($(wc -c <$f) - 10)) $f >t && mv t $f
	expect_bad "runs past the end" -o out b1
'
test_expect_success 'header length beyond the file' '
	bad_st "{\"a\":{$T}}" 4 1000
	expect_bad "header length 1000 runs past the end of the file" -o out b
'
test_expect_success 'header length 0' '
	bad_st "" 8 0
	expect_bad "header length 0 is too small" -o out b
'
test_expect_success 'header length absurd (2^62)' '
	bad_st "{}" 0 $((1 << 62))
	expect_bad "is larger than 100000000" -o out b
'
test_expect_success 'overlapping offsets' '
	bad_st "{\"a\":{$T},\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}" 6
	expect_bad "tensor '"'"'b'"'"' overlaps tensor '"'"'a'"'"'" -o out b
'
test_expect_success 'gapped offsets' '
	bad_st "{\"a\":{$T},\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]}}" 10
	expect_bad "gap of 2 bytes before tensor '"'"'b'"'"'" -o out b
'
test_expect_success 'offsets beyond the file' '
	bad_st "{\"a\":{\"dtype\":\"U8\",\"shape\":[64],\"data_offsets\":[0,64]}}" 8
	expect_bad "tensor data runs past the end of the file" -o out b
'
test_expect_success 'dtype size does not match the byte range' '
	bad_st "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,4]}}" 4
	expect_bad "needs 16 bytes but data_offsets [0, 4] hold 4" -o out b
'
test_expect_success 'unknown dtype' '
	bad_st "{\"a\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,4]}}" 4
	expect_bad "unknown dtype '"'"'Q4'"'"'" -o out b
'
test_expect_success 'huge shape that overflows' '
	bad_st "{\"a\":{\"dtype\":\"BF16\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}" 4
	expect_bad "overflows" -o out b
'
test_expect_success 'negative dimension' '
	bad_st "{\"a\":{\"dtype\":\"U8\",\"shape\":[-4],\"data_offsets\":[0,4]}}" 4
	expect_bad "dimension that is not a non-negative integer" -o out b
'
test_expect_success 'bad JSON header' '
	bad_st "{\"a\":{$T}" 4
	expect_bad "bad JSON header" -o out b
'
test_expect_success 'non-string metadata' '
	bad_st "{\"__metadata__\":{\"format\":{\"x\":1}},\"a\":{$T}}" 4
	expect_bad "__metadata__ value of '"'"'format'"'"' is not a string" -o out b
'
test_expect_success 'duplicate tensor names' '
	bad_st "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}" 4
	expect_bad "duplicate object key" -o out b
'

# Index edits on a copy of the good model.
bad_index() { # sed-expression
	rm -rf bi
	cp -r model bi
	sed -i "$1" bi/model.safetensors.index.json
}
test_expect_success 'index pointing outside the directory (../x)' '
	bad_index "s|\"model-00002-of-00003.safetensors\"|\"../model-00002-of-00003.safetensors\"|"
	expect_bad "unsafe file '"'"'../model-00002-of-00003.safetensors'"'"'" -o out bi
'
test_expect_success 'index pointing at an absolute path (/etc/passwd)' '
	bad_index "0,/\"model-00002-of-00003.safetensors\"/s||\"/etc/passwd\"|"
	expect_bad "unsafe file '"'"'/etc/passwd'"'"'" -o out bi
'
test_expect_success 'index naming a missing file' '
	bad_index "s|\"model-00002-of-00003.safetensors\"|\"model-00009-of-00009.safetensors\"|"
	expect_bad "model-00009-of-00009.safetensors'"'"' is missing" -o out bi
'
test_expect_success 'index and shard disagreeing' '
	bad_index "s|\"lm_head.weight\": \"model-00003-of-00003.safetensors\"|\"lm_head.weight\": \"model-00001-of-00003.safetensors\"|"
	expect_bad "puts tensor '"'"'lm_head.weight'"'"' in '"'"'model-00001-of-00003.safetensors'"'"'" -o out bi
'
test_expect_success 'directory without config.json, without safetensors' '
	mkdir -p nocfg && cp model/model-0000* model/model.safetensors.index.json nocfg/
	expect_bad "no config.json" -o out nocfg
	mkdir -p nost && echo "{}" >nost/config.json
	expect_bad "no safetensors" -o out nost
	expect_bad "cannot open '"'"'missing'"'"': No such file or directory" -o out missing
'

test_expect_success 'tar with a bad header checksum' '
	cp good.tar bad.tar
	printf "X" | dd of=bad.tar bs=1 seek=$((1024 + 3)) conv=notrunc 2>/dev/null
	expect_bad "bad tar header checksum at offset 1024" -o out bad.tar
	expect_bad "bad tar header checksum" -o out - <bad.tar
'
test_expect_success 'tar member truncated' '
	# three small files (2 blocks each), then the first shard: cut in its data
	head -c $((6 * 512 + 512 + 500)) good.tar >cut.tar
	expect_bad "is truncated" -o out cut.tar
	expect_bad "is truncated" --verify - <cut.tar
'
test_expect_success 'tar members out of layer order' '
	tar -C model -cf order.tar config.json model-00002-of-00003.safetensors \
		model-00001-of-00003.safetensors model-00003-of-00003.safetensors model.safetensors.index.json
	expect_bad "out of layer order: tensor '"'"'model.embed_tokens.weight'"'"' in '"'"'model-00001-of-00003.safetensors'"'"'" -o out order.tar
'
test_expect_success 'tar member with an unsafe name' '
	tar -P --transform "s,^,../," -C model -cf up.tar config.json
	expect_bad "unsafe member name '"'"'../config.json'"'"'" -o out up.tar
	tar -P -cf abs.tar /etc/hostname
	expect_bad "unsafe member name '"'"'/etc/hostname'"'"'" -o out abs.tar
'
test_expect_success 'tar with a symbolic link' '
	ln -s config.json model-link
	tar -cf link.tar model-link
	expect_bad "unsupported type '"'"'2'"'"'" -o out link.tar
'
test_expect_success 'truncated zstd stream, empty input, not a tar' '
	zstd -q -c good.tar >good.tar.zst
	head -c $(($(wc -c <good.tar.zst) - 10)) good.tar.zst >cut.tar.zst
	expect_bad "unexpected end of compressed data" -o out cut.tar.zst
	expect_bad "empty input" -o out - </dev/null
	printf "hello, I am not a tar archive" >junk
	expect_bad "not a tar stream" -o out junk
'
test_expect_success 'a stream without an end-of-archive marker' '
	head -c $(($(wc -c <good.tar) - 1024)) good.tar >noend.tar
	expect_bad "no end-of-archive blocks" -o out noend.tar
'

test_done
