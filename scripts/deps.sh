#!/bin/sh
# deps.sh: install the Debian packages the toolkit builds against.
#
#   sh scripts/deps.sh ensure    install only if a header or library is missing
#   sh scripts/deps.sh install   install (or upgrade) them all, with the optional ones
#
# Without root it prints the exact apt-get command and exits 2.
set -u

# package:file-that-proves-it-is-installed
PKGS="
libopenblas-dev:/usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h
liblapacke-dev:/usr/include/lapacke.h
libzstd-dev:/usr/include/zstd.h
libyaml-dev:/usr/include/yaml.h
libxxhash-dev:/usr/include/xxhash.h
xxhash:/usr/bin/xxhsum
zstd:/usr/bin/zstd
libjansson-dev:/usr/include/jansson.h
libpcre2-dev:/usr/include/pcre2.h
libutf8proc-dev:/usr/include/utf8proc.h
libcmocka-dev:/usr/include/cmocka.h
make:/usr/bin/make
gcc:/usr/bin/gcc
perl:/usr/bin/prove
"
# optional: installed by `install`, never required by `ensure` (the fuzz
# targets of tests/fuzz need clang and its libFuzzer runtime; without them
# make fuzz and check's fuzz smoke test are skipped with a message)
OPT_PKGS="clang libclang-rt-dev"

all_pkgs() { for p in $PKGS; do printf '%s ' "${p%%:*}"; done; printf '%s' "$OPT_PKGS"; }

missing_pkgs() {
	for p in $PKGS; do
		f=${p#*:}
		[ -e "$f" ] || printf '%s ' "${p%%:*}"
	done
}

install() {
	pkgs=$1
	if [ "$(id -u)" != 0 ]; then
		echo "deps: installing packages needs root; as root, run:" >&2
		echo "  apt-get install -y $pkgs" >&2
		exit 2
	fi
	echo "deps: installing $pkgs" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends $pkgs >/dev/null 2>&1 ||
	{ apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends $pkgs >/dev/null; } || {
		echo "deps: apt-get failed; run: apt-get update && apt-get install -y $pkgs" >&2
		exit 2
	}
}

case "${1:-ensure}" in
ensure)
	m=$(missing_pkgs)
	[ -z "$m" ] || install "$m"
	m=$(missing_pkgs)
	if [ -n "$m" ]; then
		echo "deps: still missing after install: $m" >&2
		exit 2
	fi
	;;
install) install "$(all_pkgs)" ;;
*) echo "usage: deps.sh ensure|install" >&2; exit 2 ;;
esac
exit 0
