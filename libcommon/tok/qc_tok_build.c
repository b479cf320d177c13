/*
 * qc_tok_build.c - train a small byte-level BPE tokenizer in the Llama-3
 * layout, for synthetic models (see qc_tok_build_bytelevel in qc_tok.h).
 *
 * Training is the classic greedy BPE: the text is cut into words by the
 * Llama-3 split regex, identical words are counted once with their
 * frequency, and every adjacent pair of symbols is counted over all words.
 * Each step merges the most frequent pair (ties: smaller left id, then
 * smaller right id) in every word that holds it. Pair counts are kept
 * incrementally: a merge re-counts only the words it touched (an index maps
 * each pair to the words that ever held it), and a max-heap with stale
 * entries skipped finds the next pair, so a 128k vocabulary on tens of KB of
 * text takes milliseconds rather than a rescan per merge.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "qc_tok.h"

#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_strmap.h"
#include "qc_vec.h"

/* Llama-3's pre-tokenizer regex, as its tokenizer.json spells it. */
static const char LLAMA3_RE[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
	"|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

#define BOS_TEXT "<|begin_of_text|>"
#define EOS_TEXT "<|end_of_text|>"

/* ------------------------------------------------------------------------ */
/* small containers                                                          */

typedef struct word {
	int32_t *sym;            /* current symbols (token ids) */
	int32_t n;
	int64_t freq;            /* occurrences in the text */
	int64_t seen;            /* last merge step that re-counted this word */
} word;

typedef struct pairrec {
	int32_t a, b;
	int64_t count;           /* weighted occurrences over all words */
	int32_t *w;              /* words that held the pair at some point */
	int32_t nw, capw;
} pairrec;

typedef struct hitem {
	int64_t count;
	int32_t a, b;
} hitem;

typedef struct trainer {
	word *words;
	size_t n_words, cap_words;
	qc_strmap wmap;          /* word text -> index, to count identical words once */
	const char *text;
	pairrec *pairs;          /* every pair ever counted */
	size_t npairs, cappairs;
	qc_strmap pmap;          /* (a, b) as two int32 -> index in pairs */
	hitem *heap;
	size_t hn, hcap;
	/* token bytes: token i spans tok[toff[i] .. toff[i] + tlen[i]) */
	char *tok;
	size_t tokn, tokcap;
	uint32_t *toff, *tlen;
	size_t ntok, captok;
	qc_strmap tmap;          /* token bytes -> id, to reuse an id when a merge rebuilds a token */
	int32_t *ma, *mb;        /* merges in order */
	size_t nm, capm;
} trainer;

static int oom(void)
{
	return qc_seterr(QC_ENOMEM, "out of memory building a tokenizer");
}

/* ---- pairs ---- */

/* The record of pair (a, b), or NULL when it has none; with create, a new
 * zero record is made for it (NULL then only when out of memory). The
 * pointer is good until the next create. */
static pairrec *pair_slot(trainer *tr, int32_t a, int32_t b, int create)
{
	const int32_t key[2] = { a, b };
	int32_t i = qc_strmap_get(&tr->pmap, key, sizeof key);
	if (i >= 0)
		return &tr->pairs[i];
	if (!create || tr->npairs >= INT32_MAX ||
	    qc_grow((void **)&tr->pairs, &tr->cappairs, tr->npairs + 1, sizeof *tr->pairs) < 0 ||
	    qc_strmap_put(&tr->pmap, key, sizeof key, (int32_t)tr->npairs) < 0)
		return NULL;
	tr->pairs[tr->npairs] = (pairrec){ a, b, 0, NULL, 0, 0 };
	return &tr->pairs[tr->npairs++];
}

/* Max-heap on (count desc, a asc, b asc): the pair to merge next on top. */
static int hbefore(const hitem *x, const hitem *y)
{
	if (x->count != y->count)
		return x->count > y->count;
	if (x->a != y->a)
		return x->a < y->a;
	return x->b < y->b;
}

static int heap_push(trainer *tr, hitem e)
{
	QC_TRY(qc_grow((void **)&tr->heap, &tr->hcap, tr->hn + 1, sizeof *tr->heap));
	size_t i = tr->hn++;
	while (i > 0 && hbefore(&e, &tr->heap[(i - 1) / 2])) {
		tr->heap[i] = tr->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	tr->heap[i] = e;
	return 0;
}

static hitem heap_pop(trainer *tr)
{
	hitem top = tr->heap[0], last = tr->heap[--tr->hn];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= tr->hn)
			break;
		if (c + 1 < tr->hn && hbefore(&tr->heap[c + 1], &tr->heap[c]))
			c++;
		if (!hbefore(&tr->heap[c], &last))
			break;
		tr->heap[i] = tr->heap[c];
		i = c;
	}
	tr->heap[i] = last;
	return top;
}

