#!/bin/sh
# check-layers.sh - fail on an #include that reaches a layer its folder may
# not include. Each layer folder (libcommon/*/, kernels/) has a README.md
# whose "May include:" line lists the layers it may use; a header belongs to
# the layer of the folder it is in (kernels/ and everything below it is the
# layer "kernels"). Run from the repository root; an argument names another
# tree to check instead (the test plants a bad include in a copy).
set -eu
root=${1:-.}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

: >"$tmp/owners"
: >"$tmp/allowed"
: >"$tmp/includes"
for d in "$root"/libcommon/*/ "$root"/kernels/; do
	layer=$(basename "$d")
	[ -f "$d/README.md" ] || { echo "check-layers: ${d#$root/} has no README.md" >&2; exit 1; }
	printf '%s %s\n' "$layer" \
		"$(sed -n 's/^May include:[[:space:]]*//p' "$d/README.md" | sed 's/([^)]*)//g')" \
		>>"$tmp/allowed"
	find "$d" -name '*.h' -exec basename {} \; | sed "s/\$/ $layer/" >>"$tmp/owners"
	# "layer file:line:#include ..." for every quoted include
	find "$d" \( -name '*.[ch]' -o -name '*.cu' -o -name '*.cuh' \) -exec \
		grep -Hn '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' {} + 2>/dev/null |
		sed "s|^|$layer |" >>"$tmp/includes" || true
done
dups=$(awk '{print $1}' "$tmp/owners" | sort | uniq -d)
if [ -n "$dups" ]; then
	echo "check-layers: header names used in two layers: $dups" >&2
	exit 1
fi
awk -v root="$root/" '
	FILENAME == ARGV[1] { owner[$1] = $2; next }
	FILENAME == ARGV[2] { for (i = 2; i <= NF; i++) ok[$1 " " $i] = 1; list[$1] = $0; next }
	{
		layer = $1
		split($2, loc, ":")
		file = loc[1]; sub("^" root, "", file)
		hdr = $0; sub(/^[^"]*"/, "", hdr); sub(/".*$/, "", hdr); sub(/.*\//, "", hdr)
		o = owner[hdr]
		if (o == "" || o == layer || ok[layer " " o]) next
		allowed = list[layer]; sub(/^[^ ]* ?/, "", allowed)
		printf "%s:%s: includes \"%s\" of layer '\''%s'\''; layer '\''%s'\'' may include: %s\n", \
		       file, loc[2], hdr, o, layer, allowed == "" ? "nothing" : allowed > "/dev/stderr"
		bad = 1
	}
	END { exit bad }
' "$tmp/owners" "$tmp/allowed" "$tmp/includes"
n=$(wc -l <"$tmp/owners")
echo "check-layers: ok ($n headers in $(ls -d "$root"/libcommon/*/ | wc -l) layers and kernels)"
