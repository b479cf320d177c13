#!/bin/sh
# run-unit.sh: run every cmocka unit-test binary given; fail if any fails.
# Tests that cmocka reports as skipped (e.g. conformance tests whose shared
# data is absent) are counted and named, never reported as passed.
fail=0
for t in "$@"; do
	if "$t" >"$t.log" 2>&1; then
		skipped=$(grep -c '^\[  SKIPPED \]' "$t.log")
		if [ "$skipped" -gt 0 ]; then
			printf 'ok    %s (%s skipped: %s)\n' "${t##*/}" "$skipped" \
				"$(sed -n 's/^\[  SKIPPED \] //p' "$t.log" | tr '\n' ' ')"
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