/* Add (sign = +1) or remove (-1) the adjacent pairs of word wi. Every new
 * count of 2 or more goes on the heap, decreases included (the heap entry
 * for the old count is then stale); pairs seen once can never be chosen. */
static int count_word(trainer *tr, int32_t wi, int64_t sign, int push)
{
	word *w = &tr->words[wi];
	for (int32_t i = 0; i + 1 < w->n; i++) {
		pairrec *p = pair_slot(tr, w->sym[i], w->sym[i + 1], 1);
		if (!p)
			return oom();
		p->count += sign * w->freq;
		if (sign > 0) {
			if (p->nw == 0 || p->w[p->nw - 1] != wi) {
				size_t cap = (size_t)p->capw;
				QC_TRY(qc_grow((void **)&p->w, &cap, (size_t)p->nw + 1, sizeof *p->w));
				p->capw = (int32_t)cap;
				p->w[p->nw++] = wi;
			}
		}
		if (p->count >= 2 && push)
			QC_TRY(heap_push(tr, (hitem){ p->count, w->sym[i], w->sym[i + 1] }));
	}
	return 0;
}

/* ---- tokens ---- */

static int tok_add(trainer *tr, const char *s, size_t n)
{
	QC_TRY(qc_grow((void **)&tr->tok, &tr->tokcap, tr->tokn + n, 1));
	size_t c = tr->captok;
	QC_TRY(qc_grow((void **)&tr->toff, &c, tr->ntok + 1, sizeof *tr->toff));
	QC_TRY(qc_grow((void **)&tr->tlen, &tr->captok, tr->ntok + 1, sizeof *tr->tlen));
	QC_TRY(qc_strmap_put(&tr->tmap, s, n, (int32_t)tr->ntok));
	memcpy(tr->tok + tr->tokn, s, n);
	tr->toff[tr->ntok] = (uint32_t)tr->tokn;
	tr->tlen[tr->ntok] = (uint32_t)n;
	tr->tokn += n;
	tr->ntok++;
	return 0;
}

/* ---- words ---- */

static int add_word(trainer *tr, size_t off, size_t n)
{
	const char *s = tr->text + off;
	int32_t i = qc_strmap_get(&tr->wmap, s, n);
	if (i >= 0) {
		tr->words[i].freq++;
		return 0;
	}
	QC_TRY(qc_grow((void **)&tr->words, &tr->cap_words, tr->n_words + 1, sizeof *tr->words));
	word *w = &tr->words[tr->n_words];
	w->sym = malloc(n * sizeof *w->sym);
	if (!w->sym)
		return oom();
	for (size_t k = 0; k < n; k++)
		w->sym[k] = (unsigned char)s[k];
	w->n = (int32_t)n;
	w->freq = 1;
	w->seen = -1;
	tr->n_words++;
	return qc_strmap_put(&tr->wmap, s, n, (int32_t)tr->n_words - 1);
}

/* Cut text into words with the Llama-3 regex; bytes between matches (only
 * invalid UTF-8 can fall there) are words too, as the tokenizer splits them. */
