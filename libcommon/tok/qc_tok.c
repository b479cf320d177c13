/*
 * qc_tok.c - tokenizer.json BPE tokenizers: loading, encoding, decoding
 * (see qc_tok.h for the contract).
 *
 * Layout of a loaded tokenizer:
 *   - id table [n_ids]: the token's string as tokenizer.json spells it
 *     (arena `str`), for byte-level models also its raw bytes (arena `raw`),
 *     and its kind (normal / added / special);
 *   - `vocab`: token string -> id (model vocabulary), `vraw`: raw bytes ->
 *     id for byte-level models (words are raw bytes here: the ByteLevel
 *     char mapping is applied to the vocabulary once at load instead of to
 *     every word), `merges`: (left id, right id) -> (rank, merged id);
 *   - the added tokens with two matchers (contents matched on raw text, and
 *     normalized contents matched on normalized text);
 *   - normalizer ops, pre-tokenizer steps, decoder steps as small arrays;
 *   - encode scratch (work buffer, pieces, symbols, heap) and the word cache,
 *     which is why encode needs a non-const handle.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "qc_tok.h"

#include <errno.h>
#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qc_err.h"
#include "qc_io.h"
#include "qc_spm.h"
#include "qc_strmap.h"
#include "qc_unorm.h"
#include "qc_vec.h"

#define MAX_ID (1 << 24)          /* ids beyond this are a malformed file   */
#define CACHE_MAX_WORD 256        /* longer words are not cached (bytes)    */
#define CACHE_MAX_ENTRIES 65536   /* the cache is cleared when it grows past */
#define CACHE_MAX_IDS (1 << 22)

/* ------------------------------------------------------------------------ */
/* growable byte buffer                                                      */

typedef struct buf {
	char *p;
	size_t n, cap;
} buf;

static int buf_reserve(buf *b, size_t extra)
{
	if (extra > SIZE_MAX - b->n)
		return qc_seterr(QC_ENOMEM, "out of memory in tokenizer (%zu bytes)", extra);
	return qc_grow((void **)&b->p, &b->cap, b->n + extra, 1);
}

static int buf_add(buf *b, const void *d, size_t n)
{
	QC_TRY(buf_reserve(b, n + 1));
	if (n)
		memcpy(b->p + b->n, d, n);
	b->n += n;
	b->p[b->n] = 0;   /* always NUL-terminated for callers that want strings */
	return 0;
}

static void buf_free(buf *b)
{
	free(b->p);
	b->p = NULL;
	b->n = b->cap = 0;
}

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                     */

/* Length of the character at s (n > 0 bytes left) and its code point in
 * *cp; an invalid or truncated sequence is one byte with *cp = UINT32_MAX. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned c = s[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	size_t len;
	uint32_t v, min;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2; v = c & 0x1F; min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3; v = c & 0x0F; min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4; v = c & 0x07; min = 0x10000;
	} else {
		*cp = UINT32_MAX;
		return 1;
	}
	if (len > n) {
		*cp = UINT32_MAX;
		return 1;
	}
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80) {
			*cp = UINT32_MAX;
			return 1;
		}
		v = (v << 6) | (s[i] & 0x3F);
	}
	if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
		*cp = UINT32_MAX;
		return 1;
	}
	*cp = v;
	return len;
}

static const char SPACE_MARK[] = "\xe2\x96\x81";   /* U+2581, SentencePiece's space */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Unicode White_Space (what \s means to the Rust regex crate). */
static int is_uspace(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
	       c == 0x205F || c == 0x3000;
}

/* ------------------------------------------------------------------------ */
/* GPT-2's byte <-> char table (bytes_to_unicode): printable Latin-1 bytes
 * stand for themselves, the other 68 bytes map to U+0100.. in byte order.  */

static uint32_t byte_char[256];     /* byte -> code point */
static int16_t char_byte[0x144];    /* code point (< 0x144) -> byte, -1 */

static void bytelevel_init(void)
{
	/* idempotent and race-free in effect: every thread writes the same values */
	uint32_t n = 0;
	for (int c = 0; c < 0x144; c++)
		char_byte[c] = -1;
	for (int b = 0; b < 256; b++) {
		int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
		byte_char[b] = printable ? (uint32_t)b : 256 + n++;
		char_byte[byte_char[b]] = (int16_t)b;
	}
}

/* Map a ByteLevel-spelled string to raw bytes; 0 on success, -1 when a
 * character is outside the table (the token then has no raw form). */
static int bytelevel_to_raw(const char *s, size_t n, buf *out)
{
	out->n = 0;
	QC_TRY(buf_reserve(out, n + 1));
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		i += utf8_next((const unsigned char *)s + i, n - i, &cp);
		if (cp >= 0x144 || char_byte[cp] < 0)
			return -1;
		out->p[out->n++] = (char)char_byte[cp];
	}
	out->p[out->n] = 0;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* (left id, right id) -> (rank, merged id)                                  */

typedef struct pmslot {
	uint64_t key;          /* UINT64_MAX: empty */
	int32_t rank, id;
} pmslot;

typedef struct pairmap {
	pmslot *s;
	size_t cap, count;
	int shift;
} pairmap;

static inline uint64_t pkey(int32_t a, int32_t b)
{
	return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

static inline size_t phash(const pairmap *m, uint64_t k)
{
	/* Fibonacci hashing: the top bits of a multiply spread nearby ids */
	return (size_t)((k * 0x9E3779B97F4A7C15ull) >> m->shift);
}

static int pm_init(pairmap *m, size_t n)
{
	size_t cap = 64;
	int bits = 6;
	while (cap < n * 2) {
		cap *= 2;
		bits++;
	}
	m->s = malloc(cap * sizeof *m->s);
	if (!m->s)
		return qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
	for (size_t i = 0; i < cap; i++)
		m->s[i].key = UINT64_MAX;
	m->cap = cap;
	m->shift = 64 - bits;
	m->count = 0;
	return 0;
}

/* The table is sized once for the number of merges, so it never fills. */
static void pm_put(pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
{
	uint64_t k = pkey(a, b);
	for (size_t j = phash(m, k);; j = (j + 1) & (m->cap - 1)) {
		if (m->s[j].key == UINT64_MAX) {
			m->s[j] = (pmslot){ k, rank, id };
			m->count++;
			return;
		}
		if (m->s[j].key == k) {
			m->s[j].rank = rank;
			m->s[j].id = id;
			return;
		}
	}
}

static inline const pmslot *pm_get(const pairmap *m, int32_t a, int32_t b)
{
	if (!m->cap)
		return NULL;
	uint64_t k = pkey(a, b);
	for (size_t j = phash(m, k);; j = (j + 1) & (m->cap - 1)) {
		if (m->s[j].key == k)
			return &m->s[j];
		if (m->s[j].key == UINT64_MAX)
			return NULL;
	}
}

/* ------------------------------------------------------------------------ */
/* regexes (PCRE2, UTF + UCP; invalid UTF-8 never matches a class)          */

typedef struct rx {
	pcre2_code *code;
	pcre2_match_data *md;
	pcre2_match_context *mc;  /* the backtracking bounds below */
} rx;

/* Backtracking bounds of one match: a pattern from a tokenizer.json that
 * backtracks catastrophically stops here instead of hanging (the regexes
 * of released tokenizers need a few steps per character of a match). */
#define RX_MATCH_LIMIT 1000000u
#define RX_DEPTH_LIMIT 100000u

static int rx_compile(rx *r, const char *pat, size_t n, int literal, const char *what)
{
	int err;
	PCRE2_SIZE eoff;
	uint32_t opt = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
	opt |= literal ? PCRE2_LITERAL : PCRE2_UCP;
	r->code = pcre2_compile((PCRE2_SPTR)pat, n, opt, &err, &eoff, NULL);
	if (!r->code) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(err, msg, sizeof msg);
		return qc_seterr(QC_EUNSUPPORTED, "cannot compile %s regex at offset %zu: %s", what,
		                 (size_t)eoff, (char *)msg);
	}
	/* JIT makes the split regexes several times faster; without it (an
	 * unsupported CPU) the interpreter gives the same matches. */
	pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE);
	r->md = pcre2_match_data_create_from_pattern(r->code, NULL);
	r->mc = pcre2_match_context_create(NULL);
	if (!r->md || !r->mc)
		return qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
	pcre2_set_match_limit(r->mc, RX_MATCH_LIMIT);
	pcre2_set_depth_limit(r->mc, RX_DEPTH_LIMIT);
	return 0;
}

static void rx_free(rx *r)
{
	pcre2_match_data_free(r->md);
	pcre2_match_context_free(r->mc);
	pcre2_code_free(r->code);
	r->mc = NULL;
	r->md = NULL;
	r->code = NULL;
}

/* Next non-empty match in s[0..n) at or after *pos: 1 and [*ms, *me), or 0.
 * Empty matches are stepped over one character at a time. */
static int rx_next(rx *r, const char *s, size_t n, size_t pos, size_t *ms, size_t *me)
{
	while (pos <= n) {
		int rc = pcre2_match(r->code, (PCRE2_SPTR)s, n, pos, 0, r->md, r->mc);
		if (rc < 0)
			return 0;  /* no match (or a resource limit: treat as none) */
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
		if (ov[1] > ov[0]) {
			*ms = ov[0];
			*me = ov[1];
			return 1;
		}
		if (ov[0] >= n)
			return 0;
		uint32_t cp;
		pos = ov[0] + utf8_next((const unsigned char *)s + ov[0], n - ov[0], &cp);
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* tokenizer structure                                                       */

typedef enum { BEH_REMOVED, BEH_ISOLATED, BEH_MERGED_PREV, BEH_MERGED_NEXT, BEH_CONTIGUOUS } behavior;

typedef enum { NORM_PREPEND, NORM_REPLACE, NORM_UNICODE, NORM_STRIP, NORM_SPM } norm_type;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } prepend_scheme;
typedef struct norm_op {
	norm_type type;
	char *a;  size_t alen;    /* prepend text / replace pattern (literal) */
	char *b;  size_t blen;    /* replace content */
	rx re;                    /* replace by regex when re.code != NULL */
	int left, right;          /* strip */
	qc_unorm_form form;       /* NFC, NFD, NFKC, NFKD, Lowercase, StripAccents */
	/* SentencePiece's normalizer (tokenizer.model): the dummy prefix by
	 * scheme, remove_extra_whitespaces, escape_whitespaces */
	prepend_scheme dummy;
	int remove_ws, escape_ws;
} norm_op;

typedef enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE, PRE_FIXED } pre_type;
typedef struct pre_op {
	pre_type type;
	rx re;                    /* split pattern (regex or literal) */
	behavior beh;
	int invert;
	int add_prefix_space;     /* ByteLevel */
	int use_regex;            /* ByteLevel: split with the GPT-2 regex */
	char repl[8];             /* Metaspace replacement (UTF-8) */
	size_t repl_len;
	prepend_scheme scheme;
	int split;                /* Metaspace */
	size_t length;            /* FixedLength: characters a piece */
} pre_op;

typedef enum { DEC_BYTELEVEL, DEC_METASPACE, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP } dec_type;
typedef struct dec_op {
	dec_type type;
	char *a; size_t alen;     /* Replace pattern, Strip content, Metaspace replacement */
	char *b; size_t blen;     /* Replace content */
	int start, stop;          /* Strip */
	prepend_scheme scheme;    /* Metaspace */
} dec_op;

typedef struct added_tok {
	uint32_t off, len;        /* content in t->str */
	int32_t id;
	unsigned char special, lstrip, rstrip, single_word, normalized;
	unsigned char verbatim;   /* matched on normalized text as written
	                           * (SentencePiece user-defined pieces) */
} added_tok;

/* Leftmost-longest matching of a set of strings: at each position whose
 * byte can start a content, try the distinct content lengths for that byte,
 * longest first, in a hash map. Llama-3-style vocabularies have a few
 * hundred (or, for synthetic ones, a hundred thousand) added tokens that
 * share a handful of lengths, so this stays cheap. */
typedef struct matcher {
	qc_strmap map;            /* content -> index in t->added */
	uint32_t *lens[256];
	int nlens[256];
	int any;
} matcher;

typedef struct idinfo {
	uint32_t off, len;        /* spelling in t->str; len UINT32_MAX: no token */
	uint32_t roff, rlen;      /* raw bytes in t->raw (byte-level), rlen UINT32_MAX: none */
	unsigned char kind;       /* qc_tok_id_kind */
} idinfo;

typedef struct piece {
	size_t off, len;          /* in the work buffer */
	int first;                /* begins at offset 0 of the original text */
} span;

typedef struct sym {
	int32_t id, prev, next;
	int alive;
} sym;

typedef struct hent {
	int32_t rank, pos, id;
} hent;

typedef struct cent {
	uint32_t off, n;
} cent;

