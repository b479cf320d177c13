#!/bin/sh
# run.sh - build helpers and runs of the libFuzzer targets (README).
#
#   run.sh probe                  exit 0 when clang can link a libFuzzer target
#   run.sh seeds DIR              write each target's seed corpus under DIR/<target>
#                                 (made with the tools in $QBIN, as the CLI tests do)
#   run.sh run SECONDS BINDIR     run every target SECONDS on its corpus
#   run.sh check SECONDS BINDIR   replay every regression input, then run each
#                                 target SECONDS (make check's smoke test)
#
# Corpora: generated seeds and what the fuzzer finds go to build-fuzz/corpus/
# (not kept); inputs that once found a bug are kept in tests/fuzz/regress/<target>/
# and replayed first. Runs are niced: the machine may be shared.
set -u
here=$(cd "$(dirname "$0")" && pwd)
FUZZ_CC=${FUZZ_CC:-clang}
CORPUS=${FUZZ_CORPUS:-build-fuzz/corpus}
SEP='
--qc-fuzz--
'

probe() {
	command -v "$FUZZ_CC" >/dev/null 2>&1 || return 1
	d=$(mktemp -d) || return 1
	printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' >"$d/p.c"
	"$FUZZ_CC" -fsanitize=fuzzer,address,undefined -o "$d/p" "$d/p.c" >/dev/null 2>&1
	st=$?
	rm -rf "$d"
	return $st
}

# two documents in one input, split by the targets at the separator line
join2() { cat "$1"; printf '%s' "$SEP"; cat "$2"; }