static int split_words(trainer *tr, size_t len)
{
	int err;
	PCRE2_SIZE eoff;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)LLAMA3_RE, PCRE2_ZERO_TERMINATED,
	                               PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &eoff, NULL);
	if (!re)
		return qc_seterr(QC_EINTERNAL, "cannot compile the Llama-3 split regex");
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
	int rc = md ? 0 : oom();
	size_t pos = 0;
	while (rc == 0 && pos < len) {
		int m = pcre2_match(re, (PCRE2_SPTR)tr->text, len, pos, 0, md, NULL);
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		size_t ms = m >= 0 ? ov[0] : len, me = m >= 0 ? ov[1] : len;
		if (ms > pos)
			rc = add_word(tr, pos, ms - pos);
		if (rc == 0 && me > ms)
			rc = add_word(tr, ms, me - ms);
		/* the pattern cannot match empty, but never loop on one */
		pos = me > pos ? me : pos + 1;
	}
	pcre2_match_data_free(md);
	pcre2_code_free(re);
	return rc;
}

/* Merge (a, b) -> c in word wi, re-counting its pairs. */
static int merge_in_word(trainer *tr, int32_t wi, int32_t a, int32_t b, int32_t c)
{
	word *w = &tr->words[wi];
	int found = 0;
	for (int32_t i = 0; i + 1 < w->n; i++)
		if (w->sym[i] == a && w->sym[i + 1] == b) {
			found = 1;
			break;
		}
	if (!found)
		return 0;
	QC_TRY(count_word(tr, wi, -1, 1));
	int32_t o = 0;
	for (int32_t i = 0; i < w->n; i++) {
		if (i + 1 < w->n && w->sym[i] == a && w->sym[i + 1] == b) {
			w->sym[o++] = c;
			i++;
		} else {
			w->sym[o++] = w->sym[i];
		}
	}
	w->n = o;
	return count_word(tr, wi, +1, 1);
}

static int train(trainer *tr, int64_t max_new)
{
	for (int b = 0; b < 256; b++) {
		char c = (char)b;
		QC_TRY(tok_add(tr, &c, 1));
	}
	/* count everything first, then push each pair once */
	for (size_t i = 0; i < tr->n_words; i++)
		QC_TRY(count_word(tr, (int32_t)i, +1, 0));
	for (size_t i = 0; i < tr->npairs; i++) {
		const pairrec *p = &tr->pairs[i];
		if (p->count >= 2)
			QC_TRY(heap_push(tr, (hitem){ p->count, p->a, p->b }));
	}
	int64_t added = 0, step = 0;
	char *tmp = NULL;
	size_t tmpcap = 0;
	int rc = 0;
	while (added < max_new && tr->hn > 0) {
		hitem top = heap_pop(tr);
		pairrec *p = pair_slot(tr, top.a, top.b, 0);
		if (!p || p->count != top.count || p->count < 2)
			continue;   /* stale: the count changed after this was pushed */
		size_t la = tr->tlen[top.a], lb = tr->tlen[top.b];
		if ((rc = qc_grow((void **)&tmp, &tmpcap, la + lb, 1)) < 0)
			break;
		memcpy(tmp, tr->tok + tr->toff[top.a], la);
		memcpy(tmp + la, tr->tok + tr->toff[top.b], lb);
		int32_t c = qc_strmap_get(&tr->tmap, tmp, la + lb);
		if (c < 0) {
			c = (int32_t)tr->ntok;
			if ((rc = tok_add(tr, tmp, la + lb)) < 0)
				break;
			added++;
		}
		size_t cm = tr->capm;
		if ((rc = qc_grow((void **)&tr->ma, &cm, tr->nm + 1, sizeof *tr->ma)) < 0 ||
		    (rc = qc_grow((void **)&tr->mb, &tr->capm, tr->nm + 1, sizeof *tr->mb)) < 0)
			break;
		tr->ma[tr->nm] = top.a;
		tr->mb[tr->nm] = top.b;
		tr->nm++;
		/* the word list may grow while we walk it (new pairs of c are
		 * indexed under other keys, never under (a, b) itself) */
		step++;
		p = pair_slot(tr, top.a, top.b, 0);
		int32_t nw = p->nw;
		for (int32_t k = 0; k < nw && rc == 0; k++) {
			p = pair_slot(tr, top.a, top.b, 0);   /* pairs may have moved */
			int32_t wi = p->w[k];
			if (tr->words[wi].seen == step)
				continue;
			tr->words[wi].seen = step;
			rc = merge_in_word(tr, wi, top.a, top.b, c);
		}
		if (rc < 0)
			break;
	}
	free(tmp);
	return rc;
}

