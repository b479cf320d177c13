#!/bin/sh
# run-unit.sh: run every cmocka unit-test binary given; fail if any fails.
fail=0
for t in "$@"; do
	if "$t" >"$t.log" 2>&1; then
		printf 'ok    %s\n' "${t##*/}"
	else
		printf 'FAIL  %s (log: %s)\n' "${t##*/}" "$t.log"
		cat "$t.log"
		fail=1
	fi
done
exit $fail
