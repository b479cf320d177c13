# lib.sh - a small TAP test library for the CLI tests (after git's t/test-lib.sh).
#
#   . "$(dirname "$0")/lib.sh"
#   test_expect_success 'title' 'commands'      commands must exit 0
#   test_expect_code 2 'title' 'commands'       commands must exit with status 2
#   test_skip 'title' 'reason'                  reported as skipped, not passed
#   test_done                                   plan line, exit status
#
# Each test body runs in a subshell with `set -e` inside $TEST_DIR (a fresh
# temporary directory shared by the tests of one script). Its output is shown
# as TAP comments when it fails. Tools are found through $QBIN.
set -u
: "${QBIN:?QBIN must name the directory of the built tools (run through make check)}"
PATH="$QBIN:$PATH"
export PATH
LC_ALL=C
export LC_ALL
TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/qtest.XXXXXX")
trap 'rm -rf "$TEST_DIR"' EXIT
cd "$TEST_DIR" || exit 1
test_count=0
test_failed=0

_test_report() { # status title log
	test_count=$((test_count + 1))
	if [ "$1" = 0 ]; then
		echo "ok $test_count - $2"
	else
		echo "not ok $test_count - $2"
		sed 's/^/#   /' "$3"
		test_failed=$((test_failed + 1))
	fi
}

test_expect_success() {
	log="$TEST_DIR/.log.$((test_count + 1))"
	(set -e; eval "$2") >"$log" 2>&1
	st=$?
	_test_report "$st" "$1" "$log"
}

test_expect_code() { # code title body
	log="$TEST_DIR/.log.$((test_count + 1))"
	(eval "$3") >"$log" 2>&1
	st=$?
	if [ "$st" = "$1" ]; then
		_test_report 0 "$2" "$log"
	else
		echo "exit status $st, expected $1" >>"$log"
		_test_report 1 "$2" "$log"
	fi
}

test_skip() {
	test_count=$((test_count + 1))
	echo "ok $test_count - $1 # SKIP $2"
}

test_done() {
	echo "1..$test_count"
	[ "$test_failed" = 0 ]
	exit $?
}

# Helpers for bodies.
# fails unless file $1 contains the fixed string $2
expect_grep() { grep -F -q -- "$2" "$1" || { echo "'$2' not found in $1:"; cat "$1"; return 1; }; }
# fails unless the two files are byte-identical
expect_same() { cmp "$1" "$2" || { echo "$1 and $2 differ"; return 1; }; }
# every file of directory $1 equals the one of the same name in $2, but the
# manifests, which record each run's own command line
same_dirs() {
	for f in "$1"/*; do
		[ "${f##*/}" = quant_manifest.json ] && continue
		cmp "$f" "$2/${f#$1/}" || { echo "$f differs"; return 1; }
	done
	test "$(ls "$1" | wc -l)" = "$(ls "$2" | wc -l)" || { echo "file counts differ"; return 1; }
}
# exactly one line of stderr, naming the tool, and no crash or sanitizer report
expect_one_message() { # prog stderr-file
	n=$(wc -l <"$2")
	[ "$n" = 1 ] || { echo "expected one line on stderr, got $n:"; cat "$2"; return 1; }
	grep -q "^$1: " "$2" || { echo "message does not start with '$1: ':"; cat "$2"; return 1; }
}
