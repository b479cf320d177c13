/* test_qscheme.c - quantization_config JSON, both directions. */
#include "tutil.h"

#include <string.h>

#include "qc_err.h"
#include "qc_qscheme.h"

/* The W4A16 block of doc/formats.md 1.6, reconstructed from the serializer. */
static const char w4a16_expected[] =
	"{\"config_groups\": {\"group_0\": {\"input_activations\": null, \"output_activations\": null, "
	"\"targets\": [\"Linear\"], \"weights\": {\"actorder\": null, \"block_structure\": null, "
	"\"dynamic\": false, \"group_size\": 128, \"num_bits\": 4, \"observer\": \"minmax\", "
	"\"observer_kwargs\": {}, \"strategy\": \"group\", \"symmetric\": true, \"type\": \"int\"}}}, "
	"\"format\": \"pack-quantized\", \"global_compression_ratio\": null, \"ignore\": [\"lm_head\"], "
	"\"kv_cache_scheme\": null, \"quant_method\": \"compressed-tensors\", "
	"\"quantization_status\": \"compressed\", \"sparsity_config\": {}, \"transform_config\": {}, "
	"\"version\": \"0.12.2\"}";

static char *dump(const json_t *j)
{
	return json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT | JSON_INDENT(0));
}

static void test_w4a16_key_for_key(void **state)
{
	(void)state;
	qc_qscheme s;
	assert_int_equal(qc_qscheme_preset(&s, "w4a16"), 0);
	snprintf(s.format, sizeof s.format, "pack-quantized");
	json_t *j;
	assert_int_equal(qc_qscheme_to_json(&s, &j), 0);
	json_error_t e;
	json_t *want = json_loads(w4a16_expected, 0, &e);
	assert_non_null(want);
	char *a = dump(j), *b = dump(want);
	assert_string_equal(a, b);
	free(a);
	free(b);
	json_decref(want);
	json_decref(j);
	qc_qscheme_free(&s);
}

static void test_roundtrip_presets(void **state)
{
	(void)state;
	const char *names[] = { "w4a16", "w4a16-asym", "w8a16", "w8a8", "fp8-dynamic", "fp8-static" };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		qc_qscheme s, t;
		assert_int_equal(qc_qscheme_preset(&s, names[i]), 0);
		json_t *j;
		assert_int_equal(qc_qscheme_to_json(&s, &j), 0);
		tu_assert_rc(qc_qscheme_from_json(&t, j), 0);
		assert_int_equal(t.weights.bits, s.weights.bits);
		assert_int_equal(t.weights.is_float, s.weights.is_float);
		assert_int_equal(t.weights.symmetric, s.weights.symmetric);
		assert_int_equal(t.weights.strategy, s.weights.strategy);
		assert_int_equal(t.weights.group_size, s.weights.group_size);
		assert_int_equal(t.act, s.act);
		assert_int_equal(t.act_is_float, s.act_is_float);
		assert_int_equal(t.n_ignore, 1);
		json_t *k;
		assert_int_equal(qc_qscheme_to_json(&t, &k), 0);
		char *a = dump(j), *b = dump(k);
		assert_string_equal(a, b);
		free(a);
		free(b);
		json_decref(j);
		json_decref(k);
		qc_qscheme_free(&s);
		qc_qscheme_free(&t);
	}
}

static void test_w8a8_inputs(void **state)
{
	(void)state;
	qc_qscheme s;
	assert_int_equal(qc_qscheme_preset(&s, "w8a8"), 0);
	json_t *j;
	assert_int_equal(qc_qscheme_to_json(&s, &j), 0);
	json_t *ia = json_object_get(json_object_get(json_object_get(j, "config_groups"), "group_0"),
	                             "input_activations");
	assert_true(json_is_true(json_object_get(ia, "dynamic")));
	assert_string_equal(json_string_value(json_object_get(ia, "strategy")), "token");
	assert_true(json_is_null(json_object_get(ia, "observer")));
	json_decref(j);
	qc_qscheme_free(&s);
}

static void test_ignore(void **state)
{
	(void)state;
	qc_qscheme s;
	assert_int_equal(qc_qscheme_preset(&s, "w4a16"), 0);
	assert_int_equal(qc_qscheme_add_ignore(&s, "re:.*mlp\\.down_proj$"), 0);
	assert_int_equal(qc_qscheme_ignored(&s, "lm_head"), 1);
	assert_int_equal(qc_qscheme_ignored(&s, "model.layers.3.mlp.down_proj"), 1);
	assert_int_equal(qc_qscheme_ignored(&s, "model.layers.3.mlp.up_proj"), 0);
	assert_int_equal(qc_qscheme_add_ignore(&s, "re:model\\.layers\\.0\\."), 0);
	assert_int_equal(qc_qscheme_ignored(&s, "model.layers.0.self_attn.q_proj"), 1);
	assert_int_equal(qc_qscheme_ignored(&s, "model.layers.10.self_attn.q_proj"), 0);
	qc_qscheme_free(&s);
}

/* A pattern that backtracks catastrophically on a name that does not match
 * is an error at the backtracking bound, not a hang and not "not ignored". */
static void test_ignore_backtracking(void **state)
{
	(void)state;
	qc_qscheme s;
	assert_int_equal(qc_qscheme_preset(&s, "w4a16"), 0);
	assert_int_equal(qc_qscheme_add_ignore(&s, "re:(a|aa)+$"), 0);
	assert_int_equal(qc_qscheme_ignored(&s, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"), QC_EINVAL);
	assert_int_equal(qc_qscheme_ignored(&s, "aaaa"), 1);
	qc_qscheme_free(&s);
}

static void test_refusals(void **state)
{
	(void)state;
	const char *bad[] = {
		"{\"quant_method\": \"gptq\"}",
		"{\"quant_method\": \"compressed-tensors\"}",
		"{\"quant_method\": \"compressed-tensors\", \"config_groups\": {\"a\": {\"weights\": "
		"{\"num_bits\": 4, \"strategy\": \"block\", \"type\": \"int\"}}}}",
		"{\"quant_method\": \"compressed-tensors\", \"config_groups\": {\"a\": {\"weights\": "
		"{\"num_bits\": 4, \"strategy\": \"group\", \"group_size\": 128, \"type\": \"int\", "
		"\"actorder\": \"group\"}}}}",
		"{\"quant_method\": \"compressed-tensors\", \"config_groups\": {\"a\": {\"weights\": "
		"{\"num_bits\": 3, \"strategy\": \"channel\", \"type\": \"int\"}}}}",
		"{\"quant_method\": \"compressed-tensors\", \"config_groups\": {\"a\": {\"weights\": "
		"{\"num_bits\": 8, \"strategy\": \"channel\", \"type\": \"int\"}}, \"b\": {}}}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_error_t e;
		json_t *j = json_loads(bad[i], 0, &e);
		assert_non_null(j);
		qc_qscheme s;
		int rc = qc_qscheme_from_json(&s, j);
		assert_true(rc == QC_EUNSUPPORTED || rc == QC_EFORMAT || rc == QC_EINVAL);
		assert_true(strlen(qc_errmsg()) > 10);
		qc_qscheme_free(&s);
		json_decref(j);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_w4a16_key_for_key),
		cmocka_unit_test(test_roundtrip_presets),
		cmocka_unit_test(test_w8a8_inputs),
		cmocka_unit_test(test_ignore),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_ignore_backtracking),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
