#!/bin/sh
# t0120: qcat on checkpoints written by the C writer (through qsynth): the
# writer's own stream equals qcat's stream of its directory, a sharded
# 1B-shaped checkpoint round-trips byte for byte, manifests verify.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/t01-fixtures.inc"

if [ ! -x "$QBIN/qsynth" ]; then
	test_skip 'qcat on qsynth checkpoints' 'qsynth not built'
	test_done
fi

test_expect_success 'the writer streams exactly what qcat makes of its directory' '
	qsynth -q --preset tiny --seed 3 -o tiny
	qsynth -q --preset tiny --seed 3 -o - >tiny.tar
	qcat -o - tiny >tiny2.tar
	expect_same tiny.tar tiny2.tar
	qcat --verify tiny
	qcat --verify tiny.tar
'

test_expect_success 'a sharded 1B-shaped checkpoint: dir -> stream -> dir is byte-identical' '
	qsynth -q --preset llama-3.2-1b --layers 2 --vocab 4096 -o b1
	qcat -o - b1 | qcat -o b1back -
	for f in b1/*; do expect_same "$f" "b1back/${f#b1/}"; done
	test "$(ls b1 | wc -l)" = "$(ls b1back | wc -l)"
	qcat --verify b1back
'

test_expect_success 'its stream lists the members in layer order' '
	qcat -o - b1 | tar t >names
	head -1 names | grep -qx config.json
	tail -1 names | grep -qx quant_manifest.json
	grep "safetensors$" names >shards
	sort shards | expect_same shards -
	test "$(grep -n "index.json" names | cut -d: -f1)" -gt "$(grep -n "00002-of" names | cut -d: -f1)"
	qcat --list b1 | grep "^tensor" | cut -f2 >tensors
	grep -n "model.layers.1\." tensors | head -1 | cut -d: -f1 >first1
	grep -n "model.layers.0\." tensors | tail -1 | cut -d: -f1 >last0
	test "$(cat last0)" -lt "$(cat first1)"
'

test_expect_success 'a flipped bit in a tensor fails --verify naming it (exit 1)' '
	cp -r tiny bad
	f=bad/model-00002-of-00002.safetensors
	printf "\001" | dd of=$f bs=1 seek=$(($(wc -c <$f) - 1)) conv=notrunc 2>/dev/null
	expect_status 1 qcat --verify bad
	expect_one_message qcat err
	expect_grep err "in '"'"'model-00002-of-00002.safetensors'"'"' does not match the manifest"
'

test_done
