#!/bin/sh
# t0030: the lint of the shell tests (scripts/lint-tests.sh): the tests pass
# it as they are; a loop whose failures an && list or a pipeline would lose
# fails it, naming file and line; the ways to keep them pass.
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"

# ---- fixtures: a file of bad loops, one of good ones ----

cat >bad.sh <<'EOF'
#!/bin/sh
test_expect_success 'the last file only' '
	qsynth -o m &&
	for f in a/*; do cmp "$f" "b/${f#a/}"; done &&
	test -e b/x
'
test_expect_success 'one line, redirected' '
	for k in 0 1 2; do qcalib --decode $k; done >dec && test -s dec
'
test_expect_success 'a pipeline' '
	ls a | while read -r f; do cmp "a/$f" "b/$f" && echo "$f"; done | sort >same
'
test_expect_code 2 'no set -e in a test_expect_code body' '
	qgptq -o z m 2>err ||
	for f in err out; do test -s $f; done
'
test_expect_success 'a list on the next line' '
	qfp8 -o f m &&
	for f in f/*.safetensors \
	         f/config.json; do
		cmp "$f" "g/${f#f/}"
	done && qcat --verify f
'
helper() {
	mkdir -p d && for f in x y; do touch d/$f; done
}
EOF

cat >good.sh <<'EOF'
#!/bin/sh
# for f in a/*; do cmp "$f" b; done && comments are not code
top=$(pwd)
for t in qsynth qcat; do
	test_expect_success "$t runs" "$t --help >out"
done
test_expect_success 'every failure exits' '
	qsynth -o m &&
	for f in a/*; do cmp "$f" "b/${f#a/}" || exit 1; done &&
	for k in 0 1; do
		qcalib --decode $k >d$k && test -s d$k || { echo "row $k"; exit 1; }
	done >log &&
	ls a | while read -r f; do cmp "a/$f" "b/$f" ||
		return 1
	done &&
	test -e b/x
'
test_expect_success 'the last part of a list, under set -e' '
	qsynth -o m &&
	for f in a/*; do cmp "$f" "b/${f#a/}"; done
'
test_expect_success 'a loop of its own, under set -e' '
	for f in a/*; do cmp "$f" "b/${f#a/}"; done
	test -e b/x
'
test_expect_success 'words in strings are not loops' '
	expect_grep err "layers 0 to 1 are done" &&
	expect_grep err "while the for loop runs; done" && test -e x
'
nested() {
	for d in x y; do
		for f in a b; do
			cmp $d/$f z/$f || exit 1
		done
	done && echo ok
}
EOF

test_expect_success 'the shell tests pass the lint' "
	(cd '$top' && sh scripts/lint-tests.sh) >out 2>err &&
	test ! -s err && expect_grep out 'lint-tests: ok'
"

test_expect_success 'each bad loop is named by file and line, and nothing else' '
	st=0 && sh "$top/scripts/lint-tests.sh" bad.sh >out 2>err || st=$? &&
	test $st = 1 && test ! -s out &&
	expect_grep err "bad.sh:4: a loop in an && list or pipeline" &&
	expect_grep err "bad.sh:8: " && expect_grep err "bad.sh:11: " &&
	expect_grep err "bad.sh:15: " && expect_grep err "bad.sh:19: " &&
	expect_grep err "bad.sh:25: " &&
	test "$(wc -l <err)" = 6
'

test_expect_success 'explicit failures, set -e and strings are not flagged' '
	sh "$top/scripts/lint-tests.sh" good.sh >out 2>err &&
	test ! -s err && expect_grep out "lint-tests: ok (1 files)"
'

test_expect_success 'the fixed line passes, and a planted one in a real test fails' '
	sed "4s/; done/ || exit 1; done/" bad.sh >fixed.sh &&
	st=0 && sh "$top/scripts/lint-tests.sh" fixed.sh 2>err || st=$? &&
	test $st = 1 && ! grep -q "fixed.sh:4:" err && expect_grep err "fixed.sh:8:" &&
	sed "s/cmp \"\$f\" \"res\/\${f#w4\/}\" || exit 1/cmp \"\$f\" \"res\/\${f#w4\/}\"/" \
		"$top/tests/cli/t0500-qgptq.sh" >t0500.sh &&
	! cmp -s "$top/tests/cli/t0500-qgptq.sh" t0500.sh &&
	st=0 && sh "$top/scripts/lint-tests.sh" t0500.sh 2>err || st=$? &&
	test $st = 1 && expect_grep err "t0500.sh:" && test "$(wc -l <err)" = 1
'
test_done
