#!/bin/sh
# t0610: what the run driver (libcommon/quant/qc_qrun.h) gives every
# quantizer alike, checked on qfp8 and qgptq: --resume after a failed run,
# --mem spilling without changing a bit, the token set checked before any
# output exists, --device refused on a build without it, and the options
# every quantizing tool shares.
. "$(dirname "$0")/lib.sh"

# put_bf16 FILE TENSOR INDEX BYTES: overwrite element INDEX of a BF16 tensor
put_bf16() {
	n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
	o=$(head -c $((8 + n)) "$1" | tail -c "$n" | grep -o "\"$2\":{[^}]*}" |
		sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
	printf "$4" | dd of="$1" bs=1 seek=$((8 + n + o + 2 * $3)) conv=notrunc 2>/dev/null
}

test_expect_success 'setup: a model, a token set, a broken copy' '
	qsynth -q --preset tiny --layers 3 --seed 5 -o m &&
	qcalib -q -m m --random -n 8 -L 96 --seed 1 -o c.st &&
	cp -r m bad &&
	put_bf16 bad/model-00003-of-00003.safetensors model.layers.2.mlp.up_proj.weight 1 "\300\177"
'

for method in "qfp8 --calib c.st --act static --kv-cache" "qfp8" "qgptq --calib c.st" "qgptq --method rtn"; do
	tool=${method%% *}
	test_expect_success "$method: --resume after a failed run reuses its layers, same bytes" "
		rm -rf full res res.partial &&
		$method -q --threads 2 -o full m &&
		st=0; $method -q --threads 2 --resume -o res bad 2>err || st=\$?
		test \$st = 2 && test ! -e res && test -f res.partial/model-00002-of-00003.safetensors &&
		test -f res.partial/$tool-resume.json &&
		cp m/model-00003-of-00003.safetensors bad/ &&
		$method --threads 2 --resume -o res bad 2>err &&
		expect_grep err 'layers 0 to 1 are done' &&
		test ! -e res.partial && test ! -e res/$tool-resume.json &&
		same_dirs full res
	"
	put_bf16 bad/model-00003-of-00003.safetensors model.layers.2.mlp.up_proj.weight 1 '\300\177'

done

# Planned shards (qc_ckw_plan_shard): each layer's shard is laid out before
# the layer runs and written while it computes, for every method.
for method in "qgptq --calib c.st" "qgptq --method rtn" "qgptq --scheme w8a8 --act static --calib c.st" \
              "qfp8 --calib c.st --act static" "qfp8 --calib c.st --act static --kv-cache" \
              "qsmooth --calib c.st" "qawq --calib c.st" "qawq --scales-only --calib c.st"; do
	test_expect_success "$method: every shard is written while its layer computes" "
		rm -rf pl && $method -v --threads 2 -o pl m 2>err &&
		expect_grep err '3 of 3 shards written while their layer computed'
	"
done
# Wrong plans (a tensor not declared, one missing, another shape, other
# metadata) are planted in the unit test test_ckpt: the shard is written
# again at its end, the same bytes. Here: a planned directory equals the
# stream (never planned) of the same run.
test_expect_success 'a planned directory output equals the stream output of the same run' '
	rm -rf pl pls && qfp8 -q --calib c.st --act static --kv-cache -o pl m &&
	qfp8 -q --calib c.st --act static --kv-cache -o - m | qcat -q -o pls - &&
	same_dirs pl pls
'

test_expect_success 'qfp8 --resume with other options refuses the partial run' '
	! qfp8 -q --resume --calib c.st -o r2 bad 2>/dev/null && test -d r2.partial &&
	st=0; qfp8 -q --resume --per-tensor --calib c.st -o r2 bad 2>err || st=$?
	test $st = 2 && expect_one_message qfp8 err && expect_grep err "another set of options"
'

test_expect_success 'qfp8 --mem spills activations without changing a bit' '
	qcalib -q -m m --random -n 64 -L 128 --seed 2 -o big.st &&
	qfp8 -v --mem 14MB --calib big.st --act static -o held m 2>log14 &&
	expect_grep log14 "held in BF16" && ! grep -q spilled log14 &&
	qfp8 -v --mem 12MB --calib big.st --act static -o spilled m 2>log12 &&
	expect_grep log12 "spilled to zstd scratch files" &&
	same_dirs held spilled &&
	st=0; qfp8 -q --mem 8MB --calib big.st -o small m 2>err || st=$?
	test $st = 2 && expect_grep err "too small" && test ! -e small
'

test_expect_success 'qfp8 checks the token set before it writes anything' '
	qsynth -q --preset tiny --vocab 1024 -o big && qcalib -q -m big --random -n 2 -L 64 -o far.st &&
	st=0; qfp8 -q --calib far.st -o z m 2>err || st=$?
	test $st = 2 && expect_one_message qfp8 err && expect_grep err "vocabulary" &&
	test ! -e z && test ! -e z.partial
'

for tool in qfp8 qgptq; do
	test_expect_success "$tool --device cuda on a build without it: exit 2, nothing written" "
		st=0; $tool -q --method rtn --device cuda -o z m 2>err || st=\$?
		if [ \$st = 2 ] && grep -q 'unknown option' err; then
			st=0; $tool -q --device cuda -o z m 2>err || st=\$?
		fi
		test \$st = 2 && expect_one_message $tool err && expect_grep err cuda && test ! -e z
	"
	test_expect_success "$tool --device auto without a usable GPU: the CPU's output, and -v says why" "
		$tool -q --method rtn --device auto -o auto-$tool m 2>/dev/null ||
			$tool -q --device auto -o auto-$tool m || exit 1
		$tool -q --method rtn --device cpu -o cpu-$tool m 2>/dev/null ||
			$tool -q --device cpu -o cpu-$tool m || exit 1
		for f in cpu-$tool/*.safetensors; do cmp \"\$f\" auto-$tool/\"\${f##*/}\" || exit 1; done
		ls cpu-$tool/*.safetensors >/dev/null && { $tool -v --method rtn --device auto -o -  m 2>err >/dev/null ||
			$tool -v --device auto -o - m 2>err >/dev/null; } &&
		expect_grep err 'the kernels run on the CPU'
	"
	test_expect_code 2 "$tool: --resume to a stream is a usage error" "$tool --resume --calib c.st -o - m"
	test_expect_code 2 "$tool: --mem that is not a size" "$tool --mem lots --calib c.st -o z m"
	test_expect_code 2 "$tool: a bad --ignore regex fails before any work" "
		$tool -q --ignore 're:(' --calib c.st -o z m 2>err; st=\$?; test ! -e z && exit \$st
	"
done
test_done
