/* qc_jsonl.c - JSON Lines files (see qc_jsonl.h). */
#include "qc_jsonl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_io.h"

/* MMLU's 14k questions are 10 MB; a GSM8K log with generations a few more */
#define MAX_JSONL ((size_t)1 << 30)

int qc_jsonl_each(const char *path, qc_jsonl_fn fn, void *ctx)
{
	char *data;
	size_t len;
	QC_TRY(qc_read_file(path, MAX_JSONL, &data, &len));
	int rc = 0, any = 0;
	int64_t line = 0;
	for (char *p = data; !rc && p < data + len;) {
		char *e = memchr(p, '\n', (size_t)(data + len - p));
		size_t n = e ? (size_t)(e - p) : (size_t)(data + len - p);
		char *s = p;
		p += n + 1;
		line++;
		size_t k = 0;
		while (k < n && isspace((unsigned char)s[k]))
			k++;
		if (k == n)
			continue;
		json_error_t je;
		json_t *o = json_loadb(s, n, JSON_REJECT_DUPLICATES, &je);
		if (!json_is_object(o))
			rc = qc_seterr(QC_EFORMAT, "%s:%lld: %s", path, (long long)line,
			               o ? "not a JSON object" : je.text);
		else
			rc = fn(ctx, o, line);
		json_decref(o);
		any = 1;
	}
	free(data);
	if (!rc && !any)
		rc = qc_seterr(QC_EFORMAT, "%s: no lines", path);
	return rc;
}

char *qc_jsonl_name(const char *path)
{
	const char *b = strrchr(path, '/');
	b = b ? b + 1 : path;
	size_t n = strlen(b);
	if (n > 6 && strcmp(b + n - 6, ".jsonl") == 0)
		n -= 6;
	else if (n > 5 && strcmp(b + n - 5, ".json") == 0)
		n -= 5;
	char *s = malloc(n + 1);
	if (s) {
		memcpy(s, b, n);
		s[n] = 0;
	}
	return s;
}
