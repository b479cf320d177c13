/* qc_unorm.c - Unicode normal forms and lowercase with utf8proc (see
 * qc_unorm.h). */
#include "qc_unorm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "qc_err.h"
#include "qc_vec.h"

typedef struct obuf {
	char *p;
	size_t n, cap;
} obuf;

static int put(obuf *o, const void *s, size_t n)
{
	QC_TRY(qc_grow((void **)&o->p, &o->cap, o->n + n + 1, 1));
	memcpy(o->p + o->n, s, n);
	o->n += n;
	o->p[o->n] = 0;
	return 0;
}

/* Length of the valid UTF-8 run at the start of s[0..n). */
static size_t valid_run(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
		if (l <= 0)
			break;
		i += (size_t)l;
	}
	return i;
}

/* utf8proc_map of valid UTF-8 s[0..n), appended to o. */
static int map_run(qc_unorm_form form, const char *s, size_t n, obuf *o)
{
	if (form == QC_UNORM_LOWER) {
		for (size_t i = 0; i < n;) {
			utf8proc_int32_t cp;
			utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
			i += (size_t)l;
			utf8proc_uint8_t enc[8];
			if (cp == 0x130) {   /* SpecialCasing: I WITH DOT ABOVE -> i + COMBINING DOT ABOVE */
				QC_TRY(put(o, "i\xcc\x87", 3));
				continue;
			}
			utf8proc_ssize_t k = utf8proc_encode_char(utf8proc_tolower(cp), enc);
			QC_TRY(put(o, enc, (size_t)k));
		}
		return 0;
	}
	if (form == QC_UNORM_STRIP_MARKS) {
		for (size_t i = 0; i < n;) {
			utf8proc_int32_t cp;
			utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
			utf8proc_category_t c = utf8proc_category(cp);
			if (c != UTF8PROC_CATEGORY_MN && c != UTF8PROC_CATEGORY_MC && c != UTF8PROC_CATEGORY_ME)
				QC_TRY(put(o, s + i, (size_t)l));
			i += (size_t)l;
		}
		return 0;
	}
	int opt = UTF8PROC_STABLE;
	switch (form) {
	case QC_UNORM_NFC: opt |= UTF8PROC_COMPOSE; break;
	case QC_UNORM_NFD: opt |= UTF8PROC_DECOMPOSE; break;
	case QC_UNORM_NFKC: opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
	case QC_UNORM_NFKD: opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
	default: return qc_seterr(QC_EINVAL, "unknown Unicode normal form %d", (int)form);
	}
	if (n == 0)
		return 0;
	utf8proc_uint8_t *d = NULL;
	utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &d, (utf8proc_option_t)opt);
	if (k < 0) {
		free(d);
		if (k == UTF8PROC_ERROR_NOMEM || k == UTF8PROC_ERROR_OVERFLOW)
			return qc_seterr(QC_ENOMEM, "out of memory normalizing text (%zu bytes)", n);
		/* the run was checked to be valid UTF-8; anything else is a bug */
		return qc_seterr(QC_EINVAL, "cannot normalize text: %s", utf8proc_errmsg(k));
	}
	int rc = put(o, d, (size_t)k);
	free(d);
	return rc;
}

/* The same as map_run, cut into pieces: an ASCII character is unchanged by
 * every normal form, is a starter (canonical combining class 0, so no
 * reordering passes it) and is never the second character of a composition,
 * so nothing before it depends on it or on what follows it. The text is cut
 * before each ASCII character; runs of ASCII are copied, and only each
 * non-ASCII stretch, with the ASCII character before it (which a mark may
 * compose with: e + U+0301), goes through utf8proc. */
static int map_run_fast(qc_unorm_form form, const char *s, size_t n, obuf *o)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && (unsigned char)s[j] < 0x80)
			j++;
		size_t start = j > i ? j - 1 : j;
		QC_TRY(put(o, s + i, start - i));
		if (j == n)
			return put(o, s + start, n - start);
		size_t e = j;
		while (e < n && (unsigned char)s[e] >= 0x80)
			e++;
		QC_TRY(map_run(form, s + start, e - start, o));
		i = e;
	}
	return 0;
}

static int normalize_run(qc_unorm_form form, const char *s, size_t n, int reference, obuf *o)
{
	if (form == QC_UNORM_LOWER || form == QC_UNORM_STRIP_MARKS)
		return map_run(form, s, n, o);   /* character by character already */
	return reference ? map_run(form, s, n, o) : map_run_fast(form, s, n, o);
}

static int unorm(qc_unorm_form form, const char *s, size_t n, int reference, char **out, size_t *outlen)
{
	obuf o = { 0 };
	int rc = put(&o, "", 0);
	for (size_t i = 0; i < n && rc == 0;) {
		size_t v = valid_run(s + i, n - i);
		if (v > 0) {
			rc = normalize_run(form, s + i, v, reference, &o);
			i += v;
		} else {
			rc = put(&o, s + i, 1);   /* an invalid byte passes through */
			i++;
		}
	}
	if (rc < 0) {
		free(o.p);
		*out = NULL;
		return rc;
	}
	*out = o.p;
	*outlen = o.n;
	return 0;
}

int qc_unorm(qc_unorm_form form, const char *s, size_t n, char **out, size_t *outlen)
{
	return unorm(form, s, n, 0, out, outlen);
}

int qc_unorm_ref(qc_unorm_form form, const char *s, size_t n, char **out, size_t *outlen)
{
	return unorm(form, s, n, 1, out, outlen);
}
