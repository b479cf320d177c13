#!/bin/sh
# run-unit.sh: run every cmocka unit-test binary given; fail if any fails.
# Tests that cmocka reports as skipped (e.g. conformance tests whose shared
# data is absent) are counted and named, never reported as passed.
fail=0
for t in "$@"; do
	if "$t" >"$t.log" 2>&1; then
		names=$(sed -n 's/^\[  SKIPPED \] \([A-Za-z_][A-Za-z0-9_]*\)$/\1/p' "$t.log" | sort -u)
		skipped=$(printf '%s' "$names" | grep -c .)
		if [ "$skipped" -gt 0 ]; then
			printf 'ok    %s (%s skipped: %s)\n' "${t##*/}" "$skipped" "$(echo $names)"
		else
			printf 'ok    %s\n' "${t##*/}"
		fi
	else
		printf 'FAIL  %s (log: %s)\n' "${t##*/}" "$t.log"
		cat "$t.log"
		fail=1
	fi
done
exit $fail