static void trainer_free(trainer *tr)
{
	for (size_t i = 0; i < tr->n_words; i++)
		free(tr->words[i].sym);
	free(tr->words);
	qc_strmap_free(&tr->wmap);
	for (size_t i = 0; i < tr->npairs; i++)
		free(tr->pairs[i].w);
	free(tr->pairs);
	qc_strmap_free(&tr->pmap);
	free(tr->heap);
	free(tr->tok);
	free(tr->toff);
	free(tr->tlen);
	qc_strmap_free(&tr->tmap);
	free(tr->ma);
	free(tr->mb);
}

/* ------------------------------------------------------------------------ */
/* JSON output                                                               */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves,
 * the other 68 map to U+0100.. in byte order. The loader in qc_tok.c keeps
 * the inverse; the round-trip test of the built tokenizer ties the two. */
static void byte_spelling(int b, char out[3], size_t *n)
{
	uint32_t cp;
	if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) {
		cp = (uint32_t)b;
	} else {
		uint32_t k = 0;
		for (int x = 0; x < b; x++)
			if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE))
				k++;
		cp = 256 + k;
	}
	if (cp < 0x80) {
		out[0] = (char)cp;
		*n = 1;
	} else {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		*n = 2;
	}
}

/* ByteLevel spelling of token i into s (malloc'd by the caller, 2 bytes per byte). */
static size_t spell(const trainer *tr, const char sp[256][3], const size_t spn[256], int32_t i, char *s)
{
	size_t n = 0;
	for (uint32_t k = 0; k < tr->tlen[i]; k++) {
		unsigned char b = (unsigned char)tr->tok[tr->toff[i] + k];
		memcpy(s + n, sp[b], spn[b]);
		n += spn[b];
	}
	return n;
}

static json_t *added_token(int32_t id, const char *content)
{
	return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)id, "content", content,
	                 "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1);
}

