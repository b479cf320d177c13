#!/bin/sh
# bench_fp8.sh: qfp8 (data-free, dynamic activations) against `cat` of its
# input in the same run, and qfp8's peak resident memory.
#
#   sh tests/bench/bench_fp8.sh [-k] [-l LAYERS] [-d DIR]
#
# Makes a Llama-3.1-8B-shaped BF16 checkpoint with qsynth (all 32 layers by
# default: about 16 GB, so the disk needs some 25 GB free) in DIR (default
# $TMPDIR/qbench-fp8), then times, alternately and best of 2 each:
#   cat   every file of the checkpoint to /dev/null
#   qfp8  the checkpoint to DIR/out (written, renamed into place, removed)
#   copy  every file of the checkpoint into one file in DIR (the same bytes
#         read and about twice the bytes qfp8 writes: a write-bound floor)
# and prints the wall times, the ratios and qfp8's peak RSS (GNU time's %M;
# file pages of the mapped input that are resident count too). -k keeps the
# synthetic checkpoint for the next run. QBIN names the tools (default
# build/bin).
set -eu
layers=32
dir=${TMPDIR:-/tmp}/qbench-fp8
keep=0
while getopts kl:d: o; do
	case $o in
	k) keep=1 ;;
	l) layers=$OPTARG ;;
	d) dir=$OPTARG ;;
	*) echo "usage: bench_fp8.sh [-k] [-l LAYERS] [-d DIR]" >&2; exit 2 ;;
	esac
done
top=$(cd "$(dirname "$0")/../.." && pwd)
QBIN=${QBIN:-$top/build/bin}
[ -x /usr/bin/time ] || { echo "bench_fp8: needs GNU time (apt-get install time)" >&2; exit 2; }
mkdir -p "$dir"
model=$dir/model-8b-$layers
if [ ! -f "$model/config.json" ]; then
	echo "bench_fp8: making $model ($layers layers of Llama-3.1-8B shape)"
	"$QBIN/qsynth" -q --preset llama-3.1-8b --layers "$layers" -o "$model"
fi
bytes=$(cat "$model"/* | wc -c)
now() { date +%s.%N; }
best_cat=999999 best_q=999999 best_cp=999999 rss=0
for rep in 1 2; do
	t0=$(now); cat "$model"/* >/dev/null; t1=$(now)
	c=$(echo "$t1 - $t0" | bc -l)
	t0=$(now); cat "$model"/* >"$dir/copy"; sync "$dir/copy"; t1=$(now)
	rm -f "$dir/copy"
	p=$(echo "$t1 - $t0" | bc -l)
	best_cp=$(echo "if ($p < $best_cp) $p else $best_cp" | bc -l)
	rm -rf "$dir/out"
	t0=$(now)
	/usr/bin/time -f '%e %M' -o "$dir/time" "$QBIN/qfp8" -q -o "$dir/out" "$model"
	sync "$dir/out"/*  # qfp8's output on disk, like the copy's
	t1=$(now)
	q=$(echo "$t1 - $t0" | bc -l)
	read -r _ m <"$dir/time"
	rm -rf "$dir/out"
	best_cat=$(echo "if ($c < $best_cat) $c else $best_cat" | bc -l)
	best_q=$(echo "if ($q < $best_q) $q else $best_q" | bc -l)
	[ "$m" -gt "$rss" ] && rss=$m
done
[ "$keep" = 1 ] || rm -rf "$model"
printf 'checkpoint: Llama-3.1-8B shape, %s layers, %.2f GB (BF16)\n' "$layers" "$(echo "$bytes / 1000000000" | bc -l)"
printf 'cat:        %.2f s  (%.2f GB/s)\n' "$best_cat" "$(echo "$bytes / $best_cat / 1000000000" | bc -l)"
printf 'qfp8:       %.2f s  (%.2f GB/s read, writes about half as much)\n' "$best_q" "$(echo "$bytes / $best_q / 1000000000" | bc -l)"
printf 'copy:       %.2f s  (cat to a file, synced)\n' "$best_cp"
printf 'ratio:      qfp8 / cat = %.2f, qfp8 / copy = %.2f\n' "$(echo "$best_q / $best_cat" | bc -l)" \
	"$(echo "$best_q / $best_cp" | bc -l)"
printf 'peak RSS:   %.2f GB (qfp8)\n' "$(echo "$rss * 1024 / 1000000000" | bc -l)"