struct qc_tok {
	char *name;
	qc_tok_kind kind;
	buf str;                  /* spellings, NUL-separated */
	buf raw;                  /* raw bytes of byte-level tokens */
	idinfo *ids;
	int64_t n_ids;
	qc_strmap vocab;          /* spelling -> id (model vocabulary) */
	qc_strmap vraw;           /* raw bytes -> id (byte-level only) */
	pairmap merges;
	int32_t byte_id[256];     /* byte-level: id of each single byte */
	int32_t fallback_id[256]; /* "<0xNN>" ids, -1 when absent */
	int byte_fallback, fuse_unk, ignore_merges;
	int spm_split;            /* words may be cut before each U+2581 (below) */
	int reference;            /* plain path: no cut, no cache, naive merges */
	int32_t unk_id;
	char *cont_prefix, *eow_suffix;
	size_t cont_len, eow_len;

	added_tok *added;
	size_t n_added;
	qc_strmap addmap;         /* added token content -> id */
	matcher m_raw, m_norm;
	rx rx_word;               /* \w at the start, for single_word */

	norm_op *norm;
	size_t n_norm, cap_norm;
	pre_op *pre;
	size_t n_pre, cap_pre;
	dec_op *dec;
	size_t n_dec, cap_dec;
	int has_decoder;
	char *dec_unsupported;    /* name of a decoder type we cannot run */

	int32_t prefix[4], suffix[4];
	int n_prefix, n_suffix;
	int32_t bos, eos;
	int adds_bos, adds_eos;

	/* encode scratch */
	buf work, nbuf, wbuf;
	span *pa, *pb;
	size_t pa_cap, pb_cap;
	sym *syms;
	size_t syms_cap;
	hent *heap;
	size_t heap_cap;
	qc_strmap cache;          /* word -> index in cents */
	cent *cents;
	size_t n_cents, cents_cap;
	qc_ids cache_ids;
};

static void check_spm_split(qc_tok *t);

/* ------------------------------------------------------------------------ */
/* JSON helpers                                                              */

