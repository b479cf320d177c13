/* test_recipe.c - recipes: the step table against the tools' man pages,
 * the format and its errors (file:line:column), variables, llm-compressor
 * recipes mapped onto steps, the Makefile, and the release bundle. */
#include "tutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qc_err.h"
#include "qc_io.h"
#include "qc_recipe.h"
#include "qc_recipe_int.h"

/* ------------------------------------------------------------ helpers */

static qc_recipe *parse_ok(const char *text, int n_set, char *const *set)
{
	qc_recipe *r = NULL;
	int rc = qc_recipe_parse(&r, "t.yaml", text, strlen(text), n_set, set);
	if (rc != 0)
		fail_msg("recipe refused: %s", qc_errmsg());
	return r;
}

/* every command of variant i, one per line (malloc'd) */
static char *commands(qc_recipe *r, int i)
{
	qc_membuf b = { 0 };
	qc_sink s;
	qc_sink_membuf(&s, &b, "commands");
	assert_int_equal(qc_recipe_commands(r, i, &s), 0);
	return (char *)b.data;
}

static char *makefile(qc_recipe *r)
{
	qc_membuf b = { 0 };
	qc_sink s;
	qc_sink_membuf(&s, &b, "Makefile");
	assert_int_equal(qc_recipe_makefile(r, &s), 0);
	return (char *)b.data;
}

/* fails unless hay has the line (a whole line) */
static void assert_line(const char *hay, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = hay; p && *p;) {
		const char *e = strchr(p, '\n');
		size_t k = e ? (size_t)(e - p) : strlen(p);
		if (k == n && memcmp(p, line, n) == 0)
			return;
		p = e ? e + 1 : p + k;
	}
	fail_msg("line not found:\n  %s\nin:\n%s", line, hay);
}

static void assert_has(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("'%s' not found in:\n%s", needle, hay);
}

/* the recipe is refused with code and a message that starts with want */
static void assert_refused(const char *text, int n_set, char *const *set, int code, const char *want)
{
	qc_recipe *r = NULL;
	int rc = qc_recipe_parse(&r, "t.yaml", text, strlen(text), n_set, set);
	if (rc != code)
		fail_msg("expected %d, got %d (%s) for:\n%s", code, rc, rc ? qc_errmsg() : "accepted", text);
	if (strncmp(qc_errmsg(), want, strlen(want)) != 0)
		fail_msg("message '%s' does not start with '%s'", qc_errmsg(), want);
	assert_null(r);
}

static const char base[] =
	"model: {path: m}\n"
	"calib: {source: random, rows: 4, len: 32, seed: 1}\n"
	"eval: {source: random, rows: 2, len: 32, seed: 2}\n";

/* ------------------------------------------------------------ the table */

/* Every key of the table is a real option of its tool: its man page (run
 * from the source tree, as make check does) documents the flag. */
static void test_table_matches_man_pages(void **state)
{
	(void)state;
	int checked = 0;
	for (const qc_rt_tool *t = qc_recipe__tools; t->name; t++) {
		char path[64];
		snprintf(path, sizeof path, "man/%s.1", t->name);
		char *man = NULL;
		size_t len;
		if (qc_read_file(path, (size_t)1 << 20, &man, &len) != 0)
			continue;       /* a tool not written yet (its table entry still checks below) */
		for (int pass = 0; pass < 2; pass++)
			for (const qc_rt_opt *o = pass ? t->common : t->opts; o && o->key; o++) {
				char want[96];
				if (o->flag[1] == '-')
					snprintf(want, sizeof want, "Fl %s", o->flag + 1);
				else
					snprintf(want, sizeof want, "Fl %c", o->flag[1]);
				if (!strstr(man, want))
					fail_msg("%s: the table's %s (%s) is not in %s", t->name, o->key, o->flag, path);
				checked++;
			}
		free(man);
	}
	assert_true(checked > 40);
}

