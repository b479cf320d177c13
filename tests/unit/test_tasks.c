/* test_tasks.c - multiple-choice scoring (qc_tasks.h): loglikelihoods
 * against the sum of the full forward pass's log-softmax (an independent
 * path: no cache, the request's tokens encoded here by lm-eval's rule),
 * for contexts ending mid-word, with trailing spaces, empty, and choices
 * with a leading space; acc and acc_norm; the summary's stderr, recovery
 * and flips from hand-made scores; both file formats; bad files. */
#include "tutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qc_decode.h"
#include "qc_err.h"
#include "qc_model.h"
#include "qc_tasks.h"
#include "qc_tok.h"
#include "tmodel.h"

static qk_ctx *kc;

static int setup(void **state)
{
	(void)state;
	return qk_ctx_new(&kc, QK_DEVICE_CPU, 2);
}

static int teardown(void **state)
{
	(void)state;
	qk_ctx_free(kc);
	return 0;
}

#define VOCAB 320

static const char corpus[] =
	"The capital city of France is Paris. The capital of Italy is Rome. "
	"The cat sat on the mat. The dog sat on the log. Answer: Paris. Answer: Rome. "
	"The capital city of Spain is Madrid. capital capital city city cities.";

static qc_tok *make_tok(void)
{
	qc_tok_built b;
	tu_assert_rc(qc_tok_build_bytelevel(VOCAB, corpus, strlen(corpus), &b), 0);
	qc_tok *t;
	tu_assert_rc(qc_tok_load_mem(&t, b.tokenizer_json, b.tokenizer_len, b.config_json,
	                             b.config_len, "test"), 0);
	qc_tok_built_release(&b);
	return t;
}

static char *write_file(const char *name, const char *text)
{
	char *p = tu_path(name);
	tu_write(p, text, strlen(text));
	return p;
}

/* sum of log p(cont | ctx) from qc_model_forward's log-softmax, encoding
 * the pair here as lm-eval's _encode_pair does */
static double ref_ll(qc_model *m, qc_tok *t, const char *ctx, const char *cont, int *boundary)
{
	int64_t V = qc_model_config(m)->vocab_size;
	size_t lc = strlen(ctx);
	char *c = strdup(ctx), *k;
	size_t cut = lc;
	while (cut > 0 && c[cut - 1] == ' ')
		cut--;
	size_t ks = strlen(cont) + (lc - cut) + 1;
	k = malloc(ks);
	snprintf(k, ks, "%s%s", ctx + cut, cont);
	c[cut] = 0;
	char *whole = malloc(strlen(c) + strlen(k) + 1);
	sprintf(whole, "%s%s", c, k);
	qc_ids w = { 0 }, ce = { 0 };
	tu_assert_rc(qc_tok_encode(t, whole, strlen(whole), 0, &w), 0);
	tu_assert_rc(qc_tok_encode(t, c, strlen(c), 0, &ce), 0);
	/* is encode(ctx) a prefix of encode(ctx + cont)? (not mid-word) */
	*boundary = ce.n <= w.n && memcmp(ce.v, w.v, ce.n * sizeof(int32_t)) == 0;
	int64_t n = (int64_t)w.n;   /* seq = ce + w[len(ce):] */
	int32_t *seq = malloc(sizeof(int32_t) * (size_t)n);
	memcpy(seq, ce.v, ce.n * sizeof(int32_t));
	memcpy(seq + ce.n, w.v + ce.n, (w.n - ce.n) * sizeof(int32_t));
	float *lp = malloc(sizeof(float) * (size_t)(n * V));
	tu_assert_rc(qc_model_forward(m, seq, &n, 1, lp, QC_OUT_LOGPROBS), 0);
	double s = 0;
	for (int64_t i = (int64_t)ce.n; i < n; i++)
		s += lp[(i - 1) * V + seq[i]];
	free(lp);
	free(seq);
	qc_ids_release(&w);
	qc_ids_release(&ce);
	free(c);
	free(k);
	free(whole);
	return s;
}

