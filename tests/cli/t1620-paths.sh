#!/bin/sh
# t1620: path safety. Tar member names and index file names that leave the
# checkpoint (.., absolute paths), hide a second name behind a NUL byte, or
# repeat a member are refused with one line and no output; an output never
# writes through a symbolic link planted in OUT.partial (kept by --resume).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/t01-fixtures.inc"

# expect_bad MESSAGE ARGS...: qcat exits 2, one line naming MESSAGE, no output
expect_bad() {
	msg=$1
	shift
	rm -rf out out.partial
	st=0
	qcat "$@" >stdout 2>err || st=$?
	test "$st" = 2 || { echo "exit status $st, expected 2"; cat err; return 1; }
	expect_one_message qcat err || return 1
	expect_grep err "$msg" || return 1
	test ! -e out && test ! -e out.partial || { echo "output left behind"; return 1; }
}
# the byte offset of the first occurrence of string $2 in file $1
offset_of() { grep -a -b -o -F -- "$2" "$1" | head -1 | cut -d: -f1; }

test_expect_success 'setup' '
	mkckpt model 3 &&
	qsynth -q --layers 2 --hidden 64 --intermediate 128 --heads 2 --kv-heads 2 --vocab 300 -o m &&
	qcalib -q -m m --random -n 8 -L 32 -o c.st
'

test_expect_success 'a member that appears twice' '
	tar -C model -cf dup.tar config.json && tar -C model -rf dup.tar config.json tokenizer.json &&
	expect_bad "appears twice" -o out dup.tar
'

test_expect_success 'a GNU long name with a NUL byte inside' '
	long=$(printf "%0120d" 0).json &&
	cp model/config.json "$long" &&
	tar --format=gnu -cf gnu.tar "$long" &&
	o=$(offset_of gnu.tar 0000000000000000000000) &&
	printf "\\000" | dd of=gnu.tar bs=1 seek=$((o + 5)) conv=notrunc 2>/dev/null &&
	expect_bad "holds a NUL byte" -o out gnu.tar
'

test_expect_success 'a pax path with a NUL byte inside, or leaving the checkpoint' '
	long=$(printf "%0120d" 0).json &&
	cp model/config.json "$long" &&
	tar --format=posix -cf pax.tar "$long" &&
	cp pax.tar pax2.tar &&
	o=$(offset_of pax.tar "path=") &&
	printf "\\000" | dd of=pax.tar bs=1 seek=$((o + 9)) conv=notrunc 2>/dev/null &&
	expect_bad "pax" -o out pax.tar &&
	printf "../" | dd of=pax2.tar bs=1 seek=$((o + 5)) conv=notrunc 2>/dev/null &&
	expect_bad "unsafe member name" -o out pax2.tar
'

test_expect_success 'index file names with .., an absolute path or a NUL are refused' '
	for bad in "../model-00001-of-00003.safetensors" "/tmp/model-00001-of-00003.safetensors" \
		"model-00001\\u0000-of-00003.safetensors"; do
		rm -rf bi && cp -r model bi &&
		sed "s|\"model-00001-of-00003.safetensors\"|\"$bad\"|" model/model.safetensors.index.json \
			>bi/model.safetensors.index.json &&
		! cmp -s model/model.safetensors.index.json bi/model.safetensors.index.json || exit 1
		expect_bad "model.safetensors.index.json" -o out bi || exit 1
		tar -C bi -cf bi.tar $(cd bi && ls) || exit 1
		expect_bad "model.safetensors.index.json" -o out bi.tar || exit 1
	done
'

test_expect_success 'a symbolic link planted in OUT.partial is replaced, not written through' '
	rm -rf o o.partial &&
	echo "do not overwrite" >victim &&
	cp victim victim.orig &&
	mkdir o.partial &&
	ln -s ../victim o.partial/model-00001-of-00002.safetensors &&
	ln -s ../victim o.partial/config.json &&
	qgptq -q --method rtn --group-size 32 --resume -o o m &&
	cmp victim victim.orig &&
	test ! -L o/config.json && test ! -L o/model-00001-of-00002.safetensors &&
	qcat --verify o >/dev/null
'

test_expect_success 'OUT.partial that is a symbolic link is refused with --resume' '
	rm -rf o o.partial elsewhere && mkdir elsewhere &&
	ln -s elsewhere o.partial &&
	st=0 && qgptq -q --method rtn --group-size 32 --resume -o o m 2>err || st=$?
	test $st = 2 && expect_grep err "not a directory" &&
	test ! -e o && test -z "$(ls -A elsewhere)"
'

test_expect_success 'without --resume a planted OUT.partial link is removed, not followed' '
	rm -rf o o.partial elsewhere && mkdir elsewhere && echo keep >elsewhere/f &&
	ln -s elsewhere o.partial &&
	qgptq -q --method rtn --group-size 32 -o o m &&
	test -d o && test ! -L o && test "$(cat elsewhere/f)" = keep
'

test_done
