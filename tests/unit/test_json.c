/*
 * test_json.c - the HF-compatible JSON writer.
 *
 * Expected strings come from CPython 3 (repr() of the same doubles, and
 * json.dumps(doc, indent=2, sort_keys=True) + "\n" of the same document),
 * computed once and written here.
 */
#include "tutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_json.h"
#include "qc_rng.h"

static const struct {
	double x;
	const char *repr;
} reprs[] = {
	{ 0x1.4f8b588e368f1p-17, "1e-05" },
	{ 0x1.0c6f7a0b5ed8dp-20, "1e-06" },
	{ 0x1.e848000000000p+18, "500000.0" },
	{ 0x1.3880000000000p+13, "10000.0" },
	{ 0x1.47ae147ae147bp-6, "0.02" },
	{ 0x0.0p+0, "0.0" },
	{ -0x0.0p+0, "-0.0" },
	{ 0x1.0000000000000p+0, "1.0" },
	{ -0x1.4000000000000p+1, "-2.5" },
	{ 0x1.999999999999ap-4, "0.1" },
	{ 0x1.5555555555555p-2, "0.3333333333333333" },
	{ 0x1.5555555555555p-1, "0.6666666666666666" },
	{ 0x1.1c37937e08000p+53, "1e+16" },
	{ 0x1.c6bf526340000p+49, "1000000000000000.0" },
	{ 0x1.b69b4ba630f35p+56, "1.2345678901234568e+17" },
	{ 0x1.a36e2eb1c432dp-14, "0.0001" },
	{ 0x1.02e4b6ce5dc68p-13, "0.00012345" },
	{ 0x1.01297d23ab683p-996, "1.5e-300" },
	{ 0x0.0000000000001p-1022, "5e-324" },
	{ 0x1.fffffffffffffp+1023, "1.7976931348623157e+308" },
	{ -0x1.0f0cf064dd592p+73, "-1e+22" },
	{ 0x1.0f0cf064dd592p+73, "1e+22" },
	{ 0x1.9000000000000p+6, "100.0" },
	{ 0x1.0000000000000p+3, "8.0" },
	{ 0x1.0000000000000p+5, "32.0" },
	{ 0x1.0000000000000p-1, "0.5" },
	{ 0x1.a36e2eb1c432cp-14, "9.999999999999999e-05" },
	{ 0x1.81cd6c8b43958p+13, "12345.678" },
	{ 0x1.b7cdfd9d7bdbbp-34, "1e-10" },
	{ 0x1.0000000000000p-1022, "2.2250738585072014e-308" },
	{ 0x1.fffffe0000000p+127, "3.4028234663852886e+38" },
	{ 0x1.3333333333334p-2, "0.30000000000000004" },
	{ 0x1.249ad2594c37dp+332, "1e+100" },
	{ 0x1.e240000000000p+16, "123456.0" },
	{ 0x1.18b54f22aeb00p+50, "1234567890123456.0" },
	{ 0x1.5ee2a2eb5a5c4p+53, "1.2345678901234568e+16" },
};

static void test_repr(void **state)
{
	(void)state;
	char buf[32];
	for (size_t i = 0; i < sizeof reprs / sizeof reprs[0]; i++)
		assert_string_equal(qc_json_repr_double(reprs[i].x, buf), reprs[i].repr);
	assert_string_equal(qc_json_repr_double(NAN, buf), "NaN");
	assert_string_equal(qc_json_repr_double(-INFINITY, buf), "-Infinity");

	/* random doubles: the text reads back exactly and is never longer than
	 * 17 significant digits need */
	qc_rng r;
	qc_rng_seed(&r, 1);
	for (int i = 0; i < 100000; i++) {
		uint64_t u = qc_rng_u64(&r);
		double x;
		memcpy(&x, &u, 8);
		if (!isfinite(x))
			continue;
		qc_json_repr_double(x, buf);
		assert_true(strtod(buf, NULL) == x);
		assert_true(strlen(buf) <= 24);
	}
}

static void test_dump_like_python(void **state)
{
	(void)state;
	json_error_t err;
	const char *in = "{\"b\": [1, 2.5, {\"z\": null, \"a\": true}], "
	                 "\"a\": \"h\\u00e9llo \\\"q\\\" \\\\ \\n\\t\\u0001\\u007f \\ud83d\\ude00 \\u2028\", "
	                 "\"empty_o\": {}, \"empty_a\": [], \"n\": -7, \"f\": false, \"x\": {\"k\": [[]]}}";
	json_t *doc = json_loads(in, 0, &err);
	assert_non_null(doc);
	char *out;
	size_t len;
	tu_assert_rc(qc_json_dump(doc, &out, &len), 0);
	const char *want =
		"{\n  \"a\": \"h\\u00e9llo \\\"q\\\" \\\\ \\n\\t\\u0001\\u007f \\ud83d\\ude00 \\u2028\",\n"
		"  \"b\": [\n    1,\n    2.5,\n    {\n      \"a\": true,\n      \"z\": null\n    }\n  ],\n"
		"  \"empty_a\": [],\n  \"empty_o\": {},\n  \"f\": false,\n  \"n\": -7,\n"
		"  \"x\": {\n    \"k\": [\n      []\n    ]\n  }\n}\n";
	assert_string_equal(out, want);
	assert_int_equal(len, strlen(want));
	/* what we write parses back to an equal document */
	json_t *back = json_loads(out, 0, &err);
	assert_non_null(back);
	assert_true(json_equal(doc, back));
	json_decref(back);
	free(out);
	json_decref(doc);

	/* a scalar document, and a string jansson would not have accepted */
	json_t *s = json_real(1e-5);
	tu_assert_rc(qc_json_dump(s, &out, NULL), 0);
	assert_string_equal(out, "1e-05\n");
	free(out);
	json_decref(s);
	s = json_stringn_nocheck("a\xff", 2);
	tu_assert_rc(qc_json_dump(s, &out, NULL), QC_EINVAL);
	json_decref(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_repr),
		cmocka_unit_test(test_dump_like_python),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
