#!/bin/sh
# golden.sh - the golden cases: small deterministic runs of every tool that
# writes a checkpoint or a token set, each with fixed options (--threads 2
# where the tool has it), whose every output byte is pinned by a SHA-256 in
# tests/cli/golden.txt and checked by tests/cli/t0040-golden.sh.
#
#   QBIN=DIR sh scripts/golden.sh            print "CASE PATH SHA256" for every
#                                            file each case writes (PATH "-" for
#                                            a stream), paths sorted within a case
#   QBIN=DIR sh scripts/golden.sh -w FILE    write FILE: its header, then the same
#
# Regenerate the golden file, from the tools of a build, with
#
#   make && QBIN=build/bin sh scripts/golden.sh -w tests/cli/golden.txt
#
# A case whose command fails prints "CASE FAILED STATUS", its log goes to
# stderr, and the exit status is 1. The cases run in a temporary directory,
# always under the same names, since argv is part of each manifest.
set -u
: "${QBIN:?QBIN must name the directory of the built tools}"
QBIN=$(cd "$QBIN" && pwd) || exit 2
out=
case ${1:-} in
-w) out=${2:?usage: golden.sh [-w FILE]} ;;
'') ;;
*) echo "usage: QBIN=DIR sh scripts/golden.sh [-w FILE]" >&2; exit 2 ;;
esac
PATH="$QBIN:$PATH"
LC_ALL=C
export PATH LC_ALL
for t in qsynth qcat qcalib qgptq qfp8 qpack; do
	[ -x "$QBIN/$t" ] || { echo "golden.sh: $QBIN/$t not found" >&2; exit 2; }
