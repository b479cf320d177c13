#!/bin/sh
# t0900: every command in the EXAMPLES section of every man page runs
# (section 1, and the file formats of section 5).
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

# section 1 pages, and section 5 pages (file formats) of a tool: qrecipe.5
for page in "$top"/man/q*.1 "$top"/man/q*.5; do
	[ -f "$page" ] || continue
	base=$(basename "$page")
	name=${base%.[15]}
	case $base in *.5) name5=$name.5 ;; *) name5=$name ;; esac
	tool="$QBIN/$name"
	if [ ! -x "$tool" ]; then
		test_skip "$name5: examples of man page" "tool $name not built"
		continue
	fi
	extract "$page" >"$TEST_DIR/$name5.cmds"
	if [ ! -s "$TEST_DIR/$name5.cmds" ]; then
		test_expect_success "$name5: man page has runnable examples" 'false'
		continue
	fi
	test_expect_success "$name5: examples of man page run" "
		mkdir -p ex-$name5 && cd ex-$name5 && bash -e -x -o pipefail '$TEST_DIR/$name5.cmds'
	"
done
test_done
