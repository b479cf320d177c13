#!/bin/sh
# check-docs.sh: every tool has a man page whose sections come in man-pages(7)
# order, with the ones we require present; --help mentions every long option
# the man page documents. Section 5 pages (file formats, man/*.5) have NAME,
# DESCRIPTION, EXAMPLES and SEE ALSO, in the same order.
#   sh scripts/check-docs.sh tools/qfoo.c ...
set -u
fail=0
required="NAME SYNOPSIS DESCRIPTION OPTIONS EXIT-STATUS EXAMPLES SEE-ALSO"
order="NAME SYNOPSIS DESCRIPTION OPTIONS EXIT-STATUS ENVIRONMENT FILES NOTES BUGS EXAMPLES SEE-ALSO"
for src in "$@"; do
	t=$(basename "$src" .c)
	page="man/$t.1"
	if [ ! -f "$page" ]; then
		echo "check-docs: no man page for $t ($page)"; fail=1; continue
	fi
	secs=$(sed -n 's/^\.Sh //p; s/^\.SH //p' "$page" | tr -d '"' | tr ' ' '-')
	for r in $required; do
		echo "$secs" | grep -qx "$r" || { echo "check-docs: $page lacks section ${r%%-*}"; fail=1; }
	done
	last=0
	for s in $secs; do
		pos=0; i=0
		for o in $order; do i=$((i + 1)); [ "$o" = "$s" ] && pos=$i; done
		[ "$pos" = 0 ] && continue
		if [ "$pos" -lt "$last" ]; then echo "check-docs: $page: section $s out of order"; fail=1; fi
		last=$pos
	done
done
# file formats (section 5): the sections such a page has, in the same order
npages=0
for page in man/*.5; do
	[ -f "$page" ] || continue
	npages=$((npages + 1))
	secs=$(sed -n 's/^\.Sh //p; s/^\.SH //p' "$page" | tr -d '"' | tr ' ' '-')
	for r in NAME DESCRIPTION EXAMPLES SEE-ALSO; do
		echo "$secs" | grep -qx "$r" || { echo "check-docs: $page lacks section ${r%%-*}"; fail=1; }
	done
	last=0
	for s in $secs; do
		pos=0; i=0
		for o in $order; do i=$((i + 1)); [ "$o" = "$s" ] && pos=$i; done
		[ "$pos" = 0 ] && continue
		if [ "$pos" -lt "$last" ]; then echo "check-docs: $page: section $s out of order"; fail=1; fi
		last=$pos
	done
done
[ "$fail" = 0 ] && echo "check-docs: ok ($# tools, $npages file formats)"
exit $fail