static int build_json(const trainer *tr, int64_t vocab_size, qc_tok_built *out)
{
	char sp[256][3];
	size_t spn[256];
	for (int b = 0; b < 256; b++)
		byte_spelling(b, sp[b], &spn[b]);
	int32_t bos = (int32_t)tr->ntok, eos = bos + 1;
	int rc = 0;
	size_t maxlen = 0;
	for (size_t i = 0; i < tr->ntok; i++)
		if (tr->tlen[i] > maxlen)
			maxlen = tr->tlen[i];
	char *s = malloc(4 * maxlen + 8), *m = malloc(8 * maxlen + 8);
	json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
	json_t *root = NULL, *cfg = NULL;
	if (!s || !m || !vocab || !merges || !added) {
		rc = oom();
		goto out;
	}
	for (size_t i = 0; i < tr->ntok && rc == 0; i++) {
		size_t n = spell(tr, (const char(*)[3])sp, spn, (int32_t)i, s);
		if (json_object_setn_new_nocheck(vocab, s, n, json_integer((json_int_t)i)) < 0)
			rc = oom();
	}
	for (size_t i = 0; i < tr->nm && rc == 0; i++) {
		size_t n = spell(tr, (const char(*)[3])sp, spn, tr->ma[i], m);
		m[n++] = ' ';
		n += spell(tr, (const char(*)[3])sp, spn, tr->mb[i], m + n);
		if (json_array_append_new(merges, json_stringn_nocheck(m, n)) < 0)
			rc = oom();
	}
	if (rc == 0 && (json_array_append_new(added, added_token(bos, BOS_TEXT)) < 0 ||
	                json_array_append_new(added, added_token(eos, EOS_TEXT)) < 0))
		rc = oom();
	for (int64_t id = eos + 1, k = 0; id < vocab_size && rc == 0; id++, k++) {
		char name[64];
		snprintf(name, sizeof name, "<|reserved_special_token_%lld|>", (long long)k);
		if (json_array_append_new(added, added_token((int32_t)id, name)) < 0)
			rc = oom();
	}
	if (rc < 0)
		goto out;
	root = json_pack(
		"{s:s, s:n, s:n, s:O, s:n,"
		" s:{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]},"
		" s:{s:s, s:[{s:s, s:b, s:b, s:b},"
		"            {s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}],"
		"                  s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}],"
		"                  s:{s:{s:s, s:[i], s:[s]}}}]},"
		" s:{s:s, s:b, s:b, s:b},"
		" s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:O, s:O}}",
		"version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer",
		"pre_tokenizer", "type", "Sequence", "pretokenizers",
		"type", "Split", "pattern", "Regex", LLAMA3_RE, "behavior", "Isolated", "invert", 0,
		"type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0,
		"post_processor", "type", "Sequence", "processors",
		"type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0, "use_regex", 1,
		"type", "TemplateProcessing",
		"single", "SpecialToken", "id", BOS_TEXT, "type_id", 0, "Sequence", "id", "A", "type_id", 0,
		"pair", "SpecialToken", "id", BOS_TEXT, "type_id", 0, "Sequence", "id", "A", "type_id", 0,
		"SpecialToken", "id", BOS_TEXT, "type_id", 1, "Sequence", "id", "B", "type_id", 1,
		"special_tokens", BOS_TEXT, "id", BOS_TEXT, "ids", (json_int_t)bos, "tokens", BOS_TEXT,
		"decoder", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1,
		"model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix",
		"end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 1, "vocab", vocab,
		"merges", merges);
	cfg = json_pack("{s:b, s:b, s:s, s:b, s:s, s:[s, s], s:i, s:s}", "add_bos_token", 1,
	                "add_eos_token", 0, "bos_token", BOS_TEXT, "clean_up_tokenization_spaces", 1,
	                "eos_token", EOS_TEXT, "model_input_names", "input_ids", "attention_mask",
	                "model_max_length", (json_int_t)131072, "tokenizer_class",
	                "PreTrainedTokenizerFast");
	if (!root || !cfg) {
		rc = oom();
		goto out;
	}
	out->tokenizer_json = json_dumps(root, JSON_INDENT(2));
	out->config_json = json_dumps(cfg, JSON_INDENT(2));
	if (!out->tokenizer_json || !out->config_json) {
		rc = oom();
		goto out;
	}
	out->tokenizer_len = strlen(out->tokenizer_json);
	out->config_len = strlen(out->config_json);
	out->bos_id = bos;
	out->eos_id = eos;
	out->n_merges = (int64_t)tr->nm;
	out->n_reserved = vocab_size - eos - 1;
out:
	free(s);
	free(m);
	json_decref(vocab);
	json_decref(merges);
	json_decref(added);
	json_decref(root);
	json_decref(cfg);
	return rc;
}

int qc_tok_build_bytelevel(int64_t vocab_size, const char *text, size_t len, qc_tok_built *out)
{
	memset(out, 0, sizeof *out);
	if (vocab_size < 259 || vocab_size > INT32_MAX)
		return qc_seterr(QC_EINVAL, "vocabulary size must be between 259 and %d, not %lld",
		                 INT32_MAX, (long long)vocab_size);
	if (len > ((size_t)1 << 30))
		return qc_seterr(QC_EINVAL, "training text too large (%zu bytes)", len);
	trainer tr;
	memset(&tr, 0, sizeof tr);
	tr.text = text ? text : "";
	int rc = split_words(&tr, text ? len : 0);
	/* 256 bytes + BOS + EOS are fixed; the rest may be merges */
	if (rc == 0)
		rc = train(&tr, vocab_size - 258);
	if (rc == 0)
		rc = build_json(&tr, vocab_size, out);
	trainer_free(&tr);
	if (rc < 0)
		qc_tok_built_release(out);
	return rc;
}

void qc_tok_built_release(qc_tok_built *b)
{
	free(b->tokenizer_json);
	free(b->config_json);
	memset(b, 0, sizeof *b);
}
