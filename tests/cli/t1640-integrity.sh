#!/bin/sh
# t1640: integrity. A single changed byte anywhere in any file of an
# artifact (headers included) is found by `qcat --verify` (exit 1, or 2
# when the change breaks the file's syntax) and by qverify, both for what
# qgptq writes and for what qpack releases. The manifest included: it
# records the hash of its own bytes (self_xxh3_128), so its provenance
# entries (history, base source, token set roles) are covered too.
. "$(dirname "$0")/lib.sh"

# flip FILE POS: xor the byte at POS with 1
flip() {
	b=$(od -An -tu1 -j"$2" -N1 "$1" | tr -d ' ')
	printf "\\$(printf '%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
# positions 0..size-1: the first 12 bytes, then every STEP-th
positions() { # size step
	i=0
	while [ $i -lt "$1" ]; do
		echo $i
		if [ $i -lt 12 ]; then i=$((i + 1)); else i=$((i + $2)); fi
	done
}
# first byte offset of string $2 in file $1
offset_of() { grep -a -b -o -F -- "$2" "$1" | head -1 | cut -d: -f1; }

# flip_all DIR STEP QVERIFY_STEP: every file, many positions, each must be caught
flip_all() {
	dir=$1 step=$2 qstep=$3
	for f in "$dir"/*; do
		cp "$f" orig
		size=$(wc -c <"$f")
		k=0
		for p in $(positions "$size" "$step"); do
			cp orig "$f"
			flip "$f" "$p"
			st=0
			qcat --verify "$dir" >/dev/null 2>err || st=$?
			[ $st = 1 ] || [ $st = 2 ] || { echo "qcat: $f byte $p not caught ($st)"; cat err; exit 1; }
			if [ $((k % qstep)) = 0 ]; then
				st=0
				qverify -q -j 1 "$dir" >/dev/null 2>err || st=$?
				[ $st = 1 ] || [ $st = 2 ] || { echo "qverify: $f byte $p not caught ($st)"; exit 1; }
			fi
			k=$((k + 1))
		done
		cp orig "$f"
		echo "$f: $k positions"
	done
	qcat --verify "$dir" >/dev/null && qverify -q -j 1 "$dir" >/dev/null
}

test_expect_success 'setup: a quantized model and its packed release' '
	qsynth -q --layers 1 --hidden 64 --intermediate 128 --heads 2 --kv-heads 2 --vocab 300 -o m &&
	qgptq -q --method rtn --group-size 32 -o g m &&
	qpack -q -f gptq -o p g &&
	qcat --verify g >/dev/null && qverify -q -j 1 g >/dev/null && qverify -q -j 1 p >/dev/null
'

test_expect_success 'every file of the quantized model: flipped bytes are caught' '
	flip_all g 701 8
'

test_expect_success 'every file of the packed release: flipped bytes are caught' '
	flip_all p 701 8
'

# the manifest's provenance (history with argv, base, token sets) and its
# own hash, which no other hash covers: every byte of them
test_expect_success 'every byte of the manifest from "history" to "tensors" is caught' '
	f=g/quant_manifest.json &&
	lo=$(offset_of "$f" "\"history\"") && hi=$(offset_of "$f" "\"tensors\"") &&
	test -n "$lo" && test -n "$hi" && test $((hi - lo)) -gt 100 &&
	cp "$f" orig && p=$lo &&
	while [ $p -lt $hi ]; do
		cp orig "$f" && flip "$f" $p || exit 1
		st=0
		qcat --verify g >/dev/null 2>err || st=$?
		[ $st = 1 ] || [ $st = 2 ] || { echo "qcat: byte $p not caught ($st)"; exit 1; }
		p=$((p + 1))
	done &&
	cp orig "$f" && qcat --verify g >/dev/null
'

test_done