static void test_loglikelihood(void **state)
{
	(void)state;
	qc_tok *tok = make_tok();
	qc_config cfg;
	tm_config(&cfg, 48, 96, 2, 4, 2, 16, VOCAB, 0);
	tm_model tm;
	tm_make(&tm, &cfg, QC_DT_F32, 31);
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &cfg, &tm.src, NULL, kc, NULL), 0);
	/* line 1: mid-word context, choices scored as written (delimiter "");
	 * line 2: trailing space moves to the continuation;
	 * line 3: default delimiter " " before each choice;
	 * line 4: empty context (BOS prefix); line 5: same context as line 3 */
	char *path = write_file("mc.jsonl",
		"{\"context\": \"The capital ci\", \"choices\": [\"ty of France\", \"ty of Rome\", \"tadel\"], "
		"\"gold\": 0, \"delimiter\": \"\"}\n"
		"\n"
		"{\"context\": \"Answer: \", \"choices\": [\"Paris\", \"Rome\"], \"gold\": 1, "
		"\"delimiter\": \"\"}\n"
		"{\"context\": \"The capital city of France is\", \"choices\": [\"Paris\", \"Rome\", "
		"\"Madrid and more\"], \"gold\": 0}\n"
		"{\"context\": \"\", \"choices\": [\" The cat\", \" The dog\"], \"gold\": 0, "
		"\"delimiter\": \"\"}\n"
		"{\"context\": \"The capital city of France is\", \"choices\": [\"Rome\", \"Paris\"], "
		"\"gold\": 1}\n");
	qc_mc_task t;
	tu_assert_rc(qc_mc_load(path, QC_TASKFMT_AUTO, &t), 0);
	assert_int_equal(t.n, 5);
	assert_string_equal(t.name, "mc");
	assert_int_equal(t.items[1].line, 3);
	assert_string_equal(t.items[2].req[0].cont, " Paris");
	assert_int_equal(t.items[2].req[2].norm_len, 15);
	int64_t cap;
	tu_assert_rc(qc_mc_max_tokens(tok, &t, 0, VOCAB, &cap), 0);
	qc_decoder *d;
	tu_assert_rc(qc_decoder_new(&d, m, cap), 0);
	qc_mc_scores s;
	tu_assert_rc(qc_mc_score(d, tok, &t, 0, NULL, NULL, &s), 0);
	double emax = 0;
	int midword = 0;
	for (int64_t i = 0; i < t.n; i++) {
		const qc_mc_item *it = &t.items[i];
		double norm[3];
		for (int j = 0; j < it->nchoice; j++) {
			int b = 1;
			double r;
			if (it->req[j].ctx[0]) {
				r = ref_ll(m, tok, it->req[j].ctx, it->req[j].cont, &b);
			} else {
				/* empty context: BOS then the continuation's tokens */
				char bos[64];
				size_t bl;
				const char *piece = qc_tok_piece(tok, qc_tok_bos(tok), &bl);
				snprintf(bos, sizeof bos, "%.*s", (int)bl, piece);
				r = ref_ll(m, tok, bos, it->req[j].cont, &b);
			}
			midword += !b;
			double e = fabs(r - s.ll[i][j]);
			emax = e > emax ? e : emax;
			norm[j] = s.ll[i][j] / (double)it->req[j].norm_len;
		}
		int p = 0, pn = 0;
		for (int j = 1; j < it->nchoice; j++) {
			p = s.ll[i][j] > s.ll[i][p] ? j : p;
			pn = norm[j] > norm[pn] ? j : pn;
		}
		assert_int_equal(s.pred[i], p);
		assert_int_equal(s.pred_norm[i], pn);
	}
	print_message("max |ll - forward| %.2e; %d mid-word requests; %lld tokens fed for %lld "
	              "requested\n", emax, midword, (long long)s.tokens, (long long)s.requested);
	assert_true(emax < 1e-5);
	assert_true(midword > 0);                 /* the boundary rule was exercised */
	assert_true(s.tokens < s.requested);      /* contexts reused */
	json_t *j = qc_mc_summary(&t, &s, NULL);
	assert_non_null(json_object_get(j, "acc"));
	assert_null(json_object_get(j, "flips"));
	json_decref(j);
	qc_mc_scores_free(&s);
	qc_mc_free(&t);
	qc_decoder_free(d);
	qc_model_free(m);
	tm_free(&tm);
	qc_tok_free(tok);
	free(path);
}

