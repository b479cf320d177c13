#!/bin/sh
# t0010: what every tool shares (doc/design.md 1.5, 6.3): --help on stdout with status 0,
# --version, and bad usage as "tool: message" plus the usage on stderr with
# status 2 and nothing on stdout.
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
for src in "$top"/tools/q*.c; do
	t=$(basename "$src" .c)
	test_expect_success "$t --help and --version" "
		$t --help >out 2>err && test ! -s err && expect_grep out 'usage: $t' &&
		$t --version >out 2>err && test ! -s err && expect_grep out '$t (qtoolkit) '
	"
	test_expect_success "$t: an unknown option is a usage error" "
		st=0; $t --no-such-option >out 2>err || st=\$?
		test \$st = 2 && test ! -s out &&
		head -n 1 err | grep -q \"^$t: unknown option '--no-such-option'\" &&
		expect_grep err 'usage: $t'
	"
	test_expect_success "$t: the man page documents every long option of --help" "
		$t --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u >opts &&
		while read -r o; do
			grep -q -- \"Fl \${o#-}\" '$top/man/$t.1' || grep -q -- \"\\\\\\\\-\\\\\\\\\${o#--}\" '$top/man/$t.1' ||
			{ echo \"$t.1 lacks \$o\"; exit 1; }
		done <opts
	"
done
test_done
