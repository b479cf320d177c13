#!/bin/sh
# check-layers.sh - fail on an #include that reaches a layer its folder may
# not include. Each layer folder (libcommon/*/, kernels/) has a README.md
# whose "May include:" line lists the layers it may use; a header belongs to
# the layer of the folder it is in (kernels/ and everything below it is the
# layer "kernels"). Run from the repository root; extra arguments are
# directories to check instead of the real tree (the test plants a bad include
# in a copy).
set -eu
root=${1:-.}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# header -> layer
: >"$tmp/owners"
for d in "$root"/libcommon/*/ "$root"/kernels/; do
	layer=$(basename "$d")
	[ -f "$d/README.md" ] || { echo "check-layers: $d has no README.md" >&2; exit 1; }
	find "$d" -name '*.h' | while read -r h; do
		printf '%s %s\n' "$(basename "$h")" "$layer"
	done >>"$tmp/owners"
done
dups=$(awk '{print $1}' "$tmp/owners" | sort | uniq -d)
if [ -n "$dups" ]; then
	echo "check-layers: header names used in two layers: $dups" >&2
	exit 1
fi

fail=0
for d in "$root"/libcommon/*/ "$root"/kernels/; do
	layer=$(basename "$d")
	allowed=$(sed -n 's/^May include:[[:space:]]*//p' "$d/README.md" | sed 's/([^)]*)//g')
	files=$(find "$d" -name '*.[ch]' -o -name '*.cu' | sort)
	for f in $files; do
		# "file:line:header" for every quoted include
		grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
			sed 's/^\([0-9]*\):.*"\([^"]*\)".*/\1 \2/' >"$tmp/inc" || true
		while read -r line hdr; do
			base=$(basename "$hdr")
			owner=$(awk -v h="$base" '$1 == h {print $2}' "$tmp/owners")
			[ -n "$owner" ] || continue          # generated or system-like header
			[ "$owner" = "$layer" ] && continue
			ok=0
			for a in $allowed; do [ "$a" = "$owner" ] && ok=1; done
			if [ $ok = 0 ]; then
				echo "${f#$root/}:$line: includes \"$base\" of layer '$owner'; layer '$layer' may include: ${allowed:-nothing}" >&2
				fail=1
			fi
		done <"$tmp/inc"
	done
done
[ $fail = 0 ] || exit 1
n=$(wc -l <"$tmp/owners")
echo "check-layers: ok ($n headers in $(ls -d "$root"/libcommon/*/ | wc -l) layers and kernels)"
