#!/bin/sh
# t0900: every command in the EXAMPLES section of every man page runs.
# Lines starting "$ " inside .Bd -literal blocks under .Sh EXAMPLES are run in
# order by bash -e -o pipefail, in one fresh directory per page, with the
# tools on PATH.
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"

extract() { # page -> commands on stdout
	awk '
		/^\.Sh / { ex = ($2 == "EXAMPLES") }
		ex && /^\.Bd/ { lit = 1; next }
		ex && /^\.Ed/ { lit = 0; next }
		ex && lit && /^\$ / { sub(/^\$ /, ""); print }
	' "$1" | sed 's/\\-/-/g; s/\\e/\\/g; s/\\&//g'
}

for page in "$top"/man/q*.1; do
	name=$(basename "$page" .1)
	tool="$QBIN/$name"
	if [ ! -x "$tool" ]; then
		test_skip "$name: examples of man page" "tool $name not built"
		continue
	fi
	extract "$page" >"$TEST_DIR/$name.cmds"
	if [ ! -s "$TEST_DIR/$name.cmds" ]; then
		test_expect_success "$name: man page has runnable examples" 'false'
		continue
	fi
	test_expect_success "$name: examples of man page run" "
		mkdir -p ex-$name && cd ex-$name && bash -e -x -o pipefail '$TEST_DIR/$name.cmds'
	"
done
test_done