/* the summary from hand-made predictions: 5 questions, gold 0 */
static void test_summary(void **state)
{
	(void)state;
	qc_mc_task t = { .name = "hand", .path = "hand.jsonl", .fmt = QC_TASKFMT_SIMPLE, .n = 5 };
	qc_mc_item items[5];
	for (int i = 0; i < 5; i++)
		items[i] = (qc_mc_item){ .nchoice = 2, .gold = 0, .line = i + 1 };
	t.items = items;
	int pa[5] = { 0, 0, 1, 1, 0 }, pna[5] = { 0, 0, 0, 0, 0 };   /* artifact */
	int pb[5] = { 0, 1, 0, 1, 0 }, pnb[5] = { 1, 0, 0, 0, 0 };   /* base */
	qc_mc_scores a = { .n = 5, .pred = pa, .pred_norm = pna };
	qc_mc_scores b = { .n = 5, .pred = pb, .pred_norm = pnb };
	json_t *j = qc_mc_summary(&t, &a, &b);
	assert_non_null(j);
	/* acc 3/5, stderr sqrt(0.6 * 0.4 / 4) */
	assert_true(fabs(json_real_value(json_object_get(j, "acc")) - 0.6) < 1e-12);
	assert_true(fabs(json_real_value(json_object_get(j, "acc_stderr")) - sqrt(0.06)) < 1e-12);
	assert_true(fabs(json_real_value(json_object_get(j, "acc_norm")) - 1.0) < 1e-12);
	assert_true(fabs(json_real_value(json_object_get(j, "acc_norm_stderr"))) < 1e-12);
	json_t *base = json_object_get(j, "base");
	assert_true(fabs(json_real_value(json_object_get(base, "acc")) - 0.6) < 1e-12);
	assert_true(fabs(json_real_value(json_object_get(base, "acc_norm")) - 0.8) < 1e-12);
	assert_true(fabs(json_real_value(json_object_get(j, "acc_norm_diff")) - 0.2) < 1e-12);
	assert_true(fabs(json_real_value(json_object_get(j, "acc_norm_recovery")) - 1.25) < 1e-12);
	/* acc: base right on 0, 2, 4; artifact right on 0, 1, 4: 1 lost (2), 1 gained (1) */
	json_t *f = json_object_get(json_object_get(j, "flips"), "acc");
	assert_int_equal(json_integer_value(json_object_get(f, "right_to_wrong")), 1);
	assert_int_equal(json_integer_value(json_object_get(f, "wrong_to_right")), 1);
	assert_true(fabs(json_real_value(json_object_get(f, "rate")) - 0.4) < 1e-12);
	f = json_object_get(json_object_get(j, "flips"), "acc_norm");
	assert_int_equal(json_integer_value(json_object_get(f, "right_to_wrong")), 0);
	assert_int_equal(json_integer_value(json_object_get(f, "wrong_to_right")), 1);
	assert_true(fabs(json_real_value(json_object_get(f, "wrong_to_right_rate")) - 0.2) < 1e-12);
	json_decref(j);
}

static void test_lmeval_format(void **state)
{
	(void)state;
	char *path = write_file("samples_arc.jsonl",
		"{\"doc_id\": 0, \"doc\": {}, \"target\": 1, \"arguments\": [[\"Q: x\\nA:\", \" yes\"], "
		"[\"Q: x\\nA:\", \" no\"]], \"resps\": [], \"filtered_resps\": []}\n"
		"{\"doc_id\": 1, \"target\": \"2\", \"arguments\": {\"gen_args_0\": {\"arg_0\": \"a\", "
		"\"arg_1\": \" b\"}, \"gen_args_1\": {\"arg_0\": \"a\", \"arg_1\": \" cc\"}, "
		"\"gen_args_2\": {\"arg_0\": \"a\", \"arg_1\": \" ddd\"}}}\n"
		"{\"doc_id\": 2, \"target\": \"cc\", \"arguments\": [[\"one\", \" b\"], [\"two\", \" cc\"]]}\n");
	qc_mc_task t;
	tu_assert_rc(qc_mc_load(path, QC_TASKFMT_AUTO, &t), 0);
	assert_int_equal(t.fmt, QC_TASKFMT_LMEVAL);
	assert_string_equal(t.name, "samples_arc");
	assert_int_equal(t.n, 3);
	assert_int_equal(t.items[0].gold, 1);
	assert_string_equal(t.items[0].req[1].cont, " no");
	assert_int_equal(t.items[0].req[1].norm_len, 2);
	assert_int_equal(t.items[1].gold, 2);
	assert_int_equal(t.items[1].nchoice, 3);
	assert_string_equal(t.items[1].req[2].cont, " ddd");
	assert_int_equal(t.items[2].gold, 1);
	assert_string_equal(t.items[2].req[1].ctx, "two");
	qc_mc_free(&t);
	/* a simple file read as lm-eval is an error naming the line */
	char *p2 = write_file("simple.jsonl", "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"gold\": 0}\n");
	tu_assert_rc(qc_mc_load(p2, QC_TASKFMT_LMEVAL, &t), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "simple.jsonl:1: \"arguments\""));
	free(path);
	free(p2);
}

