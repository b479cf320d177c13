/* tutil.c - unit-test helpers (see tutil.h). */
#include "tutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_err.h"
#include "qc_synth.h"
#include "qc_tokset.h"

static char tmpdir[4096];

static void cleanup(void)
{
	if (tmpdir[0]) {
		char cmd[4200];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0) { /* nothing useful to do */ }
	}
}

const char *tu_tmpdir(void)
{
	if (!tmpdir[0]) {
		const char *t = getenv("TMPDIR");
		snprintf(tmpdir, sizeof tmpdir, "%s/qunit.XXXXXX", t && *t ? t : "/tmp");
		if (!mkdtemp(tmpdir)) {
			perror("mkdtemp");
			abort();
		}
		atexit(cleanup);
	}
	return tmpdir;
}

char *tu_path(const char *name)
{
	const char *d = tu_tmpdir();
	char *p = malloc(strlen(d) + strlen(name) + 2);
	assert_non_null(p);
	sprintf(p, "%s/%s", d, name);
	return p;
}

void tu_write(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

void *tu_read(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = 0;
	fclose(f);
	*len = (size_t)n;
	return buf;
}

const char *tu_shared_data(void)
{
	const char *d = getenv("QC_SHARED_DATA");
	struct stat st;
	if (d && *d && stat(d, &st) == 0 && S_ISDIR(st.st_mode))
		return d;
	return NULL;
}

void tu_assert_rc_(int rc, int expect, const char *expr, const char *file, int line)
{
	if (rc != expect) {
		print_error("%s:%d: %s returned %d (%s), expected %d; message: %s\n", file, line, expr,
		            rc, qc_strerror(rc), expect, qc_errmsg());
		fail();
	}
}

void tu_write_synth(const char *dir, qc_config *cfg, uint64_t seed, int n_shards)
{
	qc_synth_opts so;
	qc_synth_opts_default(&so);
	so.seed = seed;
	qc_ckw_opts wo = { 0 };
	wo.n_shards = n_shards;
	qc_ckpt_writer *w;
	tu_assert_rc(qc_ckw_open(&w, dir, &wo), 0);
	char *js;
	size_t jl;
	tu_assert_rc(qc_config_dump(cfg, &js, &jl), 0);
	tu_assert_rc(qc_ckw_add_file(w, "config.json", js, jl), 0);
	free(js);
	tu_assert_rc(qc_synth_write(cfg, &so, w, NULL, NULL), 0);
	tu_assert_rc(qc_ckw_close(w), 0);
}

void tu_write_tokens(const char *path, const int32_t *ids, const int32_t *lens, int n, int l,
                     int vocab)
{
	int32_t *padded = calloc((size_t)(n * l), sizeof *padded);
	assert_non_null(padded);
	for (int r = 0; r < n; r++)
		memcpy(padded + r * l, ids + r * l, (size_t)lens[r] * sizeof *ids);
	qc_tokset_spec sp = { 0 };
	sp.n = n;
	sp.l = l;
	sp.ids = padded;
	sp.lengths = lens;
	sp.vocab_size = vocab;
	sp.pad_id = 0;
	sp.bos_id = -1;
	sp.eos_id = -1;
	sp.sources = "[]";
	sp.options = "{}";
	tu_assert_rc(qc_tokset_save(&sp, path), 0);
	free(padded);
}
