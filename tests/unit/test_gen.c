/* test_gen.c - qc_gen.h: chat templates written out by hand (Llama-3 and
 * Llama-2 forms, system messages, trimming), their auto choice, prompt and
 * answer files (GSM8K's own lines), answer extraction and lm-eval gsm8k's
 * normalization. */
#include "tutil.h"

#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_gen.h"
#include "qc_tok.h"

static qc_tok *make_tok(void)
{
	static const char text[] = "Hello there. How are you? [INST] <<SYS>> system user assistant";
	qc_tok_built b;
	tu_assert_rc(qc_tok_build_bytelevel(400, text, strlen(text), &b), 0);
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

/* the text the prompt's ids decode to (specials kept) */
static char *formatted(qc_tok *t, qc_chat chat, const qc_prompt *p)
{
	qc_ids ids = { 0 };
	tu_assert_rc(qc_prompt_encode(t, chat, p, 400, &ids), 0);
	char *s;
	size_t n;
	tu_assert_rc(qc_tok_decode(t, ids.v, ids.n, 0, &s, &n), 0);
	qc_ids_release(&ids);
	return s;
}

static void test_templates(void **state)
{
	(void)state;
	qc_tok *t = make_tok();
	char *path = write_file("p.jsonl",
		"{\"prompt\": \"  Hello there.  \"}\n"
		"{\"id\": 7, \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, "
		"{\"role\": \"user\", \"content\": \"How are you?\"}, {\"role\": \"assistant\", "
		"\"content\": \" Fine. \"}, {\"role\": \"user\", \"content\": \"Hello\"}]}\n");
	qc_prompts ps;
	tu_assert_rc(qc_prompts_load(path, 0, &ps), 0);
	assert_int_equal(ps.n, 2);
	assert_string_equal(ps.p[0].id, "1");
	assert_string_equal(ps.p[1].id, "7");
	assert_string_equal(ps.name, "p");
	char *s = formatted(t, QC_CHAT_LLAMA3, &ps.p[0]);
	/* the test tokenizer's BOS is <|begin_of_text|>; the header markers are
	 * plain text to it, so the decoded text is the template's text */
	assert_string_equal(s, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
	                       "Hello there.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
	free(s);
	s = formatted(t, QC_CHAT_LLAMA3, &ps.p[1]);
	assert_string_equal(s, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
	                       "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
	                       "How are you?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
	                       "Fine.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello"
	                       "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
	free(s);
	s = formatted(t, QC_CHAT_LLAMA2, &ps.p[1]);
	assert_string_equal(s, "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHow are you? [/INST] Fine. "
	                       "</s><s>[INST] Hello [/INST]");
	free(s);
	s = formatted(t, QC_CHAT_LLAMA2, &ps.p[0]);
	assert_string_equal(s, "<s>[INST] Hello there. [/INST]");
	free(s);
	/* none: the text as it is, BOS added */
	s = formatted(t, QC_CHAT_NONE, &ps.p[0]);
	assert_string_equal(s, "<|begin_of_text|>  Hello there.  ");
	free(s);
	qc_ids ids = { 0 };
	tu_assert_rc(qc_prompt_encode(t, QC_CHAT_NONE, &ps.p[1], 400, &ids), QC_EINVAL);
	tu_assert_rc(qc_prompt_encode(t, QC_CHAT_NONE, &ps.p[0], 100, &ids), QC_EFORMAT);
	qc_ids_release(&ids);
	/* auto, from tokenizer_config.json's text */
	const char *l3 = "{\"chat_template\": \"{{ '<|start_header_id|>' }}\"}";
	const char *l2 = "{\"chat_template\": \"{{ '[INST] ' }}\"}";
	assert_int_equal(qc_chat_resolve(QC_CHAT_AUTO, l3, strlen(l3)), QC_CHAT_LLAMA3);
	assert_int_equal(qc_chat_resolve(QC_CHAT_AUTO, l2, strlen(l2)), QC_CHAT_LLAMA2);
	assert_int_equal(qc_chat_resolve(QC_CHAT_AUTO, "{}", 2), QC_CHAT_NONE);
	assert_int_equal(qc_chat_resolve(QC_CHAT_AUTO, NULL, 0), QC_CHAT_NONE);
	assert_int_equal(qc_chat_resolve(QC_CHAT_LLAMA2, l3, strlen(l3)), QC_CHAT_LLAMA2);
	qc_chat c;
	tu_assert_rc(qc_chat_parse("llama2", &c), 0);
	assert_int_equal(c, QC_CHAT_LLAMA2);
	tu_assert_rc(qc_chat_parse("chatml", &c), QC_EINVAL);
	qc_prompts_free(&ps);
	qc_tok_free(t);
	free(path);
}

static void test_answers(void **state)
{
	(void)state;
	char *path = write_file("gsm.jsonl",
		"{\"question\": \"Tom has 3 apples and buys 4. How many?\", \"answer\": \"3+4=7\\n#### 7\"}\n"
		"{\"prompt\": \"Q\", \"target\": \" 1,234 \"}\n");
	qc_prompts ps;
	tu_assert_rc(qc_prompts_load(path, 1, &ps), 0);
	assert_string_equal(ps.p[0].text, "Question: Tom has 3 apples and buys 4. How many?\nAnswer:");
	assert_string_equal(ps.p[0].target, "7");
	assert_string_equal(ps.p[1].target, "1,234");
	qc_prompts_free(&ps);
	struct { const char *text, *want; } cs[] = {
		{ "He has 3+4=7 apples.\n#### 7", "7" },
		{ "#### 1,234.\nQuestion: next #### 9", "1,234." },
		{ "no answer here", NULL },
		{ "Question: x\n#### 5", NULL },          /* after the stop string: ignored */
		{ "#### -12.5 and #### 3", "-12.5" },      /* the first match */
	};
	for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
		char *a;
		tu_assert_rc(qc_answer_extract(QC_ANSWER_REGEX, cs[c].text, &a), 0);
		if (cs[c].want)
			assert_string_equal(a, cs[c].want);
		else
			assert_null(a);
		free(a);
	}
	char *a;
	/* a regex without a group: the whole match */
	tu_assert_rc(qc_answer_extract("[0-9]+", "x 42 y 7", &a), 0);
	assert_string_equal(a, "42");
	free(a);
	tu_assert_rc(qc_answer_extract("(", "x", &a), QC_EINVAL);
	/* lm-eval gsm8k's normalization of both sides */
	assert_true(qc_answer_equal("1,234.", "1234"));
	assert_true(qc_answer_equal("$1,234", "#### 1234"));
	assert_true(qc_answer_equal(" 7 ", "7"));
	assert_true(qc_answer_equal("ABC", "abc"));
	assert_false(qc_answer_equal("7.5", "75"));
	assert_false(qc_answer_equal("8", "7"));
	assert_false(qc_answer_equal(NULL, "7"));
	/* bad files */
	struct { const char *text, *msg; int answers; } bad[] = {
		{ "{\"prompt\": 3}\n", "p.jsonl:1: \"prompt\" or \"messages\"", 0 },
		{ "{\"messages\": []}\n", "p.jsonl:1: \"messages\" is empty", 0 },
		{ "{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}\n", "role 'bot'", 0 },
		{ "{\"prompt\": \"x\", \"id\": [1]}\n", "\"id\" is neither", 0 },
		{ "\n{\"prompt\": \"x\"}\n", "p.jsonl:2: \"target\" or \"answer\"", 1 },
		{ "{\"prompt\": \"x\", \"target\": \"  \"}\n", "the target is empty", 1 },
		{ "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"target\": \"1\"}\n",
		  "\"prompt\" or \"question\"", 1 },
	};
	for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
		char *p = write_file("p.jsonl", bad[c].text);
		tu_assert_rc(qc_prompts_load(p, bad[c].answers, &ps), QC_EFORMAT);
		if (!strstr(qc_errmsg(), bad[c].msg))
			fail_msg("case %zu: '%s' lacks '%s'", c, qc_errmsg(), bad[c].msg);
		free(p);
	}
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_templates),
		cmocka_unit_test(test_answers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
