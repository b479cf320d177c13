#!/bin/sh
# t0040: byte-identical output. scripts/golden.sh runs small deterministic
# cases of qsynth, qcat, qcalib, qgptq, qfp8 and qpack (tiny models, fixed
# seeds and --threads 2) and hashes every file they write; each case must
# give exactly the hashes of tests/cli/golden.txt. A case that differs is
# named with its files. If the change is meant, regenerate golden.txt as its
# header says and explain the change in the commit.
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"

# The float results depend on which of OpenBLAS's kernels runs: golden.txt
# was written with the Haswell (AVX2) kernels, which the development and CI
# machines select through OPENBLAS_CORETYPE. Where it is unset (another
# machine), pick the same kernels rather than let OpenBLAS autodetect them.
: "${OPENBLAS_CORETYPE:=Haswell}"
export OPENBLAS_CORETYPE

golden=$top/tests/cli/golden.txt
grep -v '^#' "$golden" >want

test_expect_success 'setup: every golden case runs' '
	sh "$top/scripts/golden.sh" >got 2>err || { cat err; exit 1; }
'

# Under the sanitizers (make SANITIZE=1 check: -O1, other code) the sums
# of a report's error statistics may round differently in the last digit;
# the weights may not. There the reports, the manifests that hash them and
# the streams that hold both are not compared; every other file is.
loose=0
[ "${QC_SANITIZE:-0}" = 1 ] && loose=1

# same CASE: the case's lines of want and got agree; else each file that
# differs, is missing or is new, and the case's log if it failed
same() {
	awk -v c="$1" -v loose=$loose '
		$1 != c { next }
		loose && ($2 == "-" || $2 ~ /(^|\/)quant_(report\.jsonl|manifest\.json)$/) { next }
		FILENAME == "want" { w[$2] = $3; order[++n] = $2; next }
		$2 == "FAILED" { print c ": the case failed (status " $3 "), see the setup test"; bad = failed = 1; next }
		{ g[$2] = $3; if (!($2 in w)) { print c ": " $2 ": a file golden.txt does not have"; bad = 1 } }
		END {
			for (i = 1; i <= n && !failed; i++) {
				f = order[i]
				if (!(f in g)) { print c ": " f ": missing"; bad = 1 }
				else if (g[f] != w[f]) { print c ": " f ": differs (golden " w[f] ", now " g[f] ")"; bad = 1 }
			}
			exit bad
		}' want got
}

for c in $(cut -d' ' -f1 want | uniq); do
	test_expect_success "$c: every file as golden.txt has it" "same $c"
done

test_expect_success 'no case that golden.txt does not have' '
	cut -d" " -f1 want | sort -u >cases.want &&
	cut -d" " -f1 got | sort -u >cases.got &&
	comm -13 cases.want cases.got >new && test ! -s new || { cat new; exit 1; }
'

test_expect_success 'a run resumed after a failure writes what an uninterrupted one does' '
	grep "^qgptq-w4a16 " got | grep -v quant_manifest.json | cut -d" " -f2- >a &&
	grep "^qgptq-resume " got | grep -v quant_manifest.json | cut -d" " -f2- >b &&
	test -s a && expect_same a b
'
test_done