static void test_table_is_consistent(void **state)
{
	(void)state;
	char steps[128] = "";
	for (const qc_rt_tool *t = qc_recipe__tools; t->name; t++) {
		if (t->role == QC_RT_STEP_QUANT || t->role == QC_RT_STEP_DENSE)
			snprintf(steps + strlen(steps), sizeof steps - strlen(steps), "%s%s", *steps ? " " : "", t->name);
		/* keys unique, flags are options, words where needed */
		for (int pass = 0; pass < 2; pass++)
			for (const qc_rt_opt *o = pass ? t->common : t->opts; o && o->key; o++) {
				assert_true(o->flag[0] == '-');
				assert_ptr_equal(qc_recipe__opt(t, o->key), o);
				if (o->type == QC_RT_WORD)
					assert_non_null(o->words);
			}
		if (t->dense_flag)
			assert_int_equal(qc_recipe__opt(t, t->dense_flag)->type, QC_RT_FLAG);
		if (t->kv_key)
			assert_non_null(qc_recipe__opt(t, t->kv_key));
		/* every mapped key lands on an option, and mapped values are valid */
		for (const qc_lc_mod *m = t->lc; m && m->name; m++)
			for (const qc_lc_key *k = m->keys; k && k->key; k++) {
				if (k->how != QC_LC_OPT)
					continue;
				const qc_rt_opt *o = qc_recipe__opt(t, k->to);
				if (!o)
					fail_msg("%s: %s maps onto '%s', which %s does not take", m->name, k->key, k->to, t->name);
				for (const char *p = k->map; p && *p;) {
					const char *eq = strchr(p, '='), *e = strchr(p, ' ');
					char v[32];
					snprintf(v, sizeof v, "%.*s", (int)((e ? e : p + strlen(p)) - eq - 1), eq + 1);
					assert_int_equal(qc_recipe__check_value(o, v), 0);
					p = e ? e + 1 : p + strlen(p);
				}
			}
	}
	assert_string_equal(steps, qc_recipe_step_tools());
	char *keys = qc_recipe_tool_keys("qfp8");
	assert_string_equal(keys, "per-tensor shared-scale act kv-cache ignore threads mem device calib");
	free(keys);
	assert_null(qc_recipe_tool_keys("qnothing"));
}

/* ------------------------------------------------------------ the format */

static void test_native_commands(void **state)
{
	(void)state;
	char text[2048];
	snprintf(text, sizeof text, "%s"
	         "defaults: {threads: 2}\n"
	         "variants:\n"
	         "  w4:\n"
	         "    steps:\n"
	         "      - qgptq: {scheme: w4a16, group-size: 64, asym: true, ignore: [\"re:.*down_proj$\"]}\n"
	         "    release: [compressed-tensors, gptq]\n"
	         "    gates: {max-kl: 0.1, min-top1: 0.9}\n"
	         "  int8:\n"
	         "    steps:\n"
	         "      - qsmooth: {alpha: search}\n"
	         "        pipe: true\n"
	         "      - qgptq: {scheme: w8a8, threads: 1}\n"
	         "    release: compressed-tensors\n"
	         "  fp8:\n"
	         "    steps:\n"
	         "      - qfp8:\n"
	         "        pipe: true\n"
	         "    release: [compressed-tensors]\n"
	         "    gates: {tokens: none}\n", base);
	qc_recipe *r = parse_ok(text, 0, NULL);
	assert_int_equal(qc_recipe_n_variants(r), 3);
	assert_string_equal(qc_recipe_variant(r, 1), "int8");
	assert_int_equal(qc_recipe_find_variant(r, "fp8"), 2);
	assert_string_equal(qc_recipe_release_dir(r, 0), "release/w4");
	assert_string_equal(qc_recipe_variant_tools(r, 1), "qcalib qsmooth qgptq qpack qverify qrecipe");
	char *c = commands(r, 0);
	assert_line(c, "qcalib -m m -n 4 -L 32 --seed 1 --random -q -o work/calib.st");
	assert_line(c, "qgptq --scheme w4a16 --group-size 64 --asym --ignore 're:.*down_proj$' --threads 2 "
	            "--calib work/calib.st --resume -f -q -o work/w4/1-qgptq m");
	assert_line(c, "qpack -f gptq --threads 2 --force -q -o work/w4/gptq work/w4/1-qgptq");
	assert_line(c, "qverify work/w4/gptq --base m --tokens work/eval.st --max-kl 0.1 --min-top1 0.9 "
	            "-j 2 -q -o work/w4/verify-gptq.json || test $? = 1");
	assert_line(c, "qrecipe release t.yaml w4");
	free(c);
	/* a pipe: the smoothed model is never written; a step's own threads win */
	c = commands(r, 1);
	assert_line(c, "qsmooth --alpha search --threads 2 --calib work/calib.st -q -o - m | qgptq --scheme "
	            "w8a8 --threads 1 --calib work/calib.st --resume -f -q -o work/int8/2-qgptq -");
	free(c);
	/* data-free and packed in the same pipe; no evaluation set */
	c = commands(r, 2);
	assert_line(c, "qfp8 --threads 2 -q -o - m | qpack -f compressed-tensors --threads 2 --force -q -o "
	            "work/fp8/compressed-tensors -");
	assert_line(c, "qverify work/fp8/compressed-tensors --base m -j 2 -q -o "
	            "work/fp8/verify-compressed-tensors.json || test $? = 1");
	assert_null(strstr(c, "qcalib"));
	free(c);
	qc_recipe_free(r);
}