static const char *jstr(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jbool(const json_t *o, const char *key, int def)
{
	const json_t *v = json_object_get(o, key);
	if (json_is_boolean(v))
		return json_is_true(v);
	return def;
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

/* *out = a NUL-terminated copy of s[0..n), *len = n. */
static int copy_str(const char *s, size_t n, char **out, size_t *len)
{
	if (!(*out = xstrndup(s, n)))
		return qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
	*len = n;
	return 0;
}

/* The string of a {"String": s} / {"Regex": r} pattern. */
static int jpattern(const qc_tok *t, const json_t *pat, const char **s, size_t *n, int *literal,
                    const char *what)
{
	const json_t *v;
	if ((v = json_object_get(pat, "String")) && json_is_string(v))
		*literal = 1;
	else if ((v = json_object_get(pat, "Regex")) && json_is_string(v))
		*literal = 0;
	else
		return qc_seterr(QC_EFORMAT, "malformed %s pattern in '%s'", what, t->name);
	*s = json_string_value(v);
	*n = json_string_length(v);
	return 0;
}

static int parse_behavior(const qc_tok *t, const json_t *o, behavior def, behavior *out)
{
	const char *b = jstr(o, "behavior");
	if (!b) {
		*out = def;
		return 0;
	}
	static const struct { const char *name; behavior b; } tab[] = {
		{ "Removed", BEH_REMOVED }, { "Isolated", BEH_ISOLATED },
		{ "MergedWithPrevious", BEH_MERGED_PREV }, { "MergedWithNext", BEH_MERGED_NEXT },
		{ "Contiguous", BEH_CONTIGUOUS },
	};
	for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
		if (strcmp(b, tab[i].name) == 0) {
			*out = tab[i].b;
			return 0;
		}
	return qc_seterr(QC_EUNSUPPORTED, "unsupported split behavior '%s' in '%s'", b, t->name);
}

static int parse_scheme(const qc_tok *t, const json_t *o, prepend_scheme *out)
{
	/* prepend_scheme (current files) or add_prefix_space (older ones) */
	const char *s = jstr(o, "prepend_scheme");
	*out = PREPEND_ALWAYS;
	if (s) {
		if (strcmp(s, "always") == 0)
			*out = PREPEND_ALWAYS;
		else if (strcmp(s, "first") == 0)
			*out = PREPEND_FIRST;
		else if (strcmp(s, "never") == 0)
			*out = PREPEND_NEVER;
		else
			return qc_seterr(QC_EUNSUPPORTED, "unsupported Metaspace prepend_scheme '%s' in '%s'",
			                 s, t->name);
	}
	if (json_is_false(json_object_get(o, "add_prefix_space")))
		*out = PREPEND_NEVER;
	return 0;
}

static int metaspace_repl(const qc_tok *t, const json_t *o, char repl[8], size_t *len)
{
	const char *r = jstr(o, "replacement");
	if (!r)
		r = "\xe2\x96\x81";
	size_t n = strlen(r);
	uint32_t cp;
	if (n == 0 || n > 4 || utf8_next((const unsigned char *)r, n, &cp) != n)
		return qc_seterr(QC_EFORMAT, "Metaspace replacement must be one character in '%s'",
		                 t->name);
	memcpy(repl, r, n);
	repl[n] = 0;
	*len = n;
	return 0;
}

/* One step of a normalizer, pre-tokenizer, decoder or post-processor, of
 * the given type (not "Sequence"). */
typedef int (*step_fn)(qc_tok *t, const json_t *o, const char *type);

/* A component of the pipeline: a "Sequence" is its list (under key list),
 * in order, nested Sequences flattened; any other type is one step, handed
 * to add. what names the component in messages ("pre-tokenizer"). */
static int add_steps(qc_tok *t, const json_t *o, const char *what, const char *list, step_fn add)
{
	const char *type = jstr(o, "type");
	if (!type)
		return qc_seterr(QC_EFORMAT, "%s without a type in '%s'", what, t->name);
	if (strcmp(type, "Sequence") != 0)
		return add(t, o, type);
	const json_t *l = json_object_get(o, list);
	if (!json_is_array(l))
		return qc_seterr(QC_EFORMAT, "%s Sequence without a list in '%s'", what, t->name);
	size_t i;
	const json_t *e;
	json_array_foreach(l, i, e)
		QC_TRY(add_steps(t, e, what, list, add));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* normalizer                                                                */

static int norm_step(qc_tok *t, const json_t *o, const char *type)
{
	QC_TRY(qc_grow((void **)&t->norm, &t->cap_norm, t->n_norm + 1, sizeof *t->norm));
	norm_op *op = memset(&t->norm[t->n_norm], 0, sizeof *op);
	if (strcmp(type, "Prepend") == 0) {
		const json_t *p = json_object_get(o, "prepend");
		if (!json_is_string(p))
			return qc_seterr(QC_EFORMAT, "Prepend normalizer without text in '%s'", t->name);
		op->type = NORM_PREPEND;
		QC_TRY(copy_str(json_string_value(p), json_string_length(p), &op->a, &op->alen));
	} else if (strcmp(type, "Replace") == 0) {
		const char *pat;
		size_t plen;
		int literal;
		QC_TRY(jpattern(t, json_object_get(o, "pattern"), &pat, &plen, &literal, "Replace"));
		const json_t *c = json_object_get(o, "content");
		if (!json_is_string(c))
			return qc_seterr(QC_EFORMAT, "Replace normalizer without content in '%s'", t->name);
		op->type = NORM_REPLACE;
		t->n_norm++;   /* counted now so that free() sees what was allocated */
		QC_TRY(copy_str(json_string_value(c), json_string_length(c), &op->b, &op->blen));
		if (literal && plen > 0)
			return copy_str(pat, plen, &op->a, &op->alen);
		return rx_compile(&op->re, pat, plen, literal, "Replace normalizer");
	} else if (strcmp(type, "NFC") == 0 || strcmp(type, "NFKC") == 0 || strcmp(type, "NFD") == 0 ||
	           strcmp(type, "NFKD") == 0 || strcmp(type, "Lowercase") == 0 ||
	           strcmp(type, "StripAccents") == 0) {
		op->type = NORM_UNICODE;
		op->form = strcmp(type, "NFC") == 0    ? QC_UNORM_NFC
		           : strcmp(type, "NFD") == 0  ? QC_UNORM_NFD
		           : strcmp(type, "NFKC") == 0 ? QC_UNORM_NFKC
		           : strcmp(type, "NFKD") == 0 ? QC_UNORM_NFKD
		           : strcmp(type, "Lowercase") == 0 ? QC_UNORM_LOWER
		                                            : QC_UNORM_STRIP_MARKS;
	} else if (strcmp(type, "Strip") == 0) {
		op->type = NORM_STRIP;
		op->left = jbool(o, "strip_left", 1);
		op->right = jbool(o, "strip_right", 1);
	} else {
		return qc_seterr(QC_EUNSUPPORTED, "unsupported normalizer '%s' in '%s'", type, t->name);
	}
	t->n_norm++;
	return 0;
}

/* Replace every non-overlapping occurrence, left to right. */
static int replace_all(const char *s, size_t n, const norm_op *op, rx *re, buf *out)
{
	out->n = 0;
	QC_TRY(buf_reserve(out, n + 1));
	size_t pos = 0;
	while (pos < n) {
		size_t ms, me;
		if (re) {
			if (!rx_next(re, s, n, pos, &ms, &me))
				break;
		} else {
			const char *f = memmem(s + pos, n - pos, op->a, op->alen);
			if (!f)
				break;
			ms = (size_t)(f - s);
			me = ms + op->alen;
		}
		QC_TRY(buf_add(out, s + pos, ms - pos));
		QC_TRY(buf_add(out, op->b, op->blen));
		pos = me;
	}
	QC_TRY(buf_add(out, s + pos, n - pos));
	return 0;
}

/* SentencePiece's Normalizer::Normalize with the identity rule (no
 * charsmap): bytes that are not valid UTF-8 become U+FFFD one byte at a
 * time; with remove_extra_whitespaces, leading and trailing spaces go and
 * runs of spaces become one; the dummy prefix (U+2581, or ' ' without
 * escape_whitespaces) goes first on non-empty text; with escape_whitespaces
 * every ' ' becomes U+2581. Only U+0020 is a space to it. */
static int spm_normalize(const norm_op *op, const char *s, size_t n, int first, buf *out)
{
	const char *mark = SPACE_MARK;
	out->n = 0;
	QC_TRY(buf_reserve(out, 3 * n + 4));
	size_t i = 0;
	if (op->remove_ws)
		while (i < n && s[i] == ' ')
			i++;
	if (i == n)
		return 0;   /* empty, or only spaces to remove: nothing at all */
	if (op->dummy == PREPEND_ALWAYS || (op->dummy == PREPEND_FIRST && first))
		QC_TRY(op->escape_ws ? buf_add(out, mark, 3) : buf_add(out, " ", 1));
	int prev_space = op->remove_ws;
	while (i < n) {
		uint32_t cp;
		size_t l = utf8_next((const unsigned char *)s + i, n - i, &cp);
		if (cp == UINT32_MAX) {
			QC_TRY(buf_add(out, "\xef\xbf\xbd", 3));
			prev_space = 0;
		} else if (cp == ' ') {
			if (!(op->remove_ws && prev_space))
				QC_TRY(op->escape_ws ? buf_add(out, mark, 3) : buf_add(out, " ", 1));
			prev_space = op->remove_ws;
		} else {
			QC_TRY(buf_add(out, s + i, l));
			prev_space = 0;
		}
		i += l;
	}
	if (op->remove_ws) {
		const char *sp = op->escape_ws ? mark : " ";
		size_t sl = op->escape_ws ? 3 : 1;
		while (out->n >= sl && memcmp(out->p + out->n - sl, sp, sl) == 0)
			out->n -= sl;
		out->p[out->n] = 0;
	}
	return 0;
}

/* Apply the normalizer to s[0..n), which starts the text when first; the
 * result is left in t->nbuf (t->wbuf is the scratch the ops alternate with). */
static int normalize(qc_tok *t, const char *s, size_t n, int first)
{
	buf *out = &t->nbuf, *tmp = &t->wbuf;
	out->n = 0;
	QC_TRY(buf_add(out, s, n));
	for (size_t i = 0; i < t->n_norm; i++) {
		norm_op *op = &t->norm[i];
		tmp->n = 0;
		switch (op->type) {
		case NORM_PREPEND:
			if (out->n == 0)
				continue;   /* tokenizers prepends only to non-empty text */
			QC_TRY(buf_add(tmp, op->a, op->alen));
			QC_TRY(buf_add(tmp, out->p, out->n));
			break;
		case NORM_REPLACE:
			QC_TRY(replace_all(out->p, out->n, op, op->re.code ? &op->re : NULL, tmp));
			break;
		case NORM_UNICODE: {
			char *u;
			size_t ul;
			QC_TRY((t->reference ? qc_unorm_ref : qc_unorm)(op->form, out->p, out->n, &u, &ul));
			int rc = buf_add(tmp, u, ul);
			free(u);
			QC_TRY(rc);
			break;
		}
		case NORM_SPM:
			QC_TRY(spm_normalize(op, out->p, out->n, first, tmp));
			break;
		case NORM_STRIP: {
			size_t a = 0, b = out->n;
			uint32_t cp;
			while (op->left && a < b) {
				size_t l = utf8_next((unsigned char *)out->p + a, b - a, &cp);
				if (!is_uspace(cp))
					break;
				a += l;
			}
			while (op->right && b > a) {
				size_t k = b - 1;
				while (k > a && ((unsigned char)out->p[k] & 0xC0) == 0x80)
					k--;
				utf8_next((unsigned char *)out->p + k, b - k, &cp);
				if (!is_uspace(cp))
					break;
				b = k;
			}
			QC_TRY(buf_add(tmp, out->p + a, b - a));
			break;
		}
		}
		buf sw = *out;
		*out = *tmp;
		*tmp = sw;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* pre-tokenizer                                                             */

/* GPT-2's split regex, what ByteLevel uses with use_regex: true. */
static const char GPT2_RE[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* tokenizers' is_punc: ASCII punctuation (which includes symbols such as
 * $ + < = > ^ ` | ~) or a Unicode P* character. */
static const char PUNCT_RE[] = "[\\p{P}\\x21-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7E]";
/* The Whitespace pre-tokenizer's regex, \w+|[^\w\s]+, spelled out with the
 * classes the Rust regex crate gives \w (Alphabetic, M, Nd, Pc,
 * Join_Control) and \s (White_Space): PCRE2's own \w and \s differ (\w takes
 * all of N, \s takes U+180E). */
#define RUST_W "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}"
static const char WS_RE[] = "[" RUST_W "]+|[^" RUST_W "\\p{White_Space}]+";
/* \w as single_word tests it (tokenizers' added_vocabulary.rs, Rust regex) */
static const char WORD_RE[] = "[" RUST_W "]";
/* char::is_whitespace, which WhitespaceSplit and BertPreTokenizer cut at */
static const char SPACE_RE[] = "\\p{White_Space}";

/* Whether a ByteLevel step comes before step n_pre. */
static int after_bytelevel(const qc_tok *t)
{
	for (size_t i = 0; i < t->n_pre; i++)
		if (t->pre[i].type == PRE_BYTELEVEL)
			return 1;
	return 0;
}

static int pre_step(qc_tok *t, const json_t *o, const char *type)
{
	/* Steps after ByteLevel see its mapped characters (encode_words). The
	 * words are matched against the vocabulary as raw bytes, so a step that
	 * adds characters outside the byte map cannot follow it. */
	if ((strcmp(type, "Metaspace") == 0 || strcmp(type, "ByteLevel") == 0) && after_bytelevel(t))
		return qc_seterr(QC_EUNSUPPORTED,
		                 "unsupported pre-tokenizer '%s' after ByteLevel in '%s'", type, t->name);
	if (strcmp(type, "BertPreTokenizer") == 0) {
		/* tokenizers' bert.rs: cut at whitespace (removed), then isolate
		 * each punctuation character (the same is_punc as Punctuation) */
		json_t *ws = json_pack("{s:s}", "type", "WhitespaceSplit");
		json_t *pu = json_pack("{s:s, s:s}", "type", "Punctuation", "behavior", "Isolated");
		int rc = ws && pu ? 0 : qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
		if (rc == 0)
			rc = pre_step(t, ws, "WhitespaceSplit");
		if (rc == 0)
			rc = pre_step(t, pu, "Punctuation");
		json_decref(ws);
		json_decref(pu);
		return rc;
	}
	QC_TRY(qc_grow((void **)&t->pre, &t->cap_pre, t->n_pre + 1, sizeof *t->pre));
	pre_op *op = memset(&t->pre[t->n_pre++], 0, sizeof *op);
	if (strcmp(type, "Split") == 0) {
		const char *pat;
		size_t plen;
		int literal;
		QC_TRY(jpattern(t, json_object_get(o, "pattern"), &pat, &plen, &literal, "Split"));
		op->type = PRE_SPLIT;
		QC_TRY(parse_behavior(t, o, BEH_ISOLATED, &op->beh));
		op->invert = jbool(o, "invert", 0);
		if (plen == 0)
			return qc_seterr(QC_EFORMAT, "empty Split pattern in '%s'", t->name);
		return rx_compile(&op->re, pat, plen, literal, "Split pre-tokenizer");
	}
	if (strcmp(type, "ByteLevel") == 0) {
		op->type = PRE_BYTELEVEL;
		op->add_prefix_space = jbool(o, "add_prefix_space", 1);
		op->use_regex = jbool(o, "use_regex", 1);
		t->kind = QC_TOK_BYTE_LEVEL;
		if (op->use_regex)
			return rx_compile(&op->re, GPT2_RE, sizeof GPT2_RE - 1, 0, "ByteLevel");
		return 0;
	}
	if (strcmp(type, "Metaspace") == 0) {
		op->type = PRE_METASPACE;
		QC_TRY(metaspace_repl(t, o, op->repl, &op->repl_len));
		QC_TRY(parse_scheme(t, o, &op->scheme));
		op->split = jbool(o, "split", 1);
		return 0;
	}
	if (strcmp(type, "Digits") == 0) {
		op->type = PRE_SPLIT;
		op->beh = jbool(o, "individual_digits", 0) ? BEH_ISOLATED : BEH_CONTIGUOUS;
		return rx_compile(&op->re, "\\p{N}", 5, 0, "Digits");
	}
	if (strcmp(type, "Punctuation") == 0) {
		op->type = PRE_SPLIT;
		QC_TRY(parse_behavior(t, o, BEH_ISOLATED, &op->beh));
		return rx_compile(&op->re, PUNCT_RE, sizeof PUNCT_RE - 1, 0, "Punctuation");
	}
	if (strcmp(type, "Whitespace") == 0) {
		op->type = PRE_SPLIT;
		op->beh = BEH_REMOVED;
		op->invert = 1;
		return rx_compile(&op->re, WS_RE, sizeof WS_RE - 1, 0, "Whitespace");
	}
	if (strcmp(type, "WhitespaceSplit") == 0) {
		op->type = PRE_SPLIT;
		op->beh = BEH_REMOVED;
		return rx_compile(&op->re, SPACE_RE, sizeof SPACE_RE - 1, 0, "WhitespaceSplit");
	}
	if (strcmp(type, "FixedLength") == 0) {
		/* tokenizers' fixed_length.rs: pieces of `length` characters */
		const json_t *l = json_object_get(o, "length");
		json_int_t v = l ? (json_is_integer(l) ? json_integer_value(l) : -1) : 5;
		if (v <= 0 || v > (1 << 20))
			return qc_seterr(QC_EFORMAT, "FixedLength length must be 1 to 2^20 in '%s'", t->name);
		op->type = PRE_FIXED;
		op->length = (size_t)v;
		return 0;
	}
	if (strcmp(type, "CharDelimiterSplit") == 0) {
		/* tokenizers' delimiter.rs: split at the one character, removed */
		const char *d = jstr(o, "delimiter");
		uint32_t cp;
		if (!d || !*d || utf8_next((const unsigned char *)d, strlen(d), &cp) != strlen(d))
			return qc_seterr(QC_EFORMAT, "CharDelimiterSplit needs one delimiter character in '%s'",
			                 t->name);
		op->type = PRE_SPLIT;
		op->beh = BEH_REMOVED;
		return rx_compile(&op->re, d, strlen(d), 1, "CharDelimiterSplit");
	}
	t->n_pre--;
	return qc_seterr(QC_EUNSUPPORTED, "unsupported pre-tokenizer '%s' in '%s'", type, t->name);
}

/* ------------------------------------------------------------------------ */
/* decoder                                                                   */

static int dec_step(qc_tok *t, const json_t *o, const char *type)
{
	QC_TRY(qc_grow((void **)&t->dec, &t->cap_dec, t->n_dec + 1, sizeof *t->dec));
	dec_op *op = memset(&t->dec[t->n_dec], 0, sizeof *op);
	if (strcmp(type, "ByteLevel") == 0) {
		op->type = DEC_BYTELEVEL;
	} else if (strcmp(type, "ByteFallback") == 0) {
		op->type = DEC_BYTEFALLBACK;
	} else if (strcmp(type, "Fuse") == 0) {
		op->type = DEC_FUSE;
	} else if (strcmp(type, "Metaspace") == 0) {
		char r[8];
		size_t rl;
		op->type = DEC_METASPACE;
		QC_TRY(metaspace_repl(t, o, r, &rl));
		QC_TRY(parse_scheme(t, o, &op->scheme));
		QC_TRY(copy_str(r, rl, &op->a, &op->alen));
	} else if (strcmp(type, "Replace") == 0) {
		const char *pat;
		size_t plen;
		int literal;
		const json_t *c = json_object_get(o, "content");
		QC_TRY(jpattern(t, json_object_get(o, "pattern"), &pat, &plen, &literal, "Replace"));
		if (!literal || plen == 0 || !json_is_string(c)) {
			/* decoding is only for inspection: record it, fail in decode */
			if (!t->dec_unsupported && !(t->dec_unsupported = strdup("Replace (regex)")))
				return qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
			return 0;
		}
		op->type = DEC_REPLACE;
		t->n_dec++;   /* counted now so that free() sees what was allocated */
		QC_TRY(copy_str(pat, plen, &op->a, &op->alen));
		return copy_str(json_string_value(c), json_string_length(c), &op->b, &op->blen);
	} else if (strcmp(type, "Strip") == 0) {
		const char *c = jstr(o, "content");
		op->type = DEC_STRIP;
		if (!c)
			c = " ";
		const json_t *s = json_object_get(o, "start"), *e = json_object_get(o, "stop");
		json_int_t a = json_is_integer(s) ? json_integer_value(s) : 0;
		json_int_t b = json_is_integer(e) ? json_integer_value(e) : 0;
		if (a < 0 || b < 0 || a > 1024 || b > 1024)
			return qc_seterr(QC_EFORMAT, "bad Strip decoder counts in '%s'", t->name);
		op->start = (int)a;
		op->stop = (int)b;
		QC_TRY(copy_str(c, strlen(c), &op->a, &op->alen));
	} else {
		if (!t->dec_unsupported && !(t->dec_unsupported = strdup(type)))
			return qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
		return 0;
	}
	t->n_dec++;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* added tokens                                                              */

static int matcher_add(matcher *m, const char *s, size_t n, int32_t idx)
{
	if (n == 0)
		return 0;   /* tokenizers ignores empty added tokens */
	QC_TRY(qc_strmap_put(&m->map, s, n, idx));
	unsigned c = (unsigned char)s[0];
	for (int i = 0; i < m->nlens[c]; i++)
		if (m->lens[c][i] == n)
			return 0;
	uint32_t *l = realloc(m->lens[c], (size_t)(m->nlens[c] + 1) * sizeof *l);
	if (!l)
		return qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
	/* keep the lengths sorted longest first: the first hit is the longest */
	int i = m->nlens[c];
	while (i > 0 && l[i - 1] < n) {
		l[i] = l[i - 1];
		i--;
	}
	l[i] = (uint32_t)n;
	m->lens[c] = l;
	m->nlens[c]++;
	m->any = 1;
	return 0;
}

static void matcher_free(matcher *m)
{
	qc_strmap_free(&m->map);
	for (int c = 0; c < 256; c++)
		free(m->lens[c]);
	memset(m, 0, sizeof *m);
}

/* Leftmost-longest match in s[pos..n): 1 with [*ms, *me) and the added
 * token's index, or 0. */
static int matcher_next(const matcher *m, const char *s, size_t n, size_t pos, size_t *ms,
                        size_t *me, int32_t *idx)
{
	for (size_t i = pos; i < n; i++) {
		unsigned c = (unsigned char)s[i];
		int k = m->nlens[c];
		for (int j = 0; j < k; j++) {
			size_t l = m->lens[c][j];
			if (l > n - i)
				continue;
			int32_t v = qc_strmap_get(&m->map, s + i, l);
			if (v >= 0) {
				*ms = i;
				*me = i + l;
				*idx = v;
				return 1;
			}
		}
	}
	return 0;
}

/* \w as the Rust regex crate means it (Unicode word characters: RUST_W),
 * for single_word; cp is the character at s[0..len). */
static int is_word_char(qc_tok *t, const char *s, size_t len, uint32_t cp)
{
	if (cp == UINT32_MAX)
		return 0;
	if (cp < 0x80)
		return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
		       cp == '_';
	return pcre2_match(t->rx_word.code, (PCRE2_SPTR)s, len, 0, PCRE2_ANCHORED, t->rx_word.md,
	                   t->rx_word.mc) >= 0;
}

/* Start of the character that ends at s[end). */
static size_t char_start_before(const char *s, size_t end)
{
	size_t k = end - 1;
	size_t lim = end >= 4 ? end - 4 : 0;
	while (k > lim && ((unsigned char)s[k] & 0xC0) == 0x80)
		k--;
	uint32_t cp;
	/* a stray continuation byte is a character of its own */
	if (utf8_next((const unsigned char *)s + k, end - k, &cp) != end - k)
		return end - 1;
	return k;
}

static int parse_added(qc_tok *t, const json_t *list)
{
	if (!list || json_is_null(list))
		return 0;
	if (!json_is_array(list))
		return qc_seterr(QC_EFORMAT, "added_tokens is not a list in '%s'", t->name);
	size_t n = json_array_size(list);
	t->added = calloc(n ? n : 1, sizeof *t->added);
	if (!t->added)
		return qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
	for (size_t i = 0; i < n; i++) {
		const json_t *o = json_array_get(list, i);
		const json_t *id = json_object_get(o, "id"), *c = json_object_get(o, "content");
		if (!json_is_integer(id) || !json_is_string(c) || json_integer_value(id) < 0 ||
		    json_integer_value(id) >= MAX_ID)
			return qc_seterr(QC_EFORMAT, "malformed added token %zu in '%s'", i, t->name);
		added_tok *a = &t->added[t->n_added++];
		a->id = (int32_t)json_integer_value(id);
		a->special = (unsigned char)jbool(o, "special", 0);
		a->lstrip = (unsigned char)jbool(o, "lstrip", 0);
		a->rstrip = (unsigned char)jbool(o, "rstrip", 0);
		a->single_word = (unsigned char)jbool(o, "single_word", 0);
		a->normalized = (unsigned char)jbool(o, "normalized", !a->special);
		size_t len = json_string_length(c);
		if (t->str.n + len + 1 >= UINT32_MAX)
			return qc_seterr(QC_EFORMAT, "tokenizer strings exceed 4 GB in '%s'", t->name);
		a->off = (uint32_t)t->str.n;
		a->len = (uint32_t)len;
		QC_TRY(buf_add(&t->str, json_string_value(c), len));
		t->str.n++;
	}
	return 0;
}

/* After the vocabulary and normalizer are known: the id table entries of
 * added tokens and the two matchers. */
static int index_added(qc_tok *t)
{
	for (size_t i = 0; i < t->n_added; i++) {
		added_tok *a = &t->added[i];
		idinfo *d = &t->ids[a->id];
		d->off = a->off;
		d->len = a->len;
		d->kind = a->special ? QC_TOK_ID_SPECIAL : QC_TOK_ID_ADDED;
		const char *s = t->str.p + a->off;
		QC_TRY(qc_strmap_put(&t->addmap, s, a->len, a->id));
		if (a->verbatim) {
			QC_TRY(matcher_add(&t->m_norm, s, a->len, (int32_t)i));
		} else if (!a->normalized) {
			QC_TRY(matcher_add(&t->m_raw, s, a->len, (int32_t)i));
		} else {
			/* matched against normalized text, so normalize the content too */
			QC_TRY(normalize(t, s, a->len, 1));
			QC_TRY(matcher_add(&t->m_norm, t->nbuf.p, t->nbuf.n, (int32_t)i));
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* model                                                                     */

static int vocab_max_id(const qc_tok *t, const json_t *vocab, const json_t *added, int64_t *max)
{
	const char *k;
	size_t kl;
	json_t *v;
	*max = -1;
	json_object_keylen_foreach((json_t *)vocab, k, kl, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_ID)
			return qc_seterr(QC_EFORMAT, "bad id for token '%.*s' in '%s'", (int)(kl > 64 ? 64 : kl),
			                 k, t->name);
		if (json_integer_value(v) > *max)
			*max = json_integer_value(v);
	}
	size_t i;
	json_array_foreach(added, i, v) {
		json_int_t id = json_integer_value(json_object_get(v, "id"));
		if (id > *max && id < MAX_ID)
			*max = id;
	}
	return 0;
}

static int add_vocab(qc_tok *t, const json_t *vocab)
{
	const char *k;
	size_t kl;
	json_t *v;
	buf raw = { 0 };
	int rc = 0;
	json_object_keylen_foreach((json_t *)vocab, k, kl, v) {
		int32_t id = (int32_t)json_integer_value(v);
		if ((rc = qc_strmap_put(&t->vocab, k, kl, id)) < 0)
			goto out;
		idinfo *d = &t->ids[id];
		if (d->len != UINT32_MAX)
			continue;   /* two spellings for one id: keep the first */
		if (t->str.n + kl + 1 >= UINT32_MAX) {
			rc = qc_seterr(QC_EFORMAT, "tokenizer strings exceed 4 GB in '%s'", t->name);
			goto out;
		}
		d->off = (uint32_t)t->str.n;
		d->len = (uint32_t)kl;
		d->kind = QC_TOK_ID_NORMAL;
		if ((rc = buf_add(&t->str, k, kl)) < 0)
			goto out;
		t->str.n++;
		if (t->kind != QC_TOK_BYTE_LEVEL)
			continue;
		rc = bytelevel_to_raw(k, kl, &raw);
		if (rc < 0 && rc != -1)
			goto out;
		if (rc == -1) {
			rc = 0;    /* not a byte-level spelling: no word can produce it */
			continue;
		}
		d->roff = (uint32_t)t->raw.n;
		d->rlen = (uint32_t)raw.n;
		if ((rc = buf_add(&t->raw, raw.p, raw.n)) < 0 || (rc = qc_strmap_put(&t->vraw, raw.p, raw.n, id)) < 0)
			goto out;
	}
out:
	buf_free(&raw);
	return rc;
}

/* Split a merge entry into its two tokens: "a b" (exactly one space, as
 * tokenizers requires) or ["a", "b"]. */
static int merge_parts(const qc_tok *t, const json_t *e, size_t i, const char **a, size_t *al,
                       const char **b, size_t *bl)
{
	if (json_is_string(e)) {
		const char *s = json_string_value(e);
		size_t n = json_string_length(e);
		const char *sp = memchr(s, ' ', n);
		if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp - s) - 1))
			return qc_seterr(QC_EFORMAT, "merge %zu is not two tokens in '%s'", i, t->name);
		*a = s;
		*al = (size_t)(sp - s);
		*b = sp + 1;
		*bl = n - *al - 1;
		return 0;
	}
	if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
	    json_is_string(json_array_get(e, 1))) {
		*a = json_string_value(json_array_get(e, 0));
		*al = json_string_length(json_array_get(e, 0));
		*b = json_string_value(json_array_get(e, 1));
		*bl = json_string_length(json_array_get(e, 1));
		return 0;
	}
	return qc_seterr(QC_EFORMAT, "merge %zu is not two tokens in '%s'", i, t->name);
}

static int add_merges(qc_tok *t, const json_t *merges)
{
	if (!merges || json_is_null(merges))
		merges = NULL;
	else if (!json_is_array(merges))
		return qc_seterr(QC_EFORMAT, "model merges is not a list in '%s'", t->name);
	size_t n = merges ? json_array_size(merges) : 0;
	if (n >= (size_t)INT32_MAX)
		return qc_seterr(QC_EFORMAT, "too many merges in '%s'", t->name);
	QC_TRY(pm_init(&t->merges, n));
	buf m = { 0 };
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		const char *a = NULL, *b = NULL;
		size_t al = 0, bl = 0;
		if ((rc = merge_parts(t, json_array_get(merges, i), i, &a, &al, &b, &bl)) < 0)
			break;
		int32_t ia = qc_strmap_get(&t->vocab, a, al), ib = qc_strmap_get(&t->vocab, b, bl);
		if (ia < 0 || ib < 0) {
			rc = qc_seterr(QC_EFORMAT, "merge %zu uses '%.*s', which is not in the vocabulary of '%s'",
			               i, (int)(ia < 0 ? al : bl), ia < 0 ? a : b, t->name);
			break;
		}
		/* the merged token drops the right part's continuing-subword prefix */
		size_t cut = t->cont_len && bl >= t->cont_len ? t->cont_len : 0;
		m.n = 0;
		if ((rc = buf_add(&m, a, al)) < 0 || (rc = buf_add(&m, b + cut, bl - cut)) < 0)
			break;
		int32_t id = qc_strmap_get(&t->vocab, m.p, m.n);
		if (id < 0) {
			rc = qc_seterr(QC_EFORMAT, "merge %zu gives '%.*s', which is not in the vocabulary of '%s'",
			               i, (int)(m.n > 64 ? 64 : m.n), m.p, t->name);
			break;
		}
		pm_put(&t->merges, ia, ib, (int32_t)i, id);
	}
	buf_free(&m);
	return rc;
}

static int parse_model(qc_tok *t, const json_t *model, const json_t *added)
{
	if (!json_is_object(model))
		return qc_seterr(QC_EFORMAT, "no model in '%s'", t->name);
	const char *type = jstr(model, "type");
	if (!type && json_object_get(model, "merges"))
		type = "BPE";   /* files from before the type tag */
	if (!type)
		return qc_seterr(QC_EFORMAT, "model without a type in '%s'", t->name);
	if (strcmp(type, "BPE") != 0)
		return qc_seterr(QC_EUNSUPPORTED,
		                 "unsupported tokenizer model '%s' in '%s' (only BPE is implemented)", type,
		                 t->name);
	const json_t *dropout = json_object_get(model, "dropout");
	if (json_is_number(dropout) && json_number_value(dropout) > 0)
		return qc_seterr(QC_EUNSUPPORTED, "unsupported BPE dropout in '%s'", t->name);
	const json_t *vocab = json_object_get(model, "vocab");
	if (!json_is_object(vocab))
		return qc_seterr(QC_EFORMAT, "model vocab is not an object in '%s'", t->name);
	t->byte_fallback = jbool(model, "byte_fallback", 0);
	t->fuse_unk = jbool(model, "fuse_unk", 0);
	t->ignore_merges = jbool(model, "ignore_merges", 0);
	const char *p = jstr(model, "continuing_subword_prefix"), *s = jstr(model, "end_of_word_suffix");
	if ((p && *p) || (s && *s)) {
		if (t->kind == QC_TOK_BYTE_LEVEL)
			return qc_seterr(QC_EUNSUPPORTED,
			                 "unsupported subword prefix/suffix with ByteLevel in '%s'", t->name);
		if ((p && *p && !(t->cont_prefix = strdup(p))) || (s && *s && !(t->eow_suffix = strdup(s))))
			return qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
		t->cont_len = t->cont_prefix ? strlen(t->cont_prefix) : 0;
		t->eow_len = t->eow_suffix ? strlen(t->eow_suffix) : 0;
	}

	int64_t max;
	QC_TRY(vocab_max_id(t, vocab, added, &max));
	if (max < 0)
		return qc_seterr(QC_EFORMAT, "empty vocabulary in '%s'", t->name);
	t->n_ids = max + 1;
	t->ids = malloc((size_t)t->n_ids * sizeof *t->ids);
	if (!t->ids)
		return qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
	for (int64_t i = 0; i < t->n_ids; i++)
		t->ids[i] = (idinfo){ 0, UINT32_MAX, 0, UINT32_MAX, QC_TOK_ID_NONE };
	QC_TRY(add_vocab(t, vocab));
	QC_TRY(add_merges(t, json_object_get(model, "merges")));

	for (int b = 0; b < 256; b++) {
		char fb[8];
		snprintf(fb, sizeof fb, "<0x%02X>", b);
		t->fallback_id[b] = qc_strmap_get(&t->vocab, fb, 6);
		char c = (char)b;
		t->byte_id[b] = t->kind == QC_TOK_BYTE_LEVEL ? qc_strmap_get(&t->vraw, &c, 1) : -1;
	}
	const char *unk = jstr(model, "unk_token");
	t->unk_id = unk ? qc_strmap_get(&t->vocab, unk, strlen(unk)) : -1;
	check_spm_split(t);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* post-processor and tokenizer_config                                       */

static int push_special(qc_tok *t, int32_t *arr, int *n, int32_t id)
{
	if (*n >= 4)
		return qc_seterr(QC_EUNSUPPORTED, "post-processor adds too many tokens in '%s'", t->name);
	if (id < 0 || id >= t->n_ids)
		return qc_seterr(QC_EFORMAT, "post-processor names unknown token id %d in '%s'", (int)id,
		                 t->name);
	arr[(*n)++] = id;
	return 0;
}

static int post_step(qc_tok *t, const json_t *o, const char *type)
{
	if (strcmp(type, "ByteLevel") == 0)
		return 0;   /* only adjusts offsets */
	if (strcmp(type, "TemplateProcessing") == 0) {
		const json_t *single = json_object_get(o, "single"), *sp = json_object_get(o, "special_tokens");
		if (!json_is_array(single))
			return qc_seterr(QC_EFORMAT, "TemplateProcessing without 'single' in '%s'", t->name);
		int seen = 0;
		size_t i;
		const json_t *e;
		json_array_foreach(single, i, e) {
			if (json_object_get(e, "Sequence")) {
				seen = 1;
				continue;
			}
			const char *name = jstr(json_object_get(e, "SpecialToken"), "id");
			const json_t *ids = json_object_get(json_object_get(sp, name ? name : ""), "ids");
			if (!name || !json_is_array(ids))
				return qc_seterr(QC_EFORMAT, "TemplateProcessing names an unknown special token in '%s'",
				                 t->name);
			size_t j;
			const json_t *id;
			json_array_foreach(ids, j, id) {
				int32_t v = json_is_integer(id) ? (int32_t)json_integer_value(id) : -1;
				if (seen)
					QC_TRY(push_special(t, t->suffix, &t->n_suffix, v));
				else
					QC_TRY(push_special(t, t->prefix, &t->n_prefix, v));
			}
		}
		return 0;
	}
	if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
		const json_t *cls = json_array_get(json_object_get(o, "cls"), 1);
		const json_t *sep = json_array_get(json_object_get(o, "sep"), 1);
		if (!json_is_integer(cls) || !json_is_integer(sep))
			return qc_seterr(QC_EFORMAT, "%s without cls/sep ids in '%s'", type, t->name);
		QC_TRY(push_special(t, t->prefix, &t->n_prefix, (int32_t)json_integer_value(cls)));
		return push_special(t, t->suffix, &t->n_suffix, (int32_t)json_integer_value(sep));
	}
	return qc_seterr(QC_EUNSUPPORTED, "unsupported post-processor '%s' in '%s'", type, t->name);
}

/* bos_token / eos_token: a string or an AddedToken object {"content": ...} */
static int32_t config_token(const qc_tok *t, const json_t *cfg, const char *key)
{
	const json_t *v = json_object_get(cfg, key);
	if (json_is_object(v))
		v = json_object_get(v, "content");
	if (!json_is_string(v))
		return -1;
	return qc_tok_find(t, json_string_value(v), json_string_length(v));
}

/* add_bos_token / add_eos_token (key), when the config has it, replaces the
 * template's prefix / suffix arr[*n] by the one token id (or by nothing). */
static int config_add(const qc_tok *t, const json_t *cfg, const char *key, const char *what,
                      int32_t id, int32_t *arr, int *n)
{
	const json_t *v = json_object_get(cfg, key);
	if (!json_is_boolean(v))
		return 0;
	*n = 0;
	if (json_is_false(v))
		return 0;
	if (id < 0)
		return qc_seterr(QC_EFORMAT, "%s is set but the %s token is unknown in '%s'", key, what,
		                 t->name);
	arr[(*n)++] = id;
	return 0;
}

static int apply_config(qc_tok *t, const json_t *cfg)
{
	t->bos = config_token(t, cfg, "bos_token");
	t->eos = config_token(t, cfg, "eos_token");
	if (t->bos < 0 && t->n_prefix > 0)
		t->bos = t->prefix[0];
	if (t->eos < 0 && t->n_suffix > 0)
		t->eos = t->suffix[t->n_suffix - 1];
	/* transformers' Llama-family tokenizers rebuild the template from these */
	QC_TRY(config_add(t, cfg, "add_bos_token", "BOS", t->bos, t->prefix, &t->n_prefix));
	QC_TRY(config_add(t, cfg, "add_eos_token", "EOS", t->eos, t->suffix, &t->n_suffix));
	t->adds_bos = t->bos >= 0 && t->n_prefix > 0 && t->prefix[0] == t->bos;
	t->adds_eos = t->eos >= 0 && t->n_suffix > 0 && t->suffix[t->n_suffix - 1] == t->eos;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* load and free                                                             */

void qc_tok_free(qc_tok *t)
{
	if (!t)
		return;
	free(t->name);
	buf_free(&t->str);
	buf_free(&t->raw);
	free(t->ids);
	qc_strmap_free(&t->vocab);
	qc_strmap_free(&t->vraw);
	free(t->merges.s);
	free(t->cont_prefix);
	free(t->eow_suffix);
	free(t->added);
	qc_strmap_free(&t->addmap);
	matcher_free(&t->m_raw);
	matcher_free(&t->m_norm);
	rx_free(&t->rx_word);
	for (size_t i = 0; i < t->n_norm; i++) {
		free(t->norm[i].a);
		free(t->norm[i].b);
		rx_free(&t->norm[i].re);
	}
	free(t->norm);
	for (size_t i = 0; i < t->n_pre; i++)
		rx_free(&t->pre[i].re);
	free(t->pre);
	for (size_t i = 0; i < t->n_dec; i++) {
		free(t->dec[i].a);
		free(t->dec[i].b);
	}
	free(t->dec);
	free(t->dec_unsupported);
	buf_free(&t->work);
	buf_free(&t->nbuf);
	buf_free(&t->wbuf);
	free(t->pa);
	free(t->pb);
	free(t->syms);
	free(t->heap);
	qc_strmap_free(&t->cache);
	free(t->cents);
	qc_ids_release(&t->cache_ids);
	free(t);
}

/* tokenizer_config.json, when given: *cfg NULL or an object. */
static int parse_config(const qc_tok *t, const char *config, size_t config_len, json_t **cfg)
{
	json_error_t jerr;
	*cfg = NULL;
	if (!config || !config_len)
		return 0;
	/* model_max_length is often 1e30 written as an integer, which jansson's
	 * int64 cannot hold; no integer of the config is read */
	*cfg = json_loadb(config, config_len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
	if (!*cfg || !json_is_object(*cfg)) {
		int rc = qc_seterr(QC_EFORMAT, "cannot parse the tokenizer_config of '%s': %s", t->name,
		                   *cfg ? "not a JSON object" : jerr.text);
		json_decref(*cfg);
		*cfg = NULL;
		return rc;
	}
	return 0;
}

int qc_tok_load_mem(qc_tok **out, const char *json, size_t len, const char *config,
                    size_t config_len, const char *name)
{
	json_error_t jerr;
	json_t *root = NULL, *cfg = NULL;
	int rc = 0;
	*out = NULL;
	bytelevel_init();
	qc_tok *t = calloc(1, sizeof *t);
	if (!t || !(t->name = strdup(name ? name : "tokenizer.json"))) {
		free(t);
		return qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
	}
	t->kind = QC_TOK_SENTENCEPIECE;
	t->bos = t->eos = t->unk_id = -1;
	if (len > QC_TOK_MAX_JSON) {
		rc = qc_seterr(QC_EFORMAT, "'%s' is too large (%zu bytes)", t->name, len);
		goto out;
	}
	root = json_loadb(json, len, JSON_ALLOW_NUL, &jerr);
	if (!root || !json_is_object(root)) {
		rc = qc_seterr(QC_EFORMAT, "cannot parse '%s': %s at line %d", t->name,
		               root ? "not a JSON object" : jerr.text, root ? 1 : jerr.line);
		goto out;
	}
	if ((rc = parse_config(t, config, config_len, &cfg)) < 0)
		goto out;
	const json_t *added = json_object_get(root, "added_tokens");
	if (added && !json_is_array(added) && !json_is_null(added)) {
		rc = qc_seterr(QC_EFORMAT, "added_tokens is not a list in '%s'", t->name);
		goto out;
	}
	const json_t *v;
	if ((v = json_object_get(root, "normalizer")) && !json_is_null(v) &&
	    (rc = add_steps(t, v, "normalizer", "normalizers", norm_step)) < 0)
		goto out;
	if ((v = json_object_get(root, "pre_tokenizer")) && !json_is_null(v) &&
	    (rc = add_steps(t, v, "pre-tokenizer", "pretokenizers", pre_step)) < 0)
		goto out;
	if ((v = json_object_get(root, "decoder")) && !json_is_null(v)) {
		t->has_decoder = 1;
		if ((rc = add_steps(t, v, "decoder", "decoders", dec_step)) < 0)
			goto out;
	}
	if ((rc = parse_added(t, added)) < 0 || (rc = parse_model(t, json_object_get(root, "model"), added)) < 0)
		goto out;
	if ((rc = rx_compile(&t->rx_word, WORD_RE, sizeof WORD_RE - 1, 0, "word")) < 0 ||
	    (rc = index_added(t)) < 0)
		goto out;
	if ((v = json_object_get(root, "post_processor")) && !json_is_null(v) &&
	    (rc = add_steps(t, v, "post-processor", "processors", post_step)) < 0)
		goto out;
	if ((rc = apply_config(t, cfg)) < 0)
		goto out;
	*out = t;
	t = NULL;
out:
	json_decref(root);
	json_decref(cfg);
	qc_tok_free(t);
	return rc;
}


/* ------------------------------------------------------------------------ */
/* SentencePiece model files (tokenizer.model)                               */

typedef struct score_ix {
	float score;
	int32_t id;
} score_ix;

static int cmp_score_desc(const void *a, const void *b)
{
	const score_ix *x = a, *y = b;
	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

static int is_spm_normal(const qc_spm *m, int32_t id)
{
	return id >= 0 && m->pieces[id].type == QC_SPM_NORMAL;
}

/* SentencePiece's BPE (bpe_model.cc) merges the adjacent pair whose
 * concatenation is a piece of the highest score, leftmost among equals. As
 * a merge table: every split of a normal piece into two normal pieces is a
 * merge giving that piece, ranked by the piece's score (equal scores, equal
 * rank, so the heap's position order decides as SentencePiece's does).
 * This holds when every symbol is a piece, so every character of a normal
 * piece must be one (checked: SentencePiece could otherwise merge an unknown
 * character, which the engine turns into byte tokens first). */
static int spm_merges(qc_tok *t, const qc_spm *m)
{
	score_ix *ord = malloc((size_t)m->n_pieces * sizeof *ord);
	int32_t *rank = malloc((size_t)m->n_pieces * sizeof *rank);
	int rc = 0;
	if (!ord || !rank) {
		rc = qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
		goto out;
	}
	size_t no = 0, npairs = 0;
	for (int64_t i = 0; i < m->n_pieces; i++) {
		rank[i] = -1;
		if (m->pieces[i].type != QC_SPM_NORMAL)
			continue;
		if (m->pieces[i].score != m->pieces[i].score) {
			rc = qc_seterr(QC_EFORMAT, "piece %lld has a NaN score in '%s'", (long long)i, t->name);
			goto out;
		}
		ord[no++] = (score_ix){ m->pieces[i].score, (int32_t)i };
		npairs += m->pieces[i].len;
	}
	qsort(ord, no, sizeof *ord, cmp_score_desc);
	for (size_t i = 0, r = 0; i < no; i++) {
		if (i > 0 && ord[i].score != ord[i - 1].score)
			r++;
		rank[ord[i].id] = (int32_t)r;
	}
	if ((rc = pm_init(&t->merges, npairs)) < 0)
		goto out;
	for (int64_t i = 0; i < m->n_pieces && rc == 0; i++) {
		if (rank[i] < 0)
			continue;
		const char *s = m->pieces[i].s;
		size_t n = m->pieces[i].len;
		for (size_t p = 0; p < n;) {
			uint32_t cp;
			size_t l = utf8_next((const unsigned char *)s + p, n - p, &cp);
			if (!is_spm_normal(m, qc_strmap_get(&t->vocab, s + p, l))) {
				rc = qc_seterr(QC_EUNSUPPORTED,
				               "piece %lld holds a character that is not a piece of its own in '%s'",
				               (long long)i, t->name);
				break;
			}
			p += l;
			if (p == n)
				break;
			int32_t a = qc_strmap_get(&t->vocab, s, p), b = qc_strmap_get(&t->vocab, s + p, n - p);
			if (is_spm_normal(m, a) && is_spm_normal(m, b))
				pm_put(&t->merges, a, b, rank[i], (int32_t)i);
		}
	}
out:
	free(ord);
	free(rank);
	return rc;
}

/* The pieces: id table, vocabulary, byte pieces, unk, and the control,
 * unknown and user-defined pieces as added tokens. */
static int spm_pieces(qc_tok *t, const qc_spm *m)
{
	t->n_ids = m->n_pieces;
	t->ids = malloc((size_t)t->n_ids * sizeof *t->ids);
	t->added = calloc((size_t)t->n_ids, sizeof *t->added);
	if (!t->ids || !t->added)
		return qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
	int fb = 0;
	for (int b = 0; b < 256; b++)
		t->fallback_id[b] = -1;
	for (int64_t i = 0; i < m->n_pieces; i++) {
		const qc_spm_piece *p = &m->pieces[i];
		if (p->type == QC_SPM_UNUSED || p->type < QC_SPM_NORMAL || p->type > QC_SPM_BYTE)
			return qc_seterr(QC_EUNSUPPORTED, "unsupported piece type %d (piece %lld) in '%s'", p->type,
			                 (long long)i, t->name);
		if (qc_strmap_get(&t->vocab, p->s, p->len) >= 0)
			return qc_seterr(QC_EFORMAT, "piece %lld '%.*s' is defined twice in '%s'", (long long)i,
			                 (int)(p->len > 64 ? 64 : p->len), p->s, t->name);
		QC_TRY(qc_strmap_put(&t->vocab, p->s, p->len, (int32_t)i));
		idinfo *d = &t->ids[i];
		*d = (idinfo){ (uint32_t)t->str.n, p->len, 0, UINT32_MAX, QC_TOK_ID_NORMAL };
		QC_TRY(buf_add(&t->str, p->s, p->len));
		t->str.n++;
		if (p->type == QC_SPM_BYTE) {
			int hi, lo;
			if (!m->byte_fallback)
				return qc_seterr(QC_EFORMAT, "byte piece '%s' without byte_fallback in '%s'", p->s, t->name);
			if (p->len != 6 || memcmp(p->s, "<0x", 3) != 0 || p->s[5] != '>' || (hi = hexval(p->s[3])) < 0 ||
			    (lo = hexval(p->s[4])) < 0 || (p->s[3] >= 'a' || p->s[4] >= 'a'))
				return qc_seterr(QC_EFORMAT, "bad byte piece '%s' in '%s'", p->s, t->name);
			if (t->fallback_id[hi * 16 + lo] < 0)
				fb++;
			t->fallback_id[hi * 16 + lo] = (int32_t)i;
		} else if (p->type == QC_SPM_UNKNOWN) {
			if (t->unk_id >= 0)
				return qc_seterr(QC_EFORMAT, "two unknown pieces in '%s'", t->name);
			t->unk_id = (int32_t)i;
		}
		if (p->type == QC_SPM_CONTROL || p->type == QC_SPM_UNKNOWN || p->type == QC_SPM_USER_DEFINED) {
			added_tok *a = &t->added[t->n_added++];
			*a = (added_tok){ d->off, d->len, (int32_t)i, 0, 0, 0, 0, 0, 0 };
			/* control and unknown pieces are special tokens, found in the
			 * raw text as transformers does; user-defined pieces are found
			 * in the normalized text, where SentencePiece looks for them */
			a->special = p->type != QC_SPM_USER_DEFINED;
			a->verbatim = p->type == QC_SPM_USER_DEFINED;
		}
	}
	if (t->unk_id < 0)
		return qc_seterr(QC_EFORMAT, "no unknown piece in '%s'", t->name);
	if (m->byte_fallback && fb != 256)
		return qc_seterr(QC_EFORMAT, "byte_fallback without all 256 byte pieces in '%s'", t->name);
	t->byte_fallback = m->byte_fallback;
	t->fuse_unk = 1;   /* SentencePiece merges runs of unknown pieces */
	return 0;
}

/* Decoder of a SentencePiece model, as transformers' converted Llama
 * tokenizer: U+2581 -> ' ', byte pieces to bytes, join, and the dummy
 * prefix's space taken off the front. */
static int spm_decoder(qc_tok *t, const qc_spm *m, prepend_scheme dummy)
{
	t->has_decoder = 1;
	QC_TRY(qc_grow((void **)&t->dec, &t->cap_dec, 4, sizeof *t->dec));
	memset(t->dec, 0, 4 * sizeof *t->dec);
	if (m->escape_ws) {
		t->dec[t->n_dec].type = DEC_REPLACE;
		t->n_dec++;
		QC_TRY(copy_str(SPACE_MARK, 3, &t->dec[t->n_dec - 1].a, &t->dec[t->n_dec - 1].alen));
		QC_TRY(copy_str(" ", 1, &t->dec[t->n_dec - 1].b, &t->dec[t->n_dec - 1].blen));
	}
	t->dec[t->n_dec++].type = DEC_BYTEFALLBACK;
	t->dec[t->n_dec++].type = DEC_FUSE;
	if (dummy != PREPEND_NEVER) {
		dec_op *op = &t->dec[t->n_dec++];
		op->type = DEC_STRIP;
		op->start = 1;
		return copy_str(" ", 1, &op->a, &op->alen);
	}
	return 0;
}

static int spm_build(qc_tok *t, const qc_spm *m, const json_t *cfg)
{
	static const char *const types[] = { "", "Unigram", "BPE", "Word", "Char" };
	if (m->model_type != QC_SPM_BPE)
		return qc_seterr(QC_EUNSUPPORTED, "unsupported SentencePiece model type '%s' in '%s' (only BPE is implemented)",
		                 m->model_type >= 1 && m->model_type <= 4 ? types[m->model_type] : "?", t->name);
	if (m->treat_ws_as_suffix)
		return qc_seterr(QC_EUNSUPPORTED, "unsupported treat_whitespace_as_suffix in '%s'", t->name);
	if (m->charsmap_len > 0)
		return qc_seterr(QC_EUNSUPPORTED,
		                 "unsupported SentencePiece normalization rule '%s' (a precompiled charsmap) in '%s'",
		                 m->name, t->name);
	QC_TRY(spm_pieces(t, m));
	QC_TRY(spm_merges(t, m));
	/* the dummy prefix: SentencePiece puts it before every text it
	 * normalizes; transformers' tokenizer_config may say legacy: false
	 * (before the first segment only) or add_prefix_space: false (never) */
	prepend_scheme dummy = m->add_dummy_prefix ? PREPEND_ALWAYS : PREPEND_NEVER;
	if (dummy != PREPEND_NEVER && json_is_false(json_object_get(cfg, "legacy")))
		dummy = PREPEND_FIRST;
	if (json_is_false(json_object_get(cfg, "add_prefix_space")))
		dummy = PREPEND_NEVER;
	QC_TRY(qc_grow((void **)&t->norm, &t->cap_norm, 1, sizeof *t->norm));
	memset(t->norm, 0, sizeof *t->norm);
	t->norm[0].type = NORM_SPM;
	t->norm[0].dummy = dummy;
	t->norm[0].remove_ws = m->remove_extra_ws;
	t->norm[0].escape_ws = m->escape_ws;
	t->n_norm = 1;
	QC_TRY(spm_decoder(t, m, dummy));
	QC_TRY(rx_compile(&t->rx_word, WORD_RE, sizeof WORD_RE - 1, 0, "word"));
	QC_TRY(index_added(t));
	/* BOS first, as transformers' Llama tokenizers do by default; the
	 * tokenizer_config's add_bos_token / add_eos_token decide when present */
	if (m->bos_id >= 0 && m->bos_id < t->n_ids)
		QC_TRY(push_special(t, t->prefix, &t->n_prefix, (int32_t)m->bos_id));
	if (m->eos_id >= 0 && m->eos_id < t->n_ids)
		t->eos = (int32_t)m->eos_id;
	QC_TRY(apply_config(t, cfg));
	if (t->eos < 0 && m->eos_id >= 0 && m->eos_id < t->n_ids)
		t->eos = (int32_t)m->eos_id;
	check_spm_split(t);
	return 0;
}

int qc_tok_load_spm_mem(qc_tok **out, const void *model, size_t len, const char *config,
                        size_t config_len, const char *name)
{
	json_t *cfg = NULL;
	qc_spm *m = NULL;
	int rc;
	*out = NULL;
	qc_tok *t = calloc(1, sizeof *t);
	if (!t || !(t->name = strdup(name ? name : "tokenizer.model"))) {
		free(t);
		return qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
	}
	t->kind = QC_TOK_SENTENCEPIECE;
	t->bos = t->eos = t->unk_id = -1;
	if ((rc = qc_spm_parse(&m, model, len, t->name)) < 0)
		goto out;
	if ((rc = parse_config(t, config, config_len, &cfg)) < 0 || (rc = spm_build(t, m, cfg)) < 0)
		goto out;
	*out = t;
	t = NULL;
out:
	qc_spm_free(m);
	json_decref(cfg);
	qc_tok_free(t);
	return rc;
}

/* Read a whole file (NUL-terminated); *data NULL with 0 returned when it
 * does not exist and missing_ok. */
static int read_all(const char *path, int missing_ok, char **data, size_t *len)
{
	struct stat st;
	*data = NULL;
	*len = 0;
	if (missing_ok && stat(path, &st) != 0 && errno == ENOENT)
		return 0;
	return qc_read_file(path, QC_TOK_MAX_JSON, data, len);
}

int qc_tok_load(qc_tok **out, const char *dir)
{
	size_t dl = strlen(dir);
	char *p1 = malloc(dl + 32), *p2 = malloc(dl + 32);
	char *j = NULL, *c = NULL;
	size_t jl, cl;
	int rc;
	*out = NULL;
	if (!p1 || !p2) {
		rc = qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
		goto out;
	}
	snprintf(p1, dl + 32, "%s/tokenizer.json", dir);
	snprintf(p2, dl + 32, "%s/tokenizer_config.json", dir);
	struct stat st;
	int spm = 0;
	if (stat(p1, &st) != 0 && errno == ENOENT) {
		/* no tokenizer.json: the SentencePiece model, when there is one */
		snprintf(p1, dl + 32, "%s/tokenizer.model", dir);
		spm = stat(p1, &st) == 0;
		if (!spm)
			snprintf(p1, dl + 32, "%s/tokenizer.json", dir);
	}
	if ((rc = read_all(p1, 0, &j, &jl)) < 0 || (rc = read_all(p2, 1, &c, &cl)) < 0)
		goto out;
	if (spm)
		rc = qc_tok_load_spm_mem(out, j, jl, c, c ? cl : 0, p1);
	else
		rc = qc_tok_load_mem(out, j, jl, c, c ? cl : 0, p1);
out:
	free(p1);
	free(p2);
	free(j);
	free(c);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* queries                                                                   */

qc_tok_kind qc_tok_type(const qc_tok *t) { return t->kind; }
int64_t qc_tok_vocab_size(const qc_tok *t) { return t->n_ids; }
int32_t qc_tok_bos(const qc_tok *t) { return t->bos; }
int32_t qc_tok_eos(const qc_tok *t) { return t->eos; }
int qc_tok_adds_bos(const qc_tok *t) { return t->adds_bos; }
int qc_tok_adds_eos(const qc_tok *t) { return t->adds_eos; }
const char *qc_tok_file(const qc_tok *t) { return t->name; }
void qc_tok_set_reference(qc_tok *t, int on) { t->reference = on != 0; }

qc_tok_id_kind qc_tok_id_type(const qc_tok *t, int64_t id)
{
	if (id < 0 || id >= t->n_ids)
		return QC_TOK_ID_NONE;
	return (qc_tok_id_kind)t->ids[id].kind;
}

const char *qc_tok_piece(const qc_tok *t, int64_t id, size_t *len)
{
	if (id < 0 || id >= t->n_ids || t->ids[id].len == UINT32_MAX)
		return NULL;
	if (len)
		*len = t->ids[id].len;
	return t->str.p + t->ids[id].off;
}

int32_t qc_tok_find(const qc_tok *t, const char *piece, size_t len)
{
	/* added tokens first, as tokenizers' token_to_id does */
	int32_t id = qc_strmap_get(&t->addmap, piece, len);
	return id >= 0 ? id : qc_strmap_get(&t->vocab, piece, len);
}

int qc_ids_push(qc_ids *ids, int32_t id)
{
	QC_TRY(qc_grow((void **)&ids->v, &ids->cap, ids->n + 1, sizeof *ids->v));
	ids->v[ids->n++] = id;
	return 0;
}

void qc_ids_release(qc_ids *ids)
{
	free(ids->v);
	memset(ids, 0, sizeof *ids);
}

/* ------------------------------------------------------------------------ */
/* encoding: BPE on one word                                                 */

/* Binary min-heap of candidate merges ordered by (rank, position): the
 * lowest rank merges first, and among equal ranks the leftmost. */
static inline int hless(const hent *a, const hent *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void hpush(hent *h, size_t *n, hent e)
{
	size_t i = (*n)++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!hless(&e, &h[p]))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = e;
}

static hent hpop(hent *h, size_t *n)
{
	hent top = h[0], last = h[--(*n)];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && hless(&h[c + 1], &h[c]))
			c++;
		if (!hless(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = last;
	return top;
}

/* Append a symbol, or fold an unknown into the previous unknown (fuse_unk). */
static int add_sym(qc_tok *t, size_t *n, int32_t id, int unk, int *last_unk)
{
	if (unk && t->fuse_unk && *last_unk)
		return 0;
	*last_unk = unk;
	QC_TRY(qc_grow((void **)&t->syms, &t->syms_cap, *n + 1, sizeof *t->syms));
	t->syms[*n] = (sym){ id, (int32_t)*n - 1, (int32_t)*n + 1, 1 };
	(*n)++;
	return 0;
}

/* Symbols of a word: bytes (byte-level) or characters looked up in the
 * vocabulary, with byte fallback and unk as tokenizers' BPE does. */
static int word_symbols(qc_tok *t, const char *w, size_t n, size_t *nsym)
{
	int last_unk = 0;
	*nsym = 0;
	if (t->kind == QC_TOK_BYTE_LEVEL) {
		for (size_t i = 0; i < n; i++) {
			int32_t id = t->byte_id[(unsigned char)w[i]];
			if (id >= 0)
				QC_TRY(add_sym(t, nsym, id, 0, &last_unk));
			else if (t->unk_id >= 0)
				QC_TRY(add_sym(t, nsym, t->unk_id, 1, &last_unk));
		}
		if (*nsym)
			t->syms[*nsym - 1].next = -1;
		return 0;
	}
	char key[64];
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t cl = utf8_next((const unsigned char *)w + i, n - i, &cp);
		const char *k = w + i;
		size_t kl = cl;
		if ((i > 0 && t->cont_len) || (i + cl == n && t->eow_len)) {
			size_t pl = i > 0 ? t->cont_len : 0, sl = i + cl == n ? t->eow_len : 0;
			if (pl + cl + sl > sizeof key)
				return qc_seterr(QC_EUNSUPPORTED, "subword prefix too long in '%s'", t->name);
			memcpy(key, t->cont_prefix, pl);
			memcpy(key + pl, w + i, cl);
			memcpy(key + pl + cl, t->eow_suffix, sl);
			k = key;
			kl = pl + cl + sl;
		}
		i += cl;
		int32_t id = qc_strmap_get(&t->vocab, k, kl);
		if (id >= 0) {
			QC_TRY(add_sym(t, nsym, id, 0, &last_unk));
			continue;
		}
		if (t->byte_fallback) {
			size_t j;
			for (j = 0; j < kl && t->fallback_id[(unsigned char)k[j]] >= 0; j++)
				;
			if (j == kl) {
				for (j = 0; j < kl; j++)
					QC_TRY(add_sym(t, nsym, t->fallback_id[(unsigned char)k[j]], 0, &last_unk));
				continue;
			}
		}
		if (t->unk_id >= 0)
			QC_TRY(add_sym(t, nsym, t->unk_id, 1, &last_unk));
	}
	if (*nsym)
		t->syms[*nsym - 1].next = -1;
	return 0;
}

/* Merge the symbols by rank (tokenizers' word.rs merge_all): a heap of
 * candidate pairs; an entry whose left symbol was merged away, or whose pair
 * no longer gives the same token, is stale and skipped. */
static int merge_word(qc_tok *t, size_t nsym)
{
	if (nsym < 2)
		return 0;
	QC_TRY(qc_grow((void **)&t->heap, &t->heap_cap, 2 * nsym + 2, sizeof *t->heap));
	size_t hn = 0;
	for (size_t i = 0; i + 1 < nsym; i++) {
		const pmslot *m = pm_get(&t->merges, t->syms[i].id, t->syms[i + 1].id);
		if (m)
			hpush(t->heap, &hn, (hent){ m->rank, (int32_t)i, m->id });
	}
	while (hn > 0) {
		hent top = hpop(t->heap, &hn);
		sym *s = &t->syms[top.pos];
		if (!s->alive || s->next < 0)
			continue;
		sym *r = &t->syms[s->next];
		const pmslot *m = pm_get(&t->merges, s->id, r->id);
		if (!m || m->id != top.id)
			continue;
		s->id = top.id;
		r->alive = 0;
		s->next = r->next;
		if (s->next >= 0)
			t->syms[s->next].prev = top.pos;
		/* each merge adds at most two candidates: the heap never exceeds
		 * (nsym - 1) + 2 * (nsym - 1) entries in total pushes minus pops */
		QC_TRY(qc_grow((void **)&t->heap, &t->heap_cap, hn + 2, sizeof *t->heap));
		s = &t->syms[top.pos];
		if (s->prev >= 0 && (m = pm_get(&t->merges, t->syms[s->prev].id, s->id)))
			hpush(t->heap, &hn, (hent){ m->rank, s->prev, m->id });
		if (s->next >= 0 && (m = pm_get(&t->merges, s->id, t->syms[s->next].id)))
			hpush(t->heap, &hn, (hent){ m->rank, top.pos, m->id });
	}
	return 0;
}

/* The textbook loop the heap version must agree with: find the adjacent
 * pair of lowest rank (leftmost among equals), merge it, repeat. O(n^2). */
static int merge_word_ref(qc_tok *t, size_t nsym)
{
	for (;;) {
		int32_t best = -1, best_rank = INT32_MAX, best_id = -1;
		for (int32_t i = nsym ? 0 : -1; i >= 0 && t->syms[i].next >= 0; i = t->syms[i].next) {
			const pmslot *m = pm_get(&t->merges, t->syms[i].id, t->syms[t->syms[i].next].id);
			if (m && m->rank < best_rank) {
				best = i;
				best_rank = m->rank;
				best_id = m->id;
			}
		}
		if (best < 0)
			return 0;
		sym *s = &t->syms[best], *r = &t->syms[s->next];
		s->id = best_id;
		r->alive = 0;
		s->next = r->next;
		if (s->next >= 0)
			t->syms[s->next].prev = best;
	}
}

static int cache_store(qc_tok *t, const char *w, size_t n, const int32_t *ids, size_t k)
{
	if (t->n_cents >= CACHE_MAX_ENTRIES || t->cache_ids.n + k > CACHE_MAX_IDS) {
		/* a bounded cache: dropping everything keeps it simple and the
		 * results do not depend on what was cached */
		qc_strmap_clear(&t->cache);
		t->n_cents = 0;
		t->cache_ids.n = 0;
	}
	QC_TRY(qc_grow((void **)&t->cents, &t->cents_cap, t->n_cents + 1, sizeof *t->cents));
	uint32_t off = (uint32_t)t->cache_ids.n;
	for (size_t i = 0; i < k; i++)
		QC_TRY(qc_ids_push(&t->cache_ids, ids[i]));
	QC_TRY(qc_strmap_put(&t->cache, w, n, (int32_t)t->n_cents));
	t->cents[t->n_cents++] = (cent){ off, (uint32_t)k };
	return 0;
}

static int encode_word(qc_tok *t, const char *w, size_t n, qc_ids *out)
{
	if (n == 0)
		return 0;
	int cacheable = n <= CACHE_MAX_WORD && !t->reference;
	if (cacheable) {
		int32_t c = qc_strmap_get(&t->cache, w, n);
		if (c >= 0) {
			const cent *e = &t->cents[c];
			if (e->n == 0)
				return 0;   /* a word of no ids: the id arrays may still be NULL */
			QC_TRY(qc_grow((void **)&out->v, &out->cap, out->n + e->n, sizeof *out->v));
			memcpy(out->v + out->n, t->cache_ids.v + e->off, e->n * sizeof *out->v);
			out->n += e->n;
			return 0;
		}
	}
	if (t->ignore_merges) {
		int32_t id = qc_strmap_get(t->kind == QC_TOK_BYTE_LEVEL ? &t->vraw : &t->vocab, w, n);
		if (id >= 0)
			return qc_ids_push(out, id);
	}
	size_t nsym, first = out->n;
	QC_TRY(word_symbols(t, w, n, &nsym));
	QC_TRY(t->reference ? merge_word_ref(t, nsym) : merge_word(t, nsym));
	for (int32_t i = nsym ? 0 : -1; i >= 0; i = t->syms[i].next)
		QC_TRY(qc_ids_push(out, t->syms[i].id));
	/* out->v is still NULL when the word gave no ids (no arithmetic on it) */
	if (cacheable)
		QC_TRY(cache_store(t, w, n, out->n > first ? out->v + first : NULL, out->n - first));
	return 0;
}


/* SentencePiece-style models have no pre-tokenizer: the whole normalized
 * segment is one word, and BPE on a long word is slow and never cached. When
 * no token of the vocabulary holds U+2581 after another character (checked
 * at load: true for Llama-2, Mistral, Phi-3), no merge can cross the point
 * just before a U+2581 that follows a non-U+2581 character, and merges on
 * either side do not interact, so cutting the word there gives the same ids
 * as merging it whole, faster and with cache hits. */
static int encode_piece(qc_tok *t, const char *w, size_t n, qc_ids *out)
{
	if (!t->spm_split || t->reference)
		return encode_word(t, w, n, out);
	size_t start = 0, pos = 1;
	for (;;) {
		const char *f = pos < n ? memmem(w + pos, n - pos, SPACE_MARK, 3) : NULL;
		if (!f)
			break;
		size_t p = (size_t)(f - w);
		if (!(p >= start + 3 && memcmp(w + p - 3, SPACE_MARK, 3) == 0)) {
			QC_TRY(encode_word(t, w + start, p - start, out));
			start = p;
		}
		pos = p + 3;
	}
	return encode_word(t, w + start, n - start, out);
}

/* Decide spm_split (see encode_piece). */
static void check_spm_split(qc_tok *t)
{
	t->spm_split = 0;
	if (t->kind == QC_TOK_BYTE_LEVEL || t->ignore_merges || t->cont_len || t->eow_len ||
	    qc_strmap_get(&t->vocab, SPACE_MARK, 3) < 0)
		return;
	const char *k;
	size_t len, pos = 0;
	int32_t id;
	while (qc_strmap_next(&t->vocab, &pos, &k, &len, &id)) {
		if (len < 4)
			continue;
		for (size_t p = 1; p + 3 <= len; p++)
			if (memcmp(k + p, SPACE_MARK, 3) == 0 && !(p >= 3 && memcmp(k + p - 3, SPACE_MARK, 3) == 0))
				return;
	}
	t->spm_split = 1;
}

/* ------------------------------------------------------------------------ */
/* encoding: pre-tokenization                                                */

static int push_piece(span **arr, size_t *n, size_t *cap, size_t off, size_t len, int first)
{
	if (len == 0)
		return 0;   /* tokenizers drops empty splits */
	QC_TRY(qc_grow((void **)arr, cap, *n + 1, sizeof **arr));
	(*arr)[(*n)++] = (span){ off, len, first };
	return 0;
}

/* Split span p at the matches of re (or of the literal lit), and emit the
 * parts per behavior, as tokenizers' NormalizedString::split does: the
 * spans alternate between non-matches and matches (flipped by invert). */
static int split_piece(qc_tok *t, const span *p, rx *re, const char *lit, size_t litlen,
                       behavior beh, int invert, span **out, size_t *nout, size_t *cap)
{
	const char *s = t->work.p + p->off;
	size_t n = p->len, pos = 0;
	/* pending span for the Merged and Contiguous behaviors */
	size_t cs = 0, ce = 0;
	int have = 0, prev_match = 0;
	for (;;) {
		size_t ms, me;
		int found;
		if (re) {
			found = rx_next(re, s, n, pos, &ms, &me);
		} else {
			const char *f = pos < n ? memmem(s + pos, n - pos, lit, litlen) : NULL;
			found = f != NULL;
			if (found) {
				ms = (size_t)(f - s);
				me = ms + litlen;
			}
		}
		if (!found)
			ms = me = n;
		/* two spans: [pos, ms) not matched, [ms, me) matched */
		for (int k = 0; k < 2; k++) {
			size_t a = k ? ms : pos, b = k ? me : ms;
			if (a == b)
				continue;
			int is_match = k ^ invert;
			switch (beh) {
			case BEH_REMOVED:
				if (!is_match)
					QC_TRY(push_piece(out, nout, cap, p->off + a, b - a, p->first && a == 0));
				break;
			case BEH_ISOLATED:
				QC_TRY(push_piece(out, nout, cap, p->off + a, b - a, p->first && a == 0));
				break;
			case BEH_MERGED_PREV:
			case BEH_MERGED_NEXT:
			case BEH_CONTIGUOUS: {
				/* whether [a, b) extends the pending span: a delimiter joins
				 * the part before it (MergedWithPrevious), a part joins the
				 * delimiter before it (MergedWithNext), or matches join
				 * matches (Contiguous) */
				int join = have && (beh == BEH_MERGED_PREV   ? is_match && !prev_match
				                    : beh == BEH_MERGED_NEXT ? prev_match && !is_match
				                                             : is_match && prev_match);
				if (join) {
					ce = b;
					break;
				}
				if (have)
					QC_TRY(push_piece(out, nout, cap, p->off + cs, ce - cs, p->first && cs == 0));
				cs = a;
				ce = b;
				have = 1;
				break;
			}
			}
			prev_match = is_match;
		}
		if (!found)
			break;
		pos = me;
	}
	if (have)
		QC_TRY(push_piece(out, nout, cap, p->off + cs, ce - cs, p->first && cs == 0));
	return 0;
}

/* Metaspace: spaces become the replacement, which is prepended per scheme;
 * the new text goes to the end of the work buffer. */
static int metaspace_piece(qc_tok *t, const pre_op *op, const span *p, span *np)
{
	size_t start = t->work.n;
	const char *r = op->repl;
	size_t rl = op->repl_len;
	QC_TRY(buf_reserve(&t->work, p->len * rl + rl + 1));
	const char *s = t->work.p + p->off;   /* valid: reserved above */
	int starts = p->len >= rl && memcmp(s, r, rl) == 0;
	starts = starts || (p->len > 0 && s[0] == ' ');
	if ((op->scheme == PREPEND_ALWAYS || (op->scheme == PREPEND_FIRST && p->first)) && !starts)
		QC_TRY(buf_add(&t->work, r, rl));
	for (size_t i = 0; i < p->len; i++) {
		if (s[i] == ' ')
			QC_TRY(buf_add(&t->work, r, rl));
		else
			QC_TRY(buf_add(&t->work, s + i, 1));
	}
	*np = (span){ start, t->work.n - start, p->first };
	return 0;
}

/* Replace every piece of arr[0..n) by its ByteLevel spelling, appended to
 * the work buffer: the text the pre-tokenizer steps after ByteLevel see. */
static int map_pieces(qc_tok *t, span *arr, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t start = t->work.n;
		QC_TRY(buf_reserve(&t->work, 2 * arr[i].len + 1));
		for (size_t j = 0; j < arr[i].len; j++) {
			uint32_t c = byte_char[(unsigned char)t->work.p[arr[i].off + j]];
			if (c < 0x80) {
				t->work.p[t->work.n++] = (char)c;
			} else {
				t->work.p[t->work.n++] = (char)(0xC0 | (c >> 6));
				t->work.p[t->work.n++] = (char)(0x80 | (c & 0x3F));
			}
		}
		t->work.p[t->work.n] = 0;
		arr[i].off = start;
		arr[i].len = t->work.n - start;
	}
	return 0;
}

/* Pre-tokenize s[0..n) and encode every word into out. */
static int encode_words(qc_tok *t, const char *s, size_t n, int first, qc_ids *out)
{
	if (n == 0)
		return 0;
	t->work.n = 0;
	QC_TRY(buf_add(&t->work, s, n));
	size_t na = 0, nb;
	int mapped = 0;   /* pieces are in ByteLevel spelling (see map_pieces) */
	QC_TRY(push_piece(&t->pa, &na, &t->pa_cap, 0, n, first));
	for (size_t k = 0; k < t->n_pre; k++) {
		pre_op *op = &t->pre[k];
		nb = 0;
		for (size_t i = 0; i < na; i++) {
			span p = t->pa[i];
			switch (op->type) {
			case PRE_SPLIT:
				QC_TRY(split_piece(t, &p, &op->re, NULL, 0, op->beh, op->invert, &t->pb, &nb, &t->pb_cap));
				break;
			case PRE_BYTELEVEL:
				if (op->add_prefix_space && t->work.p[p.off] != ' ') {
					size_t st = t->work.n;
					QC_TRY(buf_reserve(&t->work, p.len + 2));
					t->work.p[t->work.n++] = ' ';
					QC_TRY(buf_add(&t->work, t->work.p + p.off, p.len));
					p.off = st;
					p.len++;
				}
				if (op->use_regex)
					QC_TRY(split_piece(t, &p, &op->re, NULL, 0, BEH_ISOLATED, 0, &t->pb, &nb, &t->pb_cap));
				else
					QC_TRY(push_piece(&t->pb, &nb, &t->pb_cap, p.off, p.len, p.first));
				break;
			case PRE_FIXED:
				for (size_t a = 0; a < p.len;) {
					size_t b = a;
					uint32_t cp;
					for (size_t c = 0; c < op->length && b < p.len; c++)
						b += utf8_next((const unsigned char *)t->work.p + p.off + b, p.len - b, &cp);
					QC_TRY(push_piece(&t->pb, &nb, &t->pb_cap, p.off + a, b - a, p.first && a == 0));
					a = b;
				}
				break;
			case PRE_METASPACE: {
				span np;
				QC_TRY(metaspace_piece(t, op, &p, &np));
				if (op->split)
					QC_TRY(split_piece(t, &np, NULL, op->repl, op->repl_len, BEH_MERGED_NEXT, 0, &t->pb,
					                   &nb, &t->pb_cap));
				else
					QC_TRY(push_piece(&t->pb, &nb, &t->pb_cap, np.off, np.len, np.first));
				break;
			}
			}
		}
		if (op->type == PRE_BYTELEVEL && k + 1 < t->n_pre) {
			QC_TRY(map_pieces(t, t->pb, nb));
			mapped = 1;
		}
		span *sw = t->pa;
		size_t sc = t->pa_cap;
		t->pa = t->pb;
		t->pa_cap = t->pb_cap;
		t->pb = sw;
		t->pb_cap = sc;
		na = nb;
	}
	for (size_t i = 0; i < na; i++) {
		const char *w = t->work.p + t->pa[i].off;
		size_t wl = t->pa[i].len;
		if (mapped) {
			/* back to raw bytes, what the vocabulary is keyed by: every
			 * character came from the byte map, so each has its byte */
			int rc = bytelevel_to_raw(w, wl, &t->wbuf);
			if (rc == -1)
				return qc_seterr(QC_EINVAL, "pre-tokenized word left the byte map in '%s'", t->name);
			QC_TRY(rc);
			w = t->wbuf.p;
			wl = t->wbuf.n;
		}
		QC_TRY(encode_piece(t, w, wl, out));
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* encoding: added tokens, normalization, post-processing                    */

typedef int (*seg_fn)(qc_tok *t, const char *s, size_t n, int first, qc_ids *out);

/* tokenizers' AddedVocabulary::find_matches: cut s at the added tokens of
 * m, applying single_word, lstrip and rstrip; text between goes to fn. */
static int split_added(qc_tok *t, const matcher *m, const char *s, size_t n, int first, seg_fn fn,
                       qc_ids *out)
{
	size_t pos = 0, done = 0, ms, me;
	int32_t idx;
	while (pos < n && matcher_next(m, s, n, pos, &ms, &me, &idx)) {
		const added_tok *a = &t->added[idx];
		size_t start = ms, stop = me;
		pos = me;
		if (a->single_word) {
			uint32_t cp;
			int ok = 1;
			if (start > 0) {
				size_t k = char_start_before(s, start);
				utf8_next((const unsigned char *)s + k, start - k, &cp);
				ok = !is_word_char(t, s + k, start - k, cp);
			}
			if (ok && stop < n) {
				size_t l = utf8_next((const unsigned char *)s + stop, n - stop, &cp);
				ok = !is_word_char(t, s + stop, l, cp);
			}
			if (!ok)
				continue;
		}
		if (a->lstrip) {
			while (start > done) {
				size_t k = char_start_before(s, start);
				uint32_t cp;
				utf8_next((const unsigned char *)s + k, start - k, &cp);
				if (!is_uspace(cp))
					break;
				start = k;
			}
		}
		if (a->rstrip) {
			while (stop < n) {
				uint32_t cp;
				size_t l = utf8_next((const unsigned char *)s + stop, n - stop, &cp);
				if (!is_uspace(cp))
					break;
				stop += l;
			}
			pos = stop;
		}
		if (done < start)
			QC_TRY(fn(t, s + done, start - done, first && done == 0, out));
		QC_TRY(qc_ids_push(out, a->id));
		done = stop;
	}
	if (done < n)
		QC_TRY(fn(t, s + done, n - done, first && done == 0, out));
	return 0;
}

/* A segment without raw added tokens: normalize, then cut at normalized
 * added tokens, then pre-tokenize and encode. */
static int encode_segment(qc_tok *t, const char *s, size_t n, int first, qc_ids *out)
{
	QC_TRY(normalize(t, s, n, first));
	if (!t->m_norm.any)
		return encode_words(t, t->nbuf.p, t->nbuf.n, first, out);
	/* encode_words does not touch nbuf, but keep a private copy anyway:
	 * the text must outlive the loop over its matches */
	char *copy = xstrndup(t->nbuf.p, t->nbuf.n);
	if (!copy)
		return qc_seterr(QC_ENOMEM, "out of memory in tokenizer");
	int rc = split_added(t, &t->m_norm, copy, t->nbuf.n, first, encode_words, out);
	free(copy);
	return rc;
}

int qc_tok_encode(qc_tok *t, const char *text, size_t len, unsigned flags, qc_ids *out)
{
	size_t n0 = out->n;
	int rc = 0;
	if (flags & QC_TOK_ADD_SPECIAL)
		for (int i = 0; i < t->n_prefix && rc == 0; i++)
			rc = qc_ids_push(out, t->prefix[i]);
	if (rc == 0)
		rc = split_added(t, &t->m_raw, text, len, 1, encode_segment, out);
	if (flags & QC_TOK_ADD_SPECIAL)
		for (int i = 0; i < t->n_suffix && rc == 0; i++)
			rc = qc_ids_push(out, t->suffix[i]);
	if (rc < 0)
		out->n = n0;
	return rc;
}

/* ------------------------------------------------------------------------ */
/* decoding                                                                  */

/* A list of strings in one arena: the shape tokenizers' decoders work on
 * (decode_chain maps a list of token strings to a list of strings). */
typedef struct slist {
	buf a;
	size_t *off, *len;
	size_t n, cap;
} slist;

static int sl_add(slist *l, const char *s, size_t n)
{
	size_t c = l->cap;
	QC_TRY(qc_grow((void **)&l->off, &c, l->n + 1, sizeof *l->off));
	QC_TRY(qc_grow((void **)&l->len, &l->cap, l->n + 1, sizeof *l->len));
	l->off[l->n] = l->a.n;
	l->len[l->n] = n;
	l->n++;
	return buf_add(&l->a, s, n);
}

/* Append to the last string of l (which must be the last thing added). */
static int sl_cat(slist *l, const char *s, size_t n)
{
	l->len[l->n - 1] += n;
	return buf_add(&l->a, s, n);
}

static void sl_free(slist *l)
{
	buf_free(&l->a);
	free(l->off);
	free(l->len);
	memset(l, 0, sizeof *l);
}


/* One decoder step from in to out (out is empty on entry). */
static int run_dec(const qc_tok *t, const dec_op *op, const slist *in, slist *out)
{
	buf tmp = { 0 };
	int rc = 0;
	switch (op->type) {
	case DEC_BYTELEVEL:
	case DEC_FUSE:
		/* ByteLevel joins and maps chars back to bytes; the model's tokens
		 * are stored as raw bytes already, so joining is all that is left */
		if ((rc = sl_add(out, "", 0)) < 0)
			break;
		for (size_t i = 0; i < in->n && rc == 0; i++) {
			const char *s = in->a.p + in->off[i];
			if (op->type == DEC_BYTELEVEL && t->kind != QC_TOK_BYTE_LEVEL &&
			    bytelevel_to_raw(s, in->len[i], &tmp) == 0)
				rc = sl_cat(out, tmp.p, tmp.n);
			else
				rc = sl_cat(out, s, in->len[i]);
		}
		break;
	case DEC_METASPACE:
	case DEC_REPLACE:
		for (size_t i = 0; i < in->n && rc == 0; i++) {
			const char *s = in->a.p + in->off[i];
			size_t n = in->len[i], pos = 0;
			int drop = op->type == DEC_METASPACE && i == 0 && op->scheme != PREPEND_NEVER;
			const char *with = op->type == DEC_METASPACE ? " " : op->b;
			size_t wl = op->type == DEC_METASPACE ? 1 : op->blen;
			if ((rc = sl_add(out, "", 0)) < 0)
				break;
			while (rc == 0 && pos < n) {
				const char *f = memmem(s + pos, n - pos, op->a, op->alen);
				size_t e = f ? (size_t)(f - s) : n;
				rc = sl_cat(out, s + pos, e - pos);
				if (f && rc == 0 && !drop)
					rc = sl_cat(out, with, wl);
				pos = f ? e + op->alen : n;
			}
		}
		break;
	case DEC_BYTEFALLBACK:
		for (size_t i = 0; i < in->n && rc == 0; i++) {
			const char *s = in->a.p + in->off[i];
			int hi, lo;
			if (in->len[i] == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' &&
			    (hi = hexval(s[3])) >= 0 && (lo = hexval(s[4])) >= 0) {
				char c = (char)(hi * 16 + lo);
				rc = sl_add(out, &c, 1);
			} else {
				rc = sl_add(out, s, in->len[i]);
			}
		}
		break;
	case DEC_STRIP:
		for (size_t i = 0; i < in->n && rc == 0; i++) {
			const char *s = in->a.p + in->off[i];
			size_t a = 0, b = in->len[i];
			for (int k = 0; k < op->start && b - a >= op->alen && memcmp(s + a, op->a, op->alen) == 0; k++)
				a += op->alen;
			for (int k = 0; k < op->stop && b - a >= op->alen && memcmp(s + b - op->alen, op->a, op->alen) == 0; k++)
				b -= op->alen;
			rc = sl_add(out, s + a, b - a);
		}
		break;
	}
	buf_free(&tmp);
	return rc;
}

int qc_tok_decode(const qc_tok *t, const int32_t *ids, size_t n, unsigned flags, char **text,
                  size_t *len)
{
	slist l[2] = { { { 0 }, 0, 0, 0, 0 }, { { 0 }, 0, 0, 0, 0 } };
	int rc = 0, cur = 0;
	*text = NULL;
	if (len)
		*len = 0;
	if (t->dec_unsupported)
		return qc_seterr(QC_EUNSUPPORTED, "cannot decode: unsupported decoder '%s' in '%s'",
		                 t->dec_unsupported, t->name);
	for (size_t i = 0; i < n && rc == 0; i++) {
		int32_t id = ids[i];
		if (id < 0 || id >= t->n_ids || t->ids[id].kind == QC_TOK_ID_NONE) {
			rc = qc_seterr(QC_EINVAL, "cannot decode id %d: no such token in '%s'", (int)id, t->name);
			break;
		}
		const idinfo *d = &t->ids[id];
		if ((flags & QC_TOK_SKIP_SPECIAL) && d->kind == QC_TOK_ID_SPECIAL)
			continue;
		if (t->kind == QC_TOK_BYTE_LEVEL && d->kind == QC_TOK_ID_NORMAL && d->rlen != UINT32_MAX)
			rc = sl_add(&l[cur], t->raw.p + d->roff, d->rlen);
		else
			rc = sl_add(&l[cur], t->str.p + d->off, d->len);
	}
	for (size_t k = 0; k < t->n_dec && rc == 0; k++) {
		l[!cur].n = 0;
		l[!cur].a.n = 0;
		rc = run_dec(t, &t->dec[k], &l[cur], &l[!cur]);
		cur = !cur;
	}
	buf o = { 0 };
	if (rc == 0)
		rc = buf_reserve(&o, 1);
	for (size_t i = 0; i < l[cur].n && rc == 0; i++) {
		/* no decoder at all: tokenizers joins the tokens with spaces */
		if (i > 0 && !t->has_decoder)
			rc = buf_add(&o, " ", 1);
		if (rc == 0)
			rc = buf_add(&o, l[cur].a.p + l[cur].off[i], l[cur].len[i]);
	}
	sl_free(&l[0]);
	sl_free(&l[1]);
	if (rc < 0) {
		buf_free(&o);
		return rc;
	}
	o.p[o.n] = 0;
	*text = o.p;
	if (len)
		*len = o.n;
	return 0;
}