static void test_bad_files(void **state)
{
	(void)state;
	struct { const char *text, *msg; } cs[] = {
		{ "{\"choices\": [\"a\", \"b\"], \"gold\": 0}\n", ":1: \"context\" is missing" },
		{ "\n{\"context\": \"c\", \"gold\": 0}\n", ":2: \"choices\" is missing" },
		{ "{\"context\": \"c\", \"choices\": [\"a\", \"b\"]}\n", ":1: \"gold\" is missing" },
		{ "{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"gold\": 2}\n",
		  ":1: \"gold\" 2 is outside the 2 choices" },
		{ "{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"gold\": -1}\n", "outside" },
		{ "{\"context\": \"c\", \"choices\": [\"a\", \"\"], \"gold\": 0}\n", ":1: choice 1 is empty" },
		{ "{\"context\": \"c\", \"choices\": [\"a\"], \"gold\": 0}\n", "at least 2" },
		{ "{\"context\": \"c\", \"choices\": [\"a\", 3], \"gold\": 0}\n", "choice 1 is not a string" },
		{ "{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n{\"context\": \n",
		  ":2: " },
		{ "[1, 2]\n", ":1: not a JSON object" },
		{ "\n\n", ": no lines" },
		{ "{\"arguments\": [[\"c\", \" a\"], [\"c\", \" b\"]], \"target\": 5}\n",
		  ":1: \"target\" 5 is outside" },
		{ "{\"arguments\": [[\"c\", \" a\"], [\"c\", \"\"]], \"target\": 0}\n",
		  ":1: request 1 has an empty continuation" },
		{ "{\"arguments\": [[\"c\", \" a\"], [\"c\", \" b\"]], \"target\": \"zz\"}\n",
		  "\"target\" \"zz\" is none of the choices" },
		{ "{\"arguments\": {\"gen_args_0\": {\"arg_0\": \"c\", \"arg_1\": \" a\"}, \"x\": 1}, "
		  "\"target\": 0}\n", "has key \"x\"" },
		{ "{\"arguments\": [[\"c\"], [\"c\", \" b\"]], \"target\": 0}\n",
		  "request 0 of \"arguments\" is not a (context, continuation) pair" },
	};
	for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
		char *p = write_file("bad.jsonl", cs[c].text);
		qc_mc_task t;
		tu_assert_rc(qc_mc_load(p, QC_TASKFMT_AUTO, &t), QC_EFORMAT);
		if (!strstr(qc_errmsg(), cs[c].msg) || !strstr(qc_errmsg(), "bad.jsonl"))
			fail_msg("case %zu: message '%s' lacks '%s'", c, qc_errmsg(), cs[c].msg);
		free(p);
	}
	qc_mc_task t;
	tu_assert_rc(qc_mc_load("/nonexistent/x.jsonl", QC_TASKFMT_AUTO, &t), QC_EIO);
	qc_taskfmt f;
	tu_assert_rc(qc_taskfmt_parse("lm-eval", &f), 0);
	assert_int_equal(f, QC_TASKFMT_LMEVAL);
	tu_assert_rc(qc_taskfmt_parse("csv", &f), QC_EINVAL);
	/* ids the model's vocabulary does not have (a tokenizer larger than the model) */
	qc_tok *tok = make_tok();
	qc_ids a = { 0 }, b = { 0 };
	tu_assert_rc(qc_mc_encode(tok, "The cat", " sat", 0, 100, &a, &b), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "outside the model's vocabulary of 100"));
	qc_ids_release(&a);
	qc_ids_release(&b);
	qc_tok_free(tok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loglikelihood),
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_lmeval_format),
		cmocka_unit_test(test_bad_files),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