done
case $out in ''|/*) ;; *) out=$(pwd)/$out ;; esac
work=$(mktemp -d "${TMPDIR:-/tmp}/golden.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 2
failed=0
list=$work/list
: >"$list"

# run CASE CMD...: run a command of case CASE, its output to the log
run() {
	c=$1
	shift
	st=0
	"$@" >log 2>&1 || st=$?
	[ "$st" = 0 ] && return 0
	echo "$c FAILED $st" >>"$list"
	{ echo "golden.sh: $c: '$*' exited with status $st:"; cat log; } >&2
	failed=1
	return 1
}
# stream CASE FILE CMD...: run a command writing a stream to FILE
stream() {
	c=$1 f=$2
	shift 2
	st=0
	"$@" >"$f" 2>log || st=$?
	[ "$st" = 0 ] && return 0
	echo "$c FAILED $st" >>"$list"
	{ echo "golden.sh: $c: '$*' exited with status $st:"; cat log; } >&2
	failed=1
	return 1
}
# hash CASE FILE|DIR: a line per file, paths relative to DIR, sorted
hash() {
	if [ -d "$2" ]; then
		(cd "$2" && find . -type f | sed 's|^\./||' | sort | while read -r f; do
			echo "$1 $f $(sha256sum <"$f" | cut -d' ' -f1)"
		done) >>"$list"
	else
		echo "$1 - $(sha256sum <"$2" | cut -d' ' -f1)" >>"$list"
	fi
}
# put_bf16 FILE TENSOR INDEX BYTES: overwrite element INDEX of a BF16 tensor
# in a safetensors file with two bytes given as printf octal escapes
put_bf16() {
	n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
	o=$(head -c $((8 + n)) "$1" | tail -c "$n" | grep -o "\"$2\":{[^}]*}" |
		sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
	printf "$4" | dd of="$1" bs=1 seek=$((8 + n + o + 2 * $3)) conv=notrunc 2>/dev/null
}

# ---- models and token sets ----
# three layers of the tiny preset (hidden 128), tied; two untied
run qsynth-dir qsynth -q --threads 2 --preset tiny --layers 3 --seed 7 -o m && hash qsynth-dir m
run qsynth-untied qsynth -q --threads 2 --preset tiny --layers 2 --no-tie --seed 8 -o mu &&
	hash qsynth-untied mu
stream qsynth-stream m.tar qsynth -q --threads 2 --preset tiny --layers 3 --seed 7 -o - &&
	hash qsynth-stream m.tar
stream qcat-to-stream mc.tar qcat -q -o - m && hash qcat-to-stream mc.tar
run qcat-to-dir qcat -q -o mc m.tar && hash qcat-to-dir mc
run qcalib-random qcalib -q -m m --random -n 4 -L 64 --seed 1 -o c.st && hash qcalib-random c.st
# text: forty paragraphs of words, made here
awk 'BEGIN {
	n = split("the of model layer weight scale group token quantized error calibration " \
	          "matrix hessian channel activation round nearest order", w, " ")
	for (p = 0; p < 40; p++) {
		for (i = 0; i < 12 + p % 9; i++)
			printf "%s%s", i ? " " : "", w[1 + (p * 7 + i * 13 + i * i) % n]
		printf ".\n\n"
	}
}' >text.txt
run qcalib-text qcalib -q -m m -n 4 -L 64 --seed 2 -o t.st text.txt && hash qcalib-text t.st

# ---- qgptq ----
gptq() { # CASE OPTIONS...: qgptq on m into directory CASE
	c=$1
	shift
	run "$c" qgptq -q --threads 2 "$@" -o "$c" m && hash "$c" "$c"
}
gptq qgptq-w4a16 --calib c.st
gptq qgptq-w4a16-asym-g32 --asym --group-size 32 --calib c.st
gptq qgptq-w8a16 --scheme w8a16 --calib c.st
gptq qgptq-w8a8 --scheme w8a8 --calib c.st
gptq qgptq-rtn --method rtn
gptq qgptq-rtn-calib --method rtn --calib c.st
gptq qgptq-actorder-none --actorder none --calib c.st
gptq qgptq-clip-minmax --clip minmax --calib c.st
gptq qgptq-clip-mse-h --clip mse-h --calib c.st
gptq qgptq-ignore --ignore 're:.*down_proj' --calib c.st
gptq qgptq-g32-f16 --group-size 32 --scale-dtype f16 --calib c.st
stream qgptq-stream s.tar qgptq -q --threads 2 --calib c.st -o - m && hash qgptq-stream s.tar
# --resume: a run that fails in the last layer (a NaN in its weights) keeps
# the layers before; the same run on the mended model finishes it
mkdir resume && cp -r m resume/m && cp c.st resume/ && cd resume &&
	put_bf16 m/model-00003-of-00003.safetensors model.layers.2.mlp.up_proj.weight 1 "\300\177" &&
	if qgptq -q --threads 2 --resume --calib c.st -o out m >log 2>&1 ||
		! [ -f out.partial/model-00002-of-00003.safetensors ]; then
		echo "qgptq-resume FAILED first-run" >>"$list"
		echo "golden.sh: qgptq-resume: the first run did not fail in layer 2" >&2
		failed=1
	else
		cp ../m/model-00003-of-00003.safetensors m/ &&
			run qgptq-resume qgptq -q --threads 2 --resume --calib c.st -o out m &&
			hash qgptq-resume out
	fi
cd "$work" || exit 2

# ---- qfp8 ----
fp8() { # CASE OPTIONS...: qfp8 on m into directory CASE
	c=$1
	shift
	run "$c" qfp8 -q --threads 2 "$@" -o "$c" m && hash "$c" "$c"
}
fp8 qfp8-channel
fp8 qfp8-per-tensor --per-tensor
fp8 qfp8-shared-scale --shared-scale
fp8 qfp8-static-kv --calib c.st --act static --kv-cache
stream qfp8-untied-stream fu.tar qfp8 -q --threads 2 --calib c.st -o - mu &&
	hash qfp8-untied-stream fu.tar

# ---- qpack ----
pack() { # CASE FORMAT INPUT
	run "$1" qpack -q --threads 2 -f "$2" -o "$1" "$3" && hash "$1" "$1"
}
pack qpack-ct-w4a16 compressed-tensors qgptq-w4a16
pack qpack-ct-w8a8 compressed-tensors qgptq-w8a8
pack qpack-ct-fp8 compressed-tensors qfp8-channel
pack qpack-gptq gptq qgptq-w4a16
pack qpack-gptq-asym gptq qgptq-w4a16-asym-g32
pack qpack-awq awq qgptq-w4a16
run qpack-gguf qpack -q -f gguf -o g.gguf qgptq-g32-f16 && hash qpack-gguf g.gguf
# GPTQ on llama.cpp's Q4_K_M grid (inputs of 256 and 768: whole super-blocks)
run qsynth-k256 qsynth -q --threads 2 --hidden 256 --intermediate 768 --heads 4 --kv-heads 2 \
	--layers 2 --vocab 512 --seed 9 -o mk &&
	run qgptq-gguf-q4km qgptq -q --threads 2 --scheme gguf-q4_k_m --calib c.st \
		-o qgptq-gguf-q4km mk && hash qgptq-gguf-q4km qgptq-gguf-q4km &&
	run qpack-gguf-q4km qpack -q -f gguf -o k.gguf qgptq-gguf-q4km &&
	hash qpack-gguf-q4km k.gguf
stream qpack-stream p.tar qpack -q --threads 2 -f awq -o - qgptq-w4a16-asym-g32 &&
	hash qpack-stream p.tar

if [ -n "$out" ]; then
	from=$(git -C "$QBIN/../.." describe --always --dirty 2>/dev/null || echo unknown)
	{
		echo "# golden.txt - the SHA-256 of every file each golden case of scripts/golden.sh"
		echo "# writes, as CASE PATH SHA256 (PATH - for a stream), checked byte for byte by"
		echo "# tests/cli/t0040-golden.sh. Written from the tools of commit $from."
		echo "# Regenerate: make && QBIN=build/bin sh scripts/golden.sh -w tests/cli/golden.txt"
		echo "# A change here means the tools write other bytes: the commit that makes it"
		echo "# must say which cases changed and why."
		cat "$list"
	} >"$out.tmp" && mv "$out.tmp" "$out" || exit 2
else
	cat "$list"
fi
exit $failed
