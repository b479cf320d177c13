#!/bin/sh
# cuda-deps.sh - the Debian build dependencies for a GPU machine that has the
# CUDA toolkit and nothing else, and no network (doc/cuda.md, "Device checks").
#
#   sh scripts/cuda-deps.sh fetch [DIR]    on a Debian 12 machine with apt (here):
#                                          download the .deb files into DIR
#                                          (default build-cuda/debs), to be carried
#   sh scripts/cuda-deps.sh flags [DIR]    on the GPU machine: print the make
#                                          variables that build against the system's
#                                          libraries when they are installed, or else
#                                          against the carried packages, unpacked
#                                          (once) into DIR/../sysroot
#
# Nothing is installed system-wide: the packages are unpacked into the build
# folder, and the binaries find their libraries there through an rpath.
set -eu

# the libraries of scripts/deps.sh with their runtime packages (OpenBLAS's
# folder also holds the liblapack.so.3 that liblapacke needs)
PKGS="libopenblas0-pthread libopenblas-pthread-dev liblapacke liblapacke-dev libtmglib3
libgfortran5 libquadmath0 libzstd1 libzstd-dev libxxhash0 libxxhash-dev libjansson4
libjansson-dev libpcre2-8-0 libpcre2-dev libyaml-0-2 libyaml-dev libutf8proc2 libutf8proc-dev"

# files that show the system has what the build needs
have_system() {
	for f in /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h /usr/include/lapacke.h \
	         /usr/include/zstd.h /usr/include/xxhash.h /usr/include/jansson.h \
	         /usr/include/pcre2.h /usr/include/yaml.h /usr/include/utf8proc.h; do
		[ -e "$f" ] || return 1
	done
	return 0
}

cmd=${1:-}
dir=${2:-build-cuda/debs}
case "$cmd" in
fetch)
	mkdir -p "$dir"
	# shellcheck disable=SC2086
	(cd "$dir" && apt-get download $PKGS) >&2
	du -sh "$dir" >&2
	;;
flags)
	# QK_CUDA_DEPS=carried: the carried packages even where the system has
	# the libraries (to test this path)
	if [ "${QK_CUDA_DEPS:-}" != carried ] && have_system; then
		echo "DEPS=system"
		exit 0
	fi
	ls "$dir"/*.deb >/dev/null 2>&1 || {
		echo "cuda-deps: the build libraries are not installed and no packages were carried in" \
		     "$dir: on a Debian 12 machine run 'sh scripts/cuda-deps.sh fetch' and carry" \
		     "build-cuda/debs" >&2
		exit 2
	}
	root=$(cd "$dir/.." && pwd)/sysroot
	if [ ! -f "$root/.done" ]; then
		rm -rf "$root"
		mkdir -p "$root"
		for d in "$dir"/*.deb; do
			if command -v dpkg-deb >/dev/null 2>&1; then
				dpkg-deb -x "$d" "$root"
			else
				t=$(mktemp -d)
				(cd "$t" && ar x "$(cd "$(dirname "$d")" && pwd)/$(basename "$d")" &&
					tar -C "$root" -xf data.tar.*)
				rm -rf "$t"
			fi
		done
		touch "$root/.done"
	fi
	lib=$root/usr/lib/x86_64-linux-gnu
	inc=$root/usr/include
	echo "DEPS=$root"
	echo "BLAS_CFLAGS=-I$inc/x86_64-linux-gnu/openblas-pthread -I$inc -I$inc/x86_64-linux-gnu"
	# DT_RPATH (not RUNPATH), which the loader also applies to the libraries'
	# own dependencies (liblapacke needs OpenBLAS's liblapack.so.3)
	echo "BLAS_LIBS=-Wl,--disable-new-dtags -L$lib/openblas-pthread -L$lib -Wl,-rpath,$lib/openblas-pthread -Wl,-rpath,$lib -llapacke -lopenblas"
	echo "LD_LIBRARY_PATH=$lib/openblas-pthread:$lib"
	;;
*)
	echo "usage: cuda-deps.sh fetch|flags [DIR]" >&2
	exit 2
	;;
esac