seeds() {
	out=$1
	: "${QBIN:?QBIN must name the built tools}"
	w=$(mktemp -d) || exit 1
	trap 'rm -rf "$w"' EXIT
	(
	set -e
	cd "$w"
	"$QBIN/qsynth" -q --layers 1 --hidden 32 --intermediate 64 --heads 2 --kv-heads 2 \
		--vocab 260 --tie -o m
	"$QBIN/qgptq" -q --method rtn --group-size 32 -o g m
	"$QBIN/qgptq" -q --method rtn --scheme w8a8 -o g8 m
	"$QBIN/qfp8" -q -o f8 m
	for f in gptq awq compressed-tensors; do "$QBIN/qpack" -q -f $f -o p-$f g; done
	"$QBIN/qpack" -q -f gptq --max-shard-size 4KB -o ps g
	"$QBIN/qcalib" -q -m m --random -n 2 -L 8 -o t.st
	"$QBIN/qcat" -q -o - m >m.tar
	"$QBIN/qcat" -q -o - ps >ps.tar
	zstd -q -3 <m.tar >m.tar.zst
	) || { echo "fuzz seeds: making the fixtures failed" >&2; exit 1; }
	for t in st config index tar tokset tok manifest ctq pack recipe; do mkdir -p "$out/fuzz_$t"; done
	cp "$w/m/model.safetensors" "$out/fuzz_st/model"
	cp "$w/g/model.safetensors" "$out/fuzz_st/gptq"
	cp "$w/t.st" "$out/fuzz_st/tokens"
	for d in m g g8 f8 p-gptq p-awq p-compressed-tensors; do
		cp "$w/$d/config.json" "$out/fuzz_config/$d"
		cp "$w/$d/quant_manifest.json" "$out/fuzz_manifest/$d"
	done
	cp "$w/ps/model.safetensors.index.json" "$out/fuzz_index/packed"
	printf '{"metadata": {"total_size": 8}, "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors", "model.norm.weight": "model-00002-of-00002.safetensors"}}' \
		>"$out/fuzz_index/fixed"
	cp "$w/m.tar" "$out/fuzz_tar/model"
	cp "$w/ps.tar" "$out/fuzz_tar/sharded"
	cp "$w/m.tar.zst" "$out/fuzz_tar/zstd"
	cp "$w/t.st" "$out/fuzz_tokset/random"
	{ join2 "$w/m/tokenizer.json" "$w/m/tokenizer_config.json"; printf '%s' "$SEP"
	  printf 'Hello, world! <|begin_of_text|> caf\303\251 1234\n\t  x'; } >"$out/fuzz_tok/synth"
	for d in g g8 f8 p-compressed-tensors; do
		join2 "$w/$d/config.json" "$w/$d/model.safetensors" >"$out/fuzz_ctq/$d"
	done
	for d in p-gptq p-awq p-compressed-tensors g; do
		join2 "$w/$d/config.json" "$w/$d/model.safetensors" >"$out/fuzz_pack/$d"
	done
	for f in "$here"/../../recipes/*.yaml "$here"/../data/recipes/*.yaml; do
		[ -f "$f" ] && cp "$f" "$out/fuzz_recipe/$(basename "$f")"
	done
	return 0
}

# replay the kept regression inputs of one target (each must pass)
replay() { # bin target
	r="$here/regress/$2"
	[ -d "$r" ] || return 0
	ls "$r" | grep -q . || return 0
	nice -n 19 "$1" -runs=0 "$r" >"$CORPUS/$2.replay.log" 2>&1 || {
		echo "fuzz: $2: a regression input fails again:" >&2
		tail -30 "$CORPUS/$2.replay.log" >&2
		return 1
	}
}

# run one target; prints "target: N execs, cov C, ft F"
fuzz_one() { # bin target seconds
	log="$CORPUS/$2.log"
	mkdir -p "$CORPUS/$2" "$CORPUS/$2.crashes"
	set -- "$1" "$2" "$3"
	regress=""
	[ -d "$here/regress/$2" ] && regress="$here/regress/$2"
	# -rss_limit_mb and -malloc_limit_mb: an allocation a small input cannot
	# justify is a finding; -timeout: so is a hang. make check's smoke test
	# is deterministic: a fixed seed and a fixed number of inputs (150 a
	# second asked for, the slowest target's rate here), so on the same
	# corpus it tries the same inputs, however fast the machine, and a run
	# that passes here passes in CI; the time limit is only a cap.
	# fuzz-run explores at random for the seconds given.
	limit="-max_total_time=$3"
	[ "$mode" = check ] && limit="-seed=1 -runs=$(($3 * 150)) -max_total_time=$(($3 * 20))"
	nice -n 19 "$1" $limit -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
		-artifact_prefix="$CORPUS/$2.crashes/" -print_final_stats=1 \
		"$CORPUS/$2" $regress >"$log" 2>&1
	st=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
	ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1)
	echo "$2: ${execs:-?} execs, $cov, $ft, corpus $(ls "$CORPUS/$2" | wc -l)"
	if [ $st != 0 ]; then
		echo "fuzz: $2 found a bug (log $log, input in $CORPUS/$2.crashes/):" >&2
		grep -A12 'ERROR\|runtime error\|SUMMARY' "$log" | head -30 >&2
		return 1
	fi
}

runall() { # mode seconds bindir
	mode=$1 secs=$2 bindir=$3
	mkdir -p "$CORPUS"
	if [ ! -f "$CORPUS/.seeded" ]; then
		seeds "$CORPUS" || exit 1
		touch "$CORPUS/.seeded"
	fi
	fail=0
	for b in "$bindir"/fuzz_*; do
		t=$(basename "$b")
		if [ "$mode" = check ]; then
			replay "$b" "$t" || { fail=1; continue; }
		fi
		fuzz_one "$b" "$t" "$secs" || fail=1
	done
	return $fail
}

case "${1:-}" in
probe) probe ;;
seeds) seeds "$2" ;;
run) runall run "$2" "$3" ;;
check)
	if ! probe; then
		echo "check-fuzz: skipped: $FUZZ_CC with libFuzzer (clang, libclang-rt-dev) not found"
		exit 0
	fi
	runall check "$2" "$3" && echo "check-fuzz: ok"
	;;
*) echo "usage: run.sh probe|seeds DIR|run SECONDS BINDIR|check SECONDS BINDIR" >&2; exit 2 ;;
esac
