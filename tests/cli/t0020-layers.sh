#!/bin/sh
# t0020: the layer rule of libcommon (libcommon/README.md): the check passes
# on the tree as it is and fails, naming file, line and layers, on a planted
# include that reaches up.
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"

test_expect_success 'the tree keeps its layers' "
	sh '$top/scripts/check-layers.sh' '$top' >out 2>err && expect_grep out 'check-layers: ok'
"

copy_tree() {
	mkdir -p tree && cp -r "$top/libcommon" "$top/kernels" tree/
}

test_expect_success 'an include from a higher layer fails, naming the file and line' "
	copy_tree &&
	printf '#include \"qc_model.h\"\n' >>tree/libcommon/io/qc_tar.c &&
	st=0; sh '$top/scripts/check-layers.sh' tree >out 2>err || st=\$?
	test \$st = 1 &&
	expect_grep err 'libcommon/io/qc_tar.c:' &&
	expect_grep err \"includes \\\"qc_model.h\\\" of layer 'model'; layer 'io' may include: base\"
"

test_expect_success 'kernels may not include libcommon above base' "
	rm -rf tree && copy_tree &&
	printf '#include \"qc_walk.h\"\n' >>tree/kernels/cpu/qk_ops.c &&
	st=0; sh '$top/scripts/check-layers.sh' tree >out 2>err || st=\$?
	test \$st = 1 && expect_grep err 'kernels/cpu/qk_ops.c:'
"

test_expect_success 'a header name used in two layers fails' "
	rm -rf tree && copy_tree &&
	cp tree/libcommon/base/qc_err.h tree/libcommon/io/qc_err.h &&
	st=0; sh '$top/scripts/check-layers.sh' tree >out 2>err || st=\$?
	test \$st = 1 && expect_grep err 'qc_err.h'
"
test_done