static void test_variables(void **state)
{
	(void)state;
	static const char text[] =
		"vars:\n"
		"  DIR: data\n"
		"  TEXT: ${DIR}/a.txt\n"
		"  T: \"\"\n"
		"  SRC: text\n"
		"model: {source: synth, synth: {preset: tiny, layers: \"${T}\"}}\n"
		"calib:\n"
		"  source: ${SRC}\n"
		"  files: ${TEXT}\n"
		"  rows: 4\n"
		"eval: {source: random, rows: 2}\n"
		"variants:\n"
		"  v:\n"
		"    steps:\n"
		"      - qgptq:\n"
		"          threads: ${T}\n"
		"    release: [compressed-tensors]\n"
		"    gates: {max-kl: 0.5}\n";
	qc_recipe *r = parse_ok(text, 0, NULL);
	char *c = commands(r, 0);
	/* an empty variable leaves its key out */
	assert_line(c, "qsynth --preset tiny -f -q -o work/model");
	assert_line(c, "qcalib -m work/model -n 4 -q -o work/calib.st data/a.txt");
	assert_has(c, "qgptq --calib work/calib.st --resume");
	assert_has(c, "--max-kl 0.5");
	free(c);
	qc_recipe_free(r);
	/* overrides reach the defaults that use them; GATES=off drops thresholds */
	char *set[] = { "DIR=/srv/d", "T=3", "GATES=off" };
	r = parse_ok(text, 3, set);
	c = commands(r, 0);
	assert_line(c, "qsynth --preset tiny --layers 3 -f -q -o work/model");
	assert_has(c, "-o work/calib.st /srv/d/a.txt");
	assert_has(c, "qgptq --threads 3 ");
	assert_null(strstr(c, "--max-kl"));
	free(c);
	char *mk = makefile(r);
	assert_has(mk, "with DIR=/srv/d T=3 GATES=off.");
	assert_line(mk, "\tqrecipe release t.yaml v DIR=/srv/d T=3 GATES=off");
	free(mk);
	qc_recipe_free(r);
	/* random ids: the texts are neither read nor required */
	char *rnd[] = { "SRC=random" };
	r = parse_ok(text, 1, rnd);
	c = commands(r, 0);
	assert_line(c, "qcalib -m work/model -n 4 --random -q -o work/calib.st");
	free(c);
	mk = makefile(r);
	assert_line(mk, "work/calib.st: work/model .qrecipe/work/calib.st.cmd");
	assert_null(strstr(mk, "a.txt:"));
	free(mk);
	qc_recipe_free(r);
	/* ${RECIPE_DIR} is the recipe's directory as named */
	static const char rd[] =
		"model: {path: \"${RECIPE_DIR}/m\"}\n"
		"variants: {v: {steps: [qfp8], release: [compressed-tensors]}}\n";
	qc_recipe *q = NULL;
	assert_int_equal(qc_recipe_parse(&q, "recipes/x.yaml", rd, strlen(rd), 0, NULL), 0);
	c = commands(q, 0);
	assert_has(c, "qfp8 --resume -f -q -o work/v/1-qfp8 recipes/m\n");
	free(c);
	qc_recipe_free(q);
	/* settings the recipe does not have are refused, named */
	char *bad[] = { "NOPE=1" };
	assert_refused(text, 1, bad, QC_EINVAL, "t.yaml: unknown variable 'NOPE' (the recipe's variables: GATES DIR TEXT T SRC)");
	char *bad2[] = { "1X=1" };
	assert_refused(text, 1, bad2, QC_EINVAL, "'1X=1' is not a variable setting");
	char *bad3[] = { "GATES=maybe" };
	assert_refused(text, 1, bad3, QC_EINVAL, "t.yaml: GATES=maybe: 'on' or 'off'");
}

