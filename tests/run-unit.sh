#!/bin/sh
# run-unit.sh: run every cmocka unit-test binary given; fail if any fails.
# Tests that cmocka reports as skipped (e.g. conformance tests whose shared
# data is absent) are counted and named, never reported as passed.
# With QK_DEBUG_MEMORY=1 in the environment (kernels.h: device memory faults
# when the host touches it outside a kernel call) each binary's log is
# $t.kmem.log and its line says so, so that the plain run's log is kept.
fail=0
tag= sfx=
if [ "${QK_DEBUG_MEMORY:-}" = 1 ]; then
	tag=' [QK_DEBUG_MEMORY=1]'
	sfx=.kmem
fi
for t in "$@"; do
	log=$t$sfx.log
	if "$t" >"$log" 2>&1; then
		names=$(sed -n 's/^\[  SKIPPED \] \([A-Za-z_][A-Za-z0-9_]*\)$/\1/p' "$log" | sort -u)
		skipped=$(printf '%s' "$names" | grep -c .)
		if [ "$skipped" -gt 0 ]; then
			printf 'ok    %s%s (%s skipped: %s)\n' "${t##*/}" "$tag" "$skipped" "$(echo $names)"
		else
			printf 'ok    %s%s\n' "${t##*/}" "$tag"
		fi
	else
		printf 'FAIL  %s%s (log: %s)\n' "${t##*/}" "$tag" "$log"
		cat "$log"
		fail=1
	fi
done
exit $fail
