/*
 * qc_json.c - HF-compatible JSON writer (see qc_json.h).
 */
#include "qc_json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_vec.h"

// ---------------------------------------------------------------- buffer

typedef struct buf {
	char *p;
	size_t n, cap;
	int oom;          /* an allocation failed; later appends are dropped */
} buf;

static void put(buf *b, const char *s, size_t n)
{
	if (b->oom || qc_grow((void **)&b->p, &b->cap, b->n + n + 1, 1) < 0) {
		b->oom = 1;
		return;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void puts_(buf *b, const char *s)
{
	put(b, s, strlen(s));
}

static void indent(buf *b, int level)
{
	static const char sp[] = "                                ";
	size_t n = (size_t)level * 2;
	while (n > 0) {
		size_t m = n < sizeof sp - 1 ? n : sizeof sp - 1;
		put(b, sp, m);
		n -= m;
	}
}

// ---------------------------------------------------------------- numbers

char *qc_json_repr_double(double x, char out[32])
{
	if (isnan(x)) {
		strcpy(out, "NaN");
		return out;
	}
	if (isinf(x)) {
		strcpy(out, x < 0 ? "-Infinity" : "Infinity");
		return out;
	}
	if (x == 0) {
		strcpy(out, signbit(x) ? "-0.0" : "0.0");
		return out;
	}
	/* shortest round-tripping digits: the first precision whose correctly
	 * rounded %e form reads back as x (glibc's printf is exact) */
	char e[40];
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(e, sizeof e, "%.*e", prec - 1, x);
		if (strtod(e, NULL) == x)
			break;
	}
	/* split "-d.ddde+XX" into sign, digits and decimal exponent */
	const char *s = e;
	int neg = *s == '-';
	if (neg)
		s++;
	char dig[20];
	size_t nd = 0;
	for (; *s && *s != 'e'; s++)
		if (*s != '.')
			dig[nd++] = *s;
	int exp10 = atoi(s + 1);
	while (nd > 1 && dig[nd - 1] == '0')
		nd--;
	dig[nd] = 0;

	/* CPython float_repr_style 'short', repr mode: decpt = exp10 + 1 */
	int decpt = exp10 + 1;
	char *o = out;
	if (neg)
		*o++ = '-';
	if (decpt > -4 && decpt <= 16) {
		if (decpt <= 0) {
			*o++ = '0';
			*o++ = '.';
			for (int i = 0; i < -decpt; i++)
				*o++ = '0';
			memcpy(o, dig, nd);
			o += nd;
		} else if ((size_t)decpt >= nd) {
			memcpy(o, dig, nd);
			o += nd;
			for (size_t i = nd; i < (size_t)decpt; i++)
				*o++ = '0';
			*o++ = '.';
			*o++ = '0';
		} else {
			memcpy(o, dig, (size_t)decpt);
			o += decpt;
			*o++ = '.';
			memcpy(o, dig + decpt, nd - (size_t)decpt);
			o += nd - (size_t)decpt;
		}
		*o = 0;
	} else {
		*o++ = dig[0];
		if (nd > 1) {
			*o++ = '.';
			memcpy(o, dig + 1, nd - 1);
			o += nd - 1;
		}
		/* |exp10| <= 324: "e-324" at most */
		char ex[16];
		int m = snprintf(ex, sizeof ex, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
		memcpy(o, ex, (size_t)m + 1);
	}
	return out;
}

// ---------------------------------------------------------------- strings

/* Decode one UTF-8 sequence at s (n bytes left); code point or -1. jansson
 * validated its strings on input, but json_stringn_nocheck can bypass it. */
static long utf8_next(const unsigned char *s, size_t n, size_t *used)
{
	unsigned c = s[0];
	size_t len;
	long cp;
	if (c < 0x80) {
		*used = 1;
		return c;
	} else if ((c & 0xE0) == 0xC0) {
		len = 2;
		cp = c & 0x1F;
	} else if ((c & 0xF0) == 0xE0) {
		len = 3;
		cp = c & 0x0F;
	} else if ((c & 0xF8) == 0xF0) {
		len = 4;
		cp = c & 0x07;
	} else {
		return -1;
	}
	if (len > n)
		return -1;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return -1;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	/* overlong forms, surrogates and values beyond U+10FFFF are invalid */
	static const long minv[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	if (cp < minv[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return -1;
	*used = len;
	return cp;
}

static int put_string(buf *b, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	char esc[16];
	put(b, "\"", 1);
	size_t i = 0;
	while (i < n) {
		/* copy the longest run that needs no escape in one go */
		size_t j = i;
		while (j < n && s[j] >= 0x20 && s[j] <= 0x7E && s[j] != '"' && s[j] != '\\')
			j++;
		put(b, str + i, j - i);
		i = j;
		if (i >= n)
			break;
		unsigned c = s[i];
		size_t used = 1;
		switch (c) {
		case '"': puts_(b, "\\\""); break;
		case '\\': puts_(b, "\\\\"); break;
		case '\n': puts_(b, "\\n"); break;
		case '\r': puts_(b, "\\r"); break;
		case '\t': puts_(b, "\\t"); break;
		case '\b': puts_(b, "\\b"); break;
		case '\f': puts_(b, "\\f"); break;
		default: {
			long cp = utf8_next(s + i, n - i, &used);
			if (cp < 0)
				return qc_seterr(QC_EINVAL, "cannot write JSON: string is not valid UTF-8");
			if (cp >= 0x10000) {   /* UTF-16 surrogate pair, as Python writes it */
				long v = cp - 0x10000;
				snprintf(esc, sizeof esc, "\\u%04lx\\u%04lx", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
			} else {
				snprintf(esc, sizeof esc, "\\u%04lx", cp);
			}
			puts_(b, esc);
		}
		}
		i += used;
	}
	put(b, "\"", 1);
	return 0;
}

// ---------------------------------------------------------------- values

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int put_value(buf *b, const json_t *j, int level)
{
	char num[40];
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		size_t n = json_object_size(j);
		if (n == 0) {
			puts_(b, "{}");
			return 0;
		}
		const char **keys = malloc(n * sizeof *keys);
		if (!keys)
			return qc_seterr(QC_ENOMEM, "cannot write JSON: out of memory");
		size_t k = 0;
		const char *key;
		json_t *v;
		json_object_foreach((json_t *)j, key, v)
			keys[k++] = key;
		/* strcmp on UTF-8 orders by code point, like Python's sorted() */
		qsort(keys, n, sizeof *keys, key_cmp);
		puts_(b, "{\n");
		int rc = 0;
		for (k = 0; k < n && rc == 0; k++) {
			indent(b, level + 1);
			rc = put_string(b, keys[k], strlen(keys[k]));
			if (rc == 0) {
				puts_(b, ": ");
				rc = put_value(b, json_object_get(j, keys[k]), level + 1);
			}
			puts_(b, k + 1 < n ? ",\n" : "\n");
		}
		free(keys);
		if (rc)
			return rc;
		indent(b, level);
		puts_(b, "}");
		return 0;
	}
	case JSON_ARRAY: {
		size_t n = json_array_size(j);
		if (n == 0) {
			puts_(b, "[]");
			return 0;
		}
		puts_(b, "[\n");
		for (size_t k = 0; k < n; k++) {
			indent(b, level + 1);
			QC_TRY(put_value(b, json_array_get(j, k), level + 1));
			puts_(b, k + 1 < n ? ",\n" : "\n");
		}
		indent(b, level);
		puts_(b, "]");
		return 0;
	}
	case JSON_STRING:
		return put_string(b, json_string_value(j), json_string_length(j));
	case JSON_INTEGER:
		snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
		puts_(b, num);
		return 0;
	case JSON_REAL:
		puts_(b, qc_json_repr_double(json_real_value(j), num));
		return 0;
	case JSON_TRUE:
		puts_(b, "true");
		return 0;
	case JSON_FALSE:
		puts_(b, "false");
		return 0;
	case JSON_NULL:
		puts_(b, "null");
		return 0;
	}
	return qc_seterr(QC_EINTERNAL, "cannot write JSON: unknown value type");
}

int qc_json_dump(const json_t *j, char **out, size_t *len)
{
	buf b = { 0 };
	int rc = put_value(&b, j, 0);
	puts_(&b, "\n");
	if (rc == 0 && b.oom)
		rc = qc_seterr(QC_ENOMEM, "cannot write JSON: out of memory");
	if (rc) {
		free(b.p);
		return rc;
	}
	*out = b.p;
	if (len)
		*len = b.n;
	return 0;
}