/* Every error names file:line:column. */
static void test_errors_name_positions(void **state)
{
	(void)state;
	static const struct { const char *text, *want; } cases[] = {
		{ "model: {path: m}\nvariants:\n  v:\n    steps: [qgptq]\n    release: [compressed-tensors]\n",
		  "t.yaml:4:13: v: qgptq reads the token set 'calib', which the recipe does not define" },
		{ "model: {path: m}\nmodle: 1\n", "t.yaml:2:1: unknown key 'modle'" },
		{ "model: {path: m}\nvariants:\n  v: {steps: [qfp8: {act: fast}], release: [gptq]}\n",
		  "t.yaml:3:27: v: qfp8: act: 'fast' is not one of: dynamic static" },
		{ "model: {path: m}\nvariants:\n  v: {steps: [{qfp8: {threads: 0}}], release: [gptq]}\n",
		  "t.yaml:3:32: v: qfp8: threads: 0 is out of range (1 to 1024)" },
		{ "model: {path: m}\nvariants:\n  v: {steps: [{qfp8: {mem: lots}}], release: [gptq]}\n",
		  "t.yaml:3:28: v: qfp8: mem: 'lots' is not a size" },
		{ "model: {path: m}\nvariants:\n  v: {steps: [{qfp8: {per-tensor: maybe}}], release: [gptq]}\n",
		  "t.yaml:3:35: v: qfp8: per-tensor: 'maybe' is not true or false" },
		{ "model: {path: m}\nvariants:\n  v: {steps: [qfp8], release: [tarball]}\n",
		  "t.yaml:3:32: v: release: 'tarball' is not one of: compressed-tensors gptq awq" },
		{ "model: {path: m}\nvariants:\n  v: {steps: [qzip], release: [gptq]}\n",
		  "t.yaml:3:15: v: unknown step 'qzip' (steps: qsmooth qawq qgptq qfp8)" },
		{ "model: {path: m}\nvariants:\n  v: {steps: [qfp8, qfp8], release: [gptq]}\n",
		  "t.yaml:3:15: v: qfp8 writes a quantized checkpoint" },
		{ "model: {path: m}\nvariants:\n  v: {steps: [qsmooth], release: [gptq]}\n",
		  "t.yaml:3:15: v: the last step must quantize" },
		{ "model: {path: m}\nvariants:\n  v: {steps: [{qfp8: , pipe: true}], release: [gptq, compressed-tensors]}\n",
		  "t.yaml:3:16: v: pipe: the last step can stream into qpack only with one release format" },
		{ "model: {path: m}\nvariants:\n  v: {steps: [qfp8], release: [gptq], gates: {max-kl: 1}}\n",
		  "t.yaml:3:46: v: gates: thresholds need an evaluation token set" },
		{ "model: {path: \"m m\"}\n", "t.yaml:1:15: model: path: 'm m' is not a path make can take" },
		{ "model: {path: m, path: n}\n", "t.yaml:1:18: duplicate key 'path' (first at line 1)" },
		{ "model: {path: m}\nvariants:\n  all: {steps: [qfp8], release: [gptq]}\n",
		  "t.yaml:3:3: variants: 'all' is not a variant name" },
		{ "model: [m]\n", "t.yaml:1:8: model: expected a mapping" },
		{ "model:\n  path: m\n   bad: 1\n", "t.yaml:3:7: mapping values are not allowed in this context" },
		{ "- a\n- b\n", "t.yaml:1:1: a recipe is a mapping" },
		{ "", "t.yaml: the recipe is empty" },
		{ "qrecipe: 2\n", "t.yaml:1:10: qrecipe: format version '2' is not known" },
		{ "vars: {A: \"${B}\"}\n", "t.yaml:1:11: vars: A: unknown variable 'B'" },
		{ "model: {path: \"${X\"}\n", "t.yaml:1:15: model: path: '${' does not start a variable name" },
		{ "calib: {source: file}\nmodel: {path: m}\n", "t.yaml:1:8: calib: source: file needs a path" },
		{ "calib: {rows: 3}\nmodel: {path: m}\n", "t.yaml:1:8: calib: no files to read" },
		{ "model: {path: m}\nvariants:\n  v: {steps: [{qgptq: {calib: none}}], release: [gptq]}\n",
		  "t.yaml:3:16: v: qgptq needs a calibration set here" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_refused(cases[i].text, 0, NULL, QC_EFORMAT, cases[i].want);
}

/* ------------------------------------------------------------ llm-compressor */

static char *llmc_commands(const char *text, int n_set, char *const *set)
{
	qc_recipe *r = parse_ok(text, n_set, set);
	assert_int_equal(qc_recipe_kind_of(r), QC_RECIPE_LLMC);
	assert_int_equal(qc_recipe_n_variants(r), 1);
	char *c = commands(r, 0);
	qc_recipe_free(r);
	return c;
}

static void test_llmc_mapping(void **state)
{
	(void)state;
	char *c = llmc_commands("quant_stage:\n  quant_modifiers:\n    GPTQModifier:\n      targets: Linear\n"
	                        "      scheme: W4A16\n      ignore: [lm_head]\n", 0, NULL);
	assert_line(c, "qgptq --scheme w4a16 --clip minmax --calib calib.st --resume -f -q -o work/quant/1-qgptq model");
	assert_line(c, "qpack -f compressed-tensors --force -q -o work/quant/compressed-tensors work/quant/1-qgptq");
	free(c);
	/* the variables give the model, token sets, formats and gates */
	char *set[] = { "MODEL=/m/8b", "CALIB=c.st", "EVAL=e.st", "FORMAT=compressed-tensors gptq",
	                "MAX_KL=0.05", "THREADS=4" };
	c = llmc_commands("DEFAULT_stage:\n  DEFAULT_modifiers:\n    QuantizationModifier:\n"
	                  "      scheme: W4A16_ASYM\n      ignore: [\"re:.*lm_head\", \"re:.*mlp.gate_proj$\"]\n",
	                  6, set);
	assert_line(c, "qgptq --scheme w4a16 --asym --method rtn --clip minmax --ignore 're:.*mlp.gate_proj$' "
	            "--threads 4 --calib c.st --resume -f -q -o work/default/1-qgptq /m/8b");
	assert_line(c, "qverify work/default/gptq --base /m/8b --tokens e.st --max-kl 0.05 -j 4 -q -o "
	            "work/default/verify-gptq.json || test $? = 1");
	free(c);
	/* FP8 static with KV-cache scales through config_groups */
	c = llmc_commands("quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      config_groups:\n"
	                  "        g:\n          targets: [Linear]\n"
	                  "          weights: {num_bits: 8, type: float, symmetric: true, strategy: tensor}\n"
	                  "          input_activations: {num_bits: 8, type: float, strategy: tensor, dynamic: false}\n"
	                  "      kv_cache_scheme: {num_bits: 8, type: float, symmetric: true, strategy: tensor}\n",
	                  0, NULL);
	assert_line(c, "qfp8 --per-tensor --act static --kv-cache --calib calib.st --resume -f -q -o work/quant/1-qfp8 model");
	free(c);
	/* SmoothQuant with v -> o, then W8A8 with a scheme given as {preset: targets} */
	c = llmc_commands("s_stage:\n  m_modifiers:\n    SmoothQuantModifier:\n      smoothing_strength: 0.85\n"
	                  "      mappings:\n        - [[\"re:.*q_proj\", \"re:.*k_proj\", \"re:.*v_proj\"], \"re:.*input_layernorm\"]\n"
	                  "        - [[\"re:.*gate_proj\", \"re:.*up_proj\"], \"re:.*post_attention_layernorm\"]\n"
	                  "        - [[\"re:.*o_proj\"], \"re:.*v_proj\"]\n"
	                  "    GPTQModifier:\n      scheme: {W8A8: [Linear]}\n      actorder: null\n", 0, NULL);
	assert_line(c, "qsmooth --alpha 0.85 --smooth-vo --calib calib.st --resume -f -q -o work/s/1-qsmooth model");
	assert_line(c, "qgptq --scheme w8a8 --actorder none --clip minmax --calib calib.st --resume -f -q -o "
	            "work/s/2-qgptq work/s/1-qsmooth");
	free(c);
	/* AWQ with its own scheme, and AWQ followed by GPTQ */
	c = llmc_commands("q_stage:\n  q_modifiers:\n    AWQModifier:\n      scheme: W4A16\n      n_grid: 10\n"
	                  "      duo_scaling: false\n      offload_device: cpu\n", 0, NULL);
	assert_line(c, "qawq --scheme w4a16 --sym --grid 10 --duo-scaling off --no-clip --calib calib.st --resume -f -q "
	            "-o work/q/1-qawq model");
	free(c);
	c = llmc_commands("q_stage:\n  q_modifiers:\n    AWQModifier: {}\n    GPTQModifier:\n      scheme: W4A16\n"
	                  "      sequential_update: false\n", 0, NULL);
	assert_has(c, "qawq --scheme w4a16 --sym --no-clip --then gptq --calib calib.st");
	free(c);
}

static void test_llmc_refusals(void **state)
{
	(void)state;
	static const struct { const char *text, *want; } cases[] = {
		{ "a_stage:\n  b_modifiers:\n    ConstantPruningModifier: {}\n",
		  "t.yaml:3:5: 'ConstantPruningModifier' has no equivalent in qtoolkit" },
		{ "a_stage:\n  b_modifiers:\n    GPTQModifier: {scheme: W4A16, kv_cache_scheme: {num_bits: 8, type: float}}\n",
		  "t.yaml:3:35: GPTQModifier: kv_cache_scheme without FP8 weights (qfp8) has no equivalent" },
		{ "a_stage:\n  b_modifiers:\n    GPTQModifier: {scheme: W4A16, actorder: group}\n",
		  "t.yaml:3:45: GPTQModifier: actorder: 'group' has no equivalent in qtoolkit" },
		{ "a_stage:\n  b_modifiers:\n    GPTQModifier: {scheme: W4A16, block_size: 64}\n",
		  "t.yaml:3:47: GPTQModifier: block_size: '64' has no equivalent in qtoolkit (only 128)" },
		{ "a_stage:\n  b_modifiers:\n    AWQModifier: {duo_scaling: both}\n    QuantizationModifier: {scheme: W4A16}\n",
		  "t.yaml:3:32: AWQModifier: duo_scaling: 'both' has no equivalent in qtoolkit" },
		{ "a_stage:\n  b_modifiers:\n    AWQModifier: {}\n    GPTQModifier: {scheme: W4A16, dampening_frac: 0.1}\n",
		  "t.yaml:4:35: GPTQModifier: after AWQModifier, GPTQ runs as qawq --then gptq" },
		{ "a_stage:\n  b_modifiers:\n    AWQModifier: {ignore: [lm_head]}\n",
		  "t.yaml:3:5: AWQModifier: no scheme" },
		{ "a_stage:\n  b_modifiers:\n    QuantizationModifier:\n      config_groups:\n        a: {targets: [Linear], weights: {num_bits: 4, strategy: group, group_size: 128}}\n"
		  "        b: {targets: [Linear], weights: {num_bits: 8, strategy: channel}}\n",
		  "t.yaml:6:9: QuantizationModifier: config_groups: a second group ('b') has no equivalent" },
		{ "a_stage:\n  b_modifiers:\n    QuantizationModifier: {scheme: FP8_BLOCK}\n",
		  "t.yaml:3:36: QuantizationModifier: scheme 'FP8_BLOCK' has no equivalent" },
		{ "a_stage:\n  b_modifiers:\n    QuantizationModifier:\n      config_groups:\n        a:\n          weights: {num_bits: 4, strategy: group, group_size: 96}\n",
		  "t.yaml:6:20: QuantizationModifier: config_groups: a: weights: group_size 96 has no equivalent" },
		{ "a_stage:\n  b_modifiers:\n    QuantizationModifier:\n      config_groups:\n        a:\n          weights: {num_bits: 8, type: float, strategy: channel}\n",
		  "t.yaml:5:9: QuantizationModifier: FP8 weights without FP8 activations" },
		{ "a_stage:\n  b_modifiers:\n    SmoothQuantModifier: {ignore: [model.layers.0.input_layernorm]}\n    GPTQModifier: {scheme: W8A8}\n",
		  "t.yaml:3:35: SmoothQuantModifier: ignore: leaving 'model.layers.0.input_layernorm' unsmoothed" },
		{ "a_stage:\n  b_modifiers:\n    SmoothQuantModifier:\n      mappings: [[[\"re:.*q_proj\"], \"re:.*input_layernorm\"]]\n    GPTQModifier: {scheme: W8A8}\n",
		  "t.yaml:4:18: SmoothQuantModifier: mappings: smoothing 're:.*input_layernorm' into q_proj" },
		{ "a_stage:\n  b_modifiers:\n    GPTQModifier: {scheme: W4A16}\n    SmoothQuantModifier: {}\n",
		  "t.yaml:4:5: SmoothQuantModifier after a quantizing modifier" },
		{ "a_stage:\n  b_modifiers:\n    GPTQModifier: {scheme: W4A16}\nb_stage:\n  c_modifiers: {}\n",
		  "t.yaml:4:1: a second stage ('b_stage')" },
		{ "a_stage:\n  b_modifiers:\n    SmoothQuantModifier: {}\n",
		  "t.yaml:1:1: a_stage: no modifier that quantizes" },
		{ "a_stage:\n  run_type: train\n  b_modifiers: {}\n", "t.yaml:2:13: run_type: 'train' has no equivalent" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_refused(cases[i].text, 0, NULL, QC_EFORMAT, cases[i].want);
	/* a modifier that needs data, without CALIB */
	char *set[] = { "CALIB=" };
	assert_refused("a_stage:\n  b_modifiers:\n    GPTQModifier: {scheme: W4A16}\n", 1, set, QC_EFORMAT,
	               "t.yaml:3:5: GPTQModifier needs calibration data: give CALIB=FILE");
}

/* ------------------------------------------------------------ the Makefile */

/* the command hash in target's stamp rule */
static void stamp_of(const char *mk, const char *target, char hash[17])
{
	char want[256];
	snprintf(want, sizeof want, ".qrecipe/%s.cmd: FORCE\n\t$(call stamp,$@,", target);
	const char *p = strstr(mk, want);
	if (!p)
		fail_msg("no stamp rule for %s", target);
	memcpy(hash, p + strlen(want), 16);
	hash[16] = 0;
	assert_true(strlen(hash) == 16 && strspn(hash, "0123456789abcdef") == 16);
}

static void test_makefile(void **state)
{
	(void)state;
	char text[1024];
	snprintf(text, sizeof text, "%s"
	         "jobs: 1\n"
	         "variants:\n"
	         "  v:\n"
	         "    steps: [{qgptq: {ignore: [\"re:.*down_proj$\"]}}]\n"
	         "    release: [compressed-tensors]\n", base);
	qc_recipe *r = parse_ok(text, 0, NULL);
	char *mk = makefile(r);
	assert_line(mk, ".NOTPARALLEL:");
	assert_line(mk, "all: v");
	assert_line(mk, "v: release/v");
	/* the model is an input that must exist; the token sets and steps are
	 * targets with their command's hash */
	assert_line(mk, "m:");
	assert_has(mk, "\n\t@echo \"qrecipe: cannot make m: it does not exist (the model (MODEL))\" >&2; exit 2\n");
	assert_line(mk, "work/calib.st: m .qrecipe/work/calib.st.cmd");
	assert_line(mk, "work/v/1-qgptq: m work/calib.st .qrecipe/work/v/1-qgptq.cmd");
	assert_line(mk, "\t$(call need,qgptq)");
	/* make's '$' is doubled in the command, not in the listing of commands */
	assert_line(mk, "\tqgptq --ignore 're:.*down_proj$$' --calib work/calib.st --resume -f -q -o work/v/1-qgptq m");
	assert_line(mk, "\tqverify work/v/compressed-tensors --base m --tokens work/eval.st -q -o "
	            "work/v/verify-compressed-tensors.json || test $$? = 1");
	assert_line(mk, "release/v: work/v/compressed-tensors work/v/verify-compressed-tensors.json t.yaml "
	            ".qrecipe/release/v.cmd");
	assert_line(mk, ".qrecipe/work/v/1-qgptq.cmd: FORCE");
	assert_has(mk, "\t$(call stamp,$@,");
	/* the hash changes with the command, and only with it */
	char gptq1[17], calib1[17];
	stamp_of(mk, "work/v/1-qgptq", gptq1);
	stamp_of(mk, "work/calib.st", calib1);
	free(mk);
	qc_recipe_free(r);
	char *set[] = { "GATES=off" };
	snprintf(text, sizeof text, "%s"
	         "variants:\n  v:\n    steps: [{qgptq: {damp: 0.02}}]\n    release: [compressed-tensors]\n", base);
	r = parse_ok(text, 1, set);
	mk = makefile(r);
	assert_null(strstr(mk, ".NOTPARALLEL"));
	char gptq2[17], calib2[17];
	stamp_of(mk, "work/v/1-qgptq", gptq2);
	stamp_of(mk, "work/calib.st", calib2);
	assert_string_not_equal(gptq1, gptq2);
	assert_string_equal(calib1, calib2);
	free(mk);
	qc_recipe_free(r);
}

/* Options that do not change a tool's output (qsynth's and qpack's threads,
 * a quantizer's memory budget) are run but not hashed: changing them
 * remakes nothing. */
static void test_stamps_ignore_same_output(void **state)
{
	(void)state;
	static const char text[] =
		"vars: {T: \"1\", M: 1GB, G: \"1\"}\n"
		"model: {source: synth, synth: {preset: tiny, threads: \"${T}\"}}\n"
		"calib: {source: random, rows: 4}\n"
		"variants:\n"
		"  v:\n"
		"    steps: [{qgptq: {mem: \"${M}\", threads: \"${G}\"}}]\n"
		"    release: {formats: [gptq], threads: \"${T}\"}\n";
	char *sets[][3] = { { "T=1", "M=1GB", "G=1" }, { "T=4", "M=8GB", "G=1" }, { "T=1", "M=1GB", "G=2" } };
	char model[3][17], gptq[3][17], pack[3][17];
	for (int i = 0; i < 3; i++) {
		qc_recipe *r = parse_ok(text, 3, sets[i]);
		char *mk = makefile(r);
		stamp_of(mk, "work/model", model[i]);
		stamp_of(mk, "work/v/1-qgptq", gptq[i]);
		stamp_of(mk, "work/v/gptq", pack[i]);
		if (i == 1) {
			/* the commands run with them all the same */
			assert_line(mk, "\tqsynth --preset tiny --threads 4 -f -q -o work/model");
			assert_line(mk, "\tqgptq --threads 1 --mem 8GB --calib work/calib.st --resume -f -q -o work/v/1-qgptq work/model");
			assert_line(mk, "\tqpack -f gptq --threads 4 --force -q -o work/v/gptq work/v/1-qgptq");
		}
		free(mk);
		qc_recipe_free(r);
	}
	assert_string_equal(model[0], model[1]);
	assert_string_equal(gptq[0], gptq[1]);
	assert_string_equal(pack[0], pack[1]);
	/* GPTQ's sums depend on its threads: that remakes its output */
	assert_string_equal(model[0], model[2]);
	assert_string_not_equal(gptq[0], gptq[2]);
}

/* ------------------------------------------------------------ release */

static void put(const char *path, const char *text)
{
	tu_write(path, text, strlen(text));
}

static const char verify_json[] =
	"{\"verdict\": \"%s\", \"failures\": [%s], \"tokens\": \"work/eval.st\",\n"
	" \"integrity\": {\"ok\": true, \"manifest\": \"verified\"},\n"
	" \"function\": {\"ppl_ratio\": 1.01, \"kl_mean\": %s, \"top1\": 0.93},\n"
	" \"thresholds\": {\"max_kl\": 0.05, \"max_ppl_ratio\": null, \"min_top1\": 0.9}}\n";

static void test_release(void **state)
{
	(void)state;
	char cwd[4096];
	assert_non_null(getcwd(cwd, sizeof cwd));
	char *dir = tu_path("rel");
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(chdir(dir), 0);
	char text[1024];
	snprintf(text, sizeof text, "%s"
	         "variants:\n  v:\n    steps: [qfp8]\n    release: [compressed-tensors]\n"
	         "    gates: {max-kl: 0.05, min-top1: 0.9}\n", base);
	put("t.yaml", text);
	qc_recipe *r = NULL;
	assert_int_equal(qc_recipe_load(&r, "t.yaml", 0, NULL), 0);
	/* what the rules made */
	assert_int_equal(qc_mkdirs("work/v/compressed-tensors", 0755), 0);
	put("work/v/compressed-tensors/config.json", "{}\n");
	put("work/v/compressed-tensors/quant_manifest.json", "{\"format\": \"qtoolkit-manifest\"}\n");
	put("work/v/compressed-tensors/quant_report.jsonl", "{\"layer\":\"x\"}\n");
	/* nothing verified yet: nothing to release */
	tu_assert_rc(qc_recipe_release(r, 0), QC_ENOTFOUND);
	char buf[1024];
	snprintf(buf, sizeof buf, verify_json, "pass", "", "0.01");
	put("work/v/verify-compressed-tensors.json", buf);
	tu_assert_rc(qc_recipe_release(r, 0), 0);
	struct stat a, b;
	assert_int_equal(stat("work/v/compressed-tensors/config.json", &a), 0);
	assert_int_equal(stat("release/v/compressed-tensors/config.json", &b), 0);
	assert_true(a.st_ino == b.st_ino);         /* linked, not copied */
	assert_int_equal(stat("release/v/quant_report.jsonl", &b), 0);
	assert_int_equal(stat("release/v/verify-compressed-tensors.json", &b), 0);
	size_t len;
	char *card = tu_read("release/v/quant_card.md", &len);
	assert_has(card, "Verdict: **pass**");
	assert_has(card, "| compressed-tensors | mean KL(base || artifact) | <= 0.05 | 0.01 | pass |");
	assert_has(card, "| compressed-tensors | top-1 agreement | >= 0.9 | 0.93 | pass |");
	assert_has(card, "| compressed-tensors | perplexity ratio | none | 1.01 | reported |");
	assert_has(card, "    qfp8 --resume -f -q -o work/v/1-qfp8 m\n");
	assert_has(card, "```yaml\nmodel: {path: m}\n");
	free(card);
	/* a failed gate: the artifact leaves the release, the card says why */
	snprintf(buf, sizeof buf, verify_json, "fail", "\"function: kl_mean 0.2 exceeds max_kl 0.05\"", "0.2");
	put("work/v/verify-compressed-tensors.json", buf);
	tu_assert_rc(qc_recipe_release(r, 0), QC_EINTEGRITY);
	assert_string_equal(qc_errmsg(), "v: compressed-tensors artifact: function: kl_mean 0.2 exceeds max_kl "
	                    "0.05; it is left out of the release (see release/v.failed/quant_card.md)");
	assert_int_not_equal(stat("release/v", &b), 0);
	assert_int_not_equal(stat("release/v.failed/compressed-tensors", &b), 0);
	card = tu_read("release/v.failed/quant_card.md", &len);
	assert_has(card, "Verdict: **fail**");
	assert_has(card, "| compressed-tensors | mean KL(base || artifact) | <= 0.05 | 0.2 | fail |");
	assert_has(card, "- compressed-tensors: function: kl_mean 0.2 exceeds max_kl 0.05\n");
	free(card);
	/* passing again replaces the failure */
	snprintf(buf, sizeof buf, verify_json, "pass", "", "0.01");
	put("work/v/verify-compressed-tensors.json", buf);
	tu_assert_rc(qc_recipe_release(r, 0), 0);
	assert_int_equal(stat("release/v/compressed-tensors/quant_manifest.json", &b), 0);
	assert_int_not_equal(stat("release/v.failed", &b), 0);
	assert_int_not_equal(stat("release/v.partial", &b), 0);
	qc_recipe_free(r);
	assert_int_equal(chdir(cwd), 0);
	free(dir);
}

static void test_shell_quoting(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
		{ "plain-1.5_x/y:z", "plain-1.5_x/y:z" },
		{ "", "''" },
		{ "a b", "'a b'" },
		{ "re:.*x$", "'re:.*x$'" },
		{ "it's", "'it'\\''s'" },
		{ "{instruction}\\n", "'{instruction}\\n'" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *q = qc_recipe__shq(cases[i][0]);
		assert_string_equal(q, cases[i][1]);
		free(q);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_matches_man_pages),
		cmocka_unit_test(test_table_is_consistent),
		cmocka_unit_test(test_native_commands),
		cmocka_unit_test(test_variables),
		cmocka_unit_test(test_errors_name_positions),
		cmocka_unit_test(test_llmc_mapping),
		cmocka_unit_test(test_llmc_refusals),
		cmocka_unit_test(test_makefile),
		cmocka_unit_test(test_stamps_ignore_same_output),
		cmocka_unit_test(test_release),
		cmocka_unit_test(test_shell_quoting),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
