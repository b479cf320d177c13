/* bench_tok.c - tokenizer encoding throughput on one core, the fast path
 * (heap merges, word cache, SentencePiece word cuts) against the plain
 * reference path of the same handle, on the same text.
 *
 *   bench_tok [-t TEXT] [TOKENIZER_DIR ...]
 *
 * Without directories it uses the real tokenizers under $QC_SHARED_DATA
 * ($QC_SHARED_DATA) when it is set, and always a byte-level tokenizer built
 * with qc_tok_build_bytelevel (32000 ids). The text defaults to
 * calib/public-domain.txt repeated to 4 MB; it is encoded in documents of
 * up to 4 KB (cut at paragraph ends), as qcalib encodes documents. The
 * reference path is timed on the first 128 KB only (it is quadratic in the
 * word length). Ids of both paths are compared on that prefix. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_log.h"
#include "qc_tok.h"

#define DOC_MAX 4096
#define REF_BYTES (128 * 1024)

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 20, n = 0;
	char *b = malloc(cap);
	for (;;) {
		if (n == cap)
			b = realloc(b, cap *= 2);
		size_t got = fread(b + n, 1, cap - n, f);
		if (!got)
			break;
		n += got;
	}
	fclose(f);
	*len = n;
	return b;
}

/* Encode text[0..len) document by document; returns seconds, ids in *out. */
static double encode_all(qc_tok *t, const char *text, size_t len, qc_ids *out)
{
	double t0 = qc_now();
	size_t pos = 0;
	while (pos < len) {
		size_t n = len - pos < DOC_MAX ? len - pos : DOC_MAX;
		if (pos + n < len) {
			/* end the document at the last paragraph break, if any */
			for (size_t k = n; k > 1; k--)
				if (text[pos + k - 1] == '\n' && text[pos + k - 2] == '\n') {
					n = k;
					break;
				}
		}
		if (qc_tok_encode(t, text + pos, n, 0, out) < 0) {
			fprintf(stderr, "bench_tok: %s\n", qc_errmsg());
			exit(1);
		}
		pos += n;
	}
	return qc_now() - t0;
}

static void bench(const char *name, qc_tok *t, const char *text, size_t len)
{
	qc_ids fast = { 0 }, ref = { 0 }, warm = { 0 };
	size_t rl = len < REF_BYTES ? len : REF_BYTES;
	encode_all(t, text, rl, &warm);            /* page in, fill the cache */
	double tf = encode_all(t, text, len, &fast);
	/* a fresh cache is not needed: the reference path does not use it */
	qc_tok_set_reference(t, 1);
	double tr = encode_all(t, text, rl, &ref);
	qc_tok_set_reference(t, 0);
	int same = warm.n == ref.n && memcmp(warm.v, ref.v, ref.n * sizeof *ref.v) == 0;
	double mbf = (double)len / tf / 1e6, mbr = (double)rl / tr / 1e6;
	printf("%-22s %-13s %8.2f MB/s  %6.2f bytes/token  reference %7.2f MB/s  x%-6.1f ids %s\n", name,
	       qc_tok_type(t) == QC_TOK_BYTE_LEVEL ? "byte-level" : "sentencepiece", mbf,
	       (double)len / (double)fast.n, mbr, mbf / mbr, same ? "equal" : "DIFFER");
	qc_ids_release(&fast);
	qc_ids_release(&ref);
	qc_ids_release(&warm);
	if (!same)
		exit(1);
}

int main(int argc, char **argv)
{
	const char *textpath = "calib/public-domain.txt";
	int first = 1;
	if (argc > 2 && strcmp(argv[1], "-t") == 0) {
		textpath = argv[2];
		first = 3;
	}
	size_t sl;
	char *seed = slurp(textpath, &sl);
	if (!seed || sl == 0) {
		fprintf(stderr, "bench_tok: cannot read '%s' (run from the repository root or give -t FILE)\n",
		        textpath);
		return 2;
	}
	/* repeat the text to 4 MB so that timings are not dominated by noise */
	size_t len = 4u << 20;
	char *text = malloc(len);
	for (size_t i = 0; i < len; i += sl)
		memcpy(text + i, seed, len - i < sl ? len - i : sl);
	printf("text: %s repeated to %zu bytes, documents of up to %d bytes, one core\n", textpath, len,
	       DOC_MAX);

	qc_tok_built b;
	if (qc_tok_build_bytelevel(32000, seed, sl, &b) < 0) {
		fprintf(stderr, "bench_tok: %s\n", qc_errmsg());
		return 1;
	}
	qc_tok *t;
	if (qc_tok_load_mem(&t, b.tokenizer_json, b.tokenizer_len, b.config_json, b.config_len, "built") < 0) {
		fprintf(stderr, "bench_tok: %s\n", qc_errmsg());
		return 1;
	}
	bench("built (32000 ids)", t, text, len);
	qc_tok_free(t);
	qc_tok_built_release(&b);

	const char *dirs[16];
	char paths[4][1024];
	int nd = 0;
	for (int i = first; i < argc && nd < 16; i++)
		dirs[nd++] = argv[i];
	const char *sd = getenv("QC_SHARED_DATA");
	if (nd == 0 && sd && *sd) {
		static const char *names[] = { "gpt2", "llama3", "tinyllama", "phi-3-mini" };
		for (int i = 0; i < 4; i++) {
			snprintf(paths[i], sizeof paths[i], "%s/tokenizers/%s", sd, names[i]);
			dirs[nd++] = paths[i];
		}
	}
	for (int i = 0; i < nd; i++) {
		if (qc_tok_load(&t, dirs[i]) < 0) {
			printf("%-22s skipped: %s\n", dirs[i], qc_errmsg());
			continue;
		}
		const char *base = strrchr(dirs[i], '/');
		bench(base ? base + 1 : dirs[i], t, text, len);
		qc_tok_free(t);
	}
	free(text);
	free(seed);
	return 0;
}
