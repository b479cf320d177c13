/* test_ckpt.c - checkpoint writer and readers: directory and stream forms,
 * canonical member order, layer order, read-ahead and spill, release, the
 * manifest (hashes, fingerprint, inheritance, verify), verbatim copies and
 * malformed checkpoints. */
#include "tutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qc_ckpt.h"
#include "qc_err.h"
#include "qc_io.h"
#include "qc_manifest.h"
#include "qc_st.h"
#include "qc_tar.h"

enum { H = 8, V = 16, I = 12 };

/* Deterministic tensor bytes from (seed, name): xorshift over a name hash. */
static void *tensor_bytes(const char *name, size_t n, unsigned seed)
{
	unsigned char *p = malloc(n ? n : 1);
	assert_non_null(p);
	uint32_t x = seed * 2654435761u + 7;
	for (const char *c = name; *c; c++)
		x = (x ^ (unsigned char)*c) * 16777619u;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		p[i] = (unsigned char)x;
	}
	return p;
}

static void add_t(qc_ckpt_writer *w, const char *name, int64_t r, int64_t c, unsigned seed)
{
	int64_t sh[2] = { r, c };
	int nd = c ? 2 : 1;
	size_t n = (size_t)(r * (c ? c : 1)) * 2;
	assert_int_equal(qc_ckw_add_tensor(w, name, QC_DT_BF16, nd, sh, tensor_bytes(name, n, seed), 1), 0);
}

static void add_layer(qc_ckpt_writer *w, int l, unsigned seed)
{
	char n[96];
	snprintf(n, sizeof n, "model.layers.%d.self_attn.q_proj.weight", l);
	add_t(w, n, H, H, seed);
	snprintf(n, sizeof n, "model.layers.%d.mlp.down_proj.weight", l);
	add_t(w, n, H, I, seed);
	snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
	add_t(w, n, H, 0, seed);
}

static const char config[] = "{\n  \"architectures\": [\"LlamaForCausalLM\"]\n}\n";
static const char tokenizer[] = "{\"model\": {}}\n";
static const char report[] = "{\"layer\": 0}\n";

/* A Llama-shaped checkpoint with `layers` layers in `shards` shards (1 or
 * layers): embeddings with layer 0, final norm and lm_head with the last.
 * Files are added in a scrambled order: the writer must restore it. */
static int write_ckpt_opts(const char *out, int layers, int shards, unsigned seed, const qc_ckw_opts *o0)
{
	qc_ckw_opts o = o0 ? *o0 : (qc_ckw_opts){ 0 };
	o.n_shards = shards;
	if (!o.tool) {
		o.tool = "test_ckpt";
		o.version = "1";
	}
	qc_ckpt_writer *w;
	int rc = qc_ckw_open(&w, out, &o);
	if (rc)
		return rc;
	assert_int_equal(qc_ckw_add_file(w, "quant_report.jsonl", report, strlen(report)), 0);
	assert_int_equal(qc_ckw_add_file(w, "tokenizer.json", tokenizer, strlen(tokenizer)), 0);
	assert_int_equal(qc_ckw_add_file(w, "config.json", config, strlen(config)), 0);
	add_t(w, "model.embed_tokens.weight", V, H, seed);
	for (int l = 0; l < layers; l++) {
		add_layer(w, l, seed);
		if (l == layers - 1) {
			add_t(w, "model.norm.weight", H, 0, seed);
			add_t(w, "lm_head.weight", V, H, seed);
		}
		if (shards > 1)
			assert_int_equal(qc_ckw_end_shard(w, l == layers - 1 ? QC_GROUP_POST : l), 0);
	}
	if (shards == 1)
		assert_int_equal(qc_ckw_end_shard(w, QC_GROUP_POST), 0);
	return qc_ckw_close(w);
}

static void write_ckpt(const char *out, int layers, int shards, unsigned seed)
{
	assert_int_equal(write_ckpt_opts(out, layers, shards, seed, NULL), 0);
}

/* Run fn with stdout redirected to path (streams go to fd 1). */
static int to_file(const char *path, int (*fn)(void *), void *ctx)
{
	fflush(stdout);
	int saved = dup(1), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, 1);
	close(fd);
	int rc = fn(ctx);
	dup2(saved, 1);
	close(saved);
	return rc;
}

struct wargs { int layers, shards; unsigned seed; };
static int write_stream(void *p)
{
	struct wargs *a = p;
	return write_ckpt_opts("-", a->layers, a->shards, a->seed, NULL);
}

static char *slurp(const char *path, size_t *len)
{
	return tu_read(path, len);
}

static void expect_same_file(const char *a, const char *b)
{
	size_t la, lb;
	char *x = slurp(a, &la), *y = slurp(b, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(x, y, la);
	free(x);
	free(y);
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	int r = system(cmd);
	return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

// ---------------------------------------------------------------- groups

static void test_groups(void **state)
{
	(void)state;
	assert_int_equal(qc_ckpt_group_of("model.embed_tokens.weight"), QC_GROUP_PRE);
	assert_int_equal(qc_ckpt_group_of("model.layers.0.mlp.up_proj.weight"), 0);
	assert_int_equal(qc_ckpt_group_of("model.layers.125.self_attn.o_proj.weight_scale"), 125);
	assert_int_equal(qc_ckpt_group_of("model.norm.weight"), QC_GROUP_POST);
	assert_int_equal(qc_ckpt_group_of("lm_head.weight"), QC_GROUP_POST);
	assert_int_equal(qc_ckpt_group_of("model.layers.x.w"), QC_GROUP_POST);
	assert_int_equal(qc_ckpt_group_of("model.layers.3"), QC_GROUP_POST);
	assert_int_equal(qc_ckpt_group_of("model.layers.99999999999.w"), QC_GROUP_POST);
	char n[64];
	qc_ckpt_shard_name(n, 2, 4);
	assert_string_equal(n, "model-00002-of-00004.safetensors");
	qc_ckpt_shard_name(n, 1, 1);
	assert_string_equal(n, "model.safetensors");
}

// ---------------------------------------------------------------- directory

static void test_dir_roundtrip(void **state)
{
	(void)state;
	char *out = tu_path("d3");
	write_ckpt(out, 3, 3, 1);
	/* the layout on disk: shards, index, small files, manifest; no partial */
	assert_int_equal(sh("cd '%s' && test \"$(ls | tr '\\n' ' ')\" = 'config.json model-00001-of-00003.safetensors "
	                    "model-00002-of-00003.safetensors model-00003-of-00003.safetensors "
	                    "model.safetensors.index.json quant_manifest.json quant_report.jsonl tokenizer.json '",
	                    out), 0);
	assert_int_equal(sh("test ! -e '%s.partial'", out), 0);
	/* HF index layout, byte for byte what transformers writes */
	char *ip = qc_path_join(out, QC_CKPT_INDEX_NAME);
	size_t len;
	char *idx = slurp(ip, &len);
	assert_true(strncmp(idx, "{\n  \"metadata\": {\n    \"total_size\": ", 36) == 0);
	assert_non_null(strstr(idx, "\"lm_head.weight\": \"model-00003-of-00003.safetensors\",\n"));
	assert_non_null(strstr(idx, "\"model.embed_tokens.weight\": \"model-00001-of-00003.safetensors\""));
	assert_int_equal(idx[len - 1], '\n');
	free(idx);
	free(ip);

	qc_ckpt *ck;
	assert_int_equal(qc_ckpt_open(&ck, out, NULL), 0);
	assert_false(qc_ckpt_is_stream(ck));
	const qc_tensor *t;
	assert_int_equal(qc_ckpt_get(ck, "model.layers.1.mlp.down_proj.weight", &t), 0);
	assert_int_equal(t->dtype, QC_DT_BF16);
	assert_int_equal(t->shape[0], H);
	assert_int_equal(t->shape[1], I);
	void *expect = tensor_bytes("model.layers.1.mlp.down_proj.weight", H * I * 2, 1);
	assert_memory_equal(t->data, expect, H * I * 2);
	free(expect);
	qc_ckpt_release(ck, "model.layers.1.mlp.down_proj.weight");
	assert_int_equal(qc_ckpt_get(ck, "model.layers.1.mlp.down_proj.weight", &t), 0);   /* dir keeps maps */
	tu_assert_rc(qc_ckpt_get(ck, "nope", &t), QC_ENOTFOUND);
	const char *const *names;
	size_t n;
	assert_int_equal(qc_ckpt_group_names(ck, 2, &names, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "model.layers.2.input_layernorm.weight");
	assert_int_equal(qc_ckpt_group_names(ck, QC_GROUP_POST, &names, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "lm_head.weight");
	assert_int_equal(qc_ckpt_tensor_names(ck, &names, &n), 0);
	assert_int_equal(n, 3 * 3 + 3);
	assert_int_equal(qc_ckpt_file_count(ck), 3);
	assert_string_equal(qc_ckpt_file_name(ck, 0), "config.json");
	assert_string_equal(qc_ckpt_file_name(ck, 1), "quant_report.jsonl");
	assert_string_equal(qc_ckpt_file_name(ck, 2), "tokenizer.json");
	const void *data;
	assert_int_equal(qc_ckpt_file(ck, "tokenizer.json", &data, &len), 0);
	assert_int_equal(len, strlen(tokenizer));
	assert_string_equal(data, tokenizer);
	tu_assert_rc(qc_ckpt_file(ck, "absent.json", &data, &len), QC_ENOTFOUND);

	/* manifest: every file but itself, every tensor, fingerprint = base */
	const qc_manifest *m;
	assert_int_equal(qc_ckpt_manifest(ck, &m), 0);
	assert_non_null(m);
	assert_int_equal(qc_manifest_file_count(m), 7);
	assert_int_equal(qc_manifest_tensor_count(m), 12);
	assert_int_equal(qc_manifest_history_count(m), 1);
	assert_string_equal(qc_manifest_history_tool(m, 0), "test_ckpt");
	assert_string_equal(qc_manifest_base(m), qc_manifest_get_fingerprint(m));
	char fp[33];
	assert_int_equal(qc_ckpt_fingerprint(ck, fp), 0);
	assert_string_equal(fp, qc_manifest_get_fingerprint(m));
	assert_int_equal(qc_ckpt_verify(ck), 0);
	qc_ckpt_close(ck);
	qc_ckpt_close(NULL);

	/* xxhsum agrees with the recorded XXH3-128 of a file */
	assert_int_equal(sh("cd '%s' && h=$(xxhsum -H2 config.json 2>/dev/null | cut -d' ' -f1) && grep -q \"$h\" quant_manifest.json",
	                    out), 0);
	free(out);
}

static void test_single_shard_and_determinism(void **state)
{
	(void)state;
	char *a = tu_path("s1a"), *b = tu_path("s1b");
	write_ckpt(a, 2, 1, 5);
	write_ckpt(b, 2, 1, 5);
	assert_int_equal(sh("test -f '%s/model.safetensors' && test ! -e '%s/model.safetensors.index.json' && "
	                    "diff -r '%s' '%s'", a, a, a, b), 0);
	qc_ckpt *ck;
	assert_int_equal(qc_ckpt_open(&ck, a, NULL), 0);
	const qc_tensor *t;
	assert_int_equal(qc_ckpt_get(ck, "lm_head.weight", &t), 0);
	assert_int_equal(qc_ckpt_verify(ck), 0);
	qc_ckpt_close(ck);
	/* a different seed gives a different fingerprint */
	char *c = tu_path("s1c");
	write_ckpt(c, 2, 1, 6);
	char f1[33], f2[33];
	assert_int_equal(qc_ckpt_open(&ck, a, NULL), 0);
	assert_int_equal(qc_ckpt_fingerprint(ck, f1), 0);
	qc_ckpt_close(ck);
	assert_int_equal(qc_ckpt_open(&ck, c, NULL), 0);
	assert_int_equal(qc_ckpt_fingerprint(ck, f2), 0);
	qc_ckpt_close(ck);
	assert_string_not_equal(f1, f2);
	free(a), free(b), free(c);
}

// ---------------------------------------------------------------- streams

struct copy_args { const char *in; };
static int copy_to_stdout(void *p)
{
	struct copy_args *a = p;
	qc_ckpt *ck;
	qc_ckpt_writer *w;
	qc_ckw_opts o = { .verbatim = 1, .no_history = 1 };
	int rc = qc_ckpt_open(&ck, a->in, NULL);
	if (rc)
		return rc;
	rc = qc_ckw_open(&w, "-", &o);
	if (rc == 0) {
		rc = qc_ckpt_copy(ck, w);
		rc = rc ? (qc_ckw_abort(w), rc) : qc_ckw_close(w);
	}
	qc_ckpt_close(ck);
	return rc;
}

static int copy_to_dir(const char *in, const char *out)
{
	qc_ckpt *ck;
	qc_ckpt_writer *w;
	qc_ckw_opts o = { .verbatim = 1, .no_history = 1 };
	int rc = qc_ckpt_open(&ck, in, NULL);
	if (rc)
		return rc;
	rc = qc_ckw_open(&w, out, &o);
	if (rc == 0) {
		rc = qc_ckpt_copy(ck, w);
		rc = rc ? (qc_ckw_abort(w), rc) : qc_ckw_close(w);
	}
	qc_ckpt_close(ck);
	return rc;
}

static void test_stream_write_and_copy(void **state)
{
	(void)state;
	char *dir = tu_path("sdir"), *tar = tu_path("s.tar"), *tar2 = tu_path("s2.tar"), *back = tu_path("sback");
	write_ckpt(dir, 3, 3, 2);
	struct wargs wa = { 3, 3, 2 };
	assert_int_equal(to_file(tar, write_stream, &wa), 0);
	/* members in canonical order, as GNU tar lists them */
	assert_int_equal(sh("test \"$(tar tf '%s' | tr '\\n' ' ')\" = 'config.json tokenizer.json "
	                    "model-00001-of-00003.safetensors model-00002-of-00003.safetensors "
	                    "model-00003-of-00003.safetensors model.safetensors.index.json quant_report.jsonl "
	                    "quant_manifest.json '", tar), 0);
	/* the writer's stream is byte for byte the verbatim copy of its directory */
	struct copy_args ca = { dir };
	assert_int_equal(to_file(tar2, copy_to_stdout, &ca), 0);
	expect_same_file(tar, tar2);
	/* stream -> directory gives back the same files */
	assert_int_equal(copy_to_dir(tar, back), 0);
	assert_int_equal(sh("diff -r '%s' '%s'", dir, back), 0);
	/* and through zstd */
	assert_int_equal(sh("zstd -q -f '%s' -o '%s.zst'", tar, tar), 0);
	char zst[4200];
	snprintf(zst, sizeof zst, "%s.zst", tar);
	assert_int_equal(sh("rm -rf '%s'", back), 0);
	assert_int_equal(copy_to_dir(zst, back), 0);
	assert_int_equal(sh("diff -r '%s' '%s'", dir, back), 0);
	free(dir), free(tar), free(tar2), free(back);
}

/* A stream cut anywhere (every tar block boundary, and inside every block)
 * is an error for the reader, and its copy to a directory leaves nothing:
 * never a short checkpoint. Only the whole stream reads and copies. */
static void test_stream_every_cut(void **state)
{
	(void)state;
	char *tar = tu_path("cut-full.tar"), *cut = tu_path("cut.tar"), *out = tu_path("cut-out");
	struct wargs wa = { 2, 2, 7 };
	assert_int_equal(to_file(tar, write_stream, &wa), 0);
	size_t len;
	unsigned char *img = tu_read(tar, &len);
	assert_int_equal(len % 512, 0);
	int cuts = 0;
	for (size_t k = 0; k <= len; k += 512) {
		for (size_t c = k; c <= k + 300 && c <= len; c += 300) {
			tu_write(cut, img, c);
			qc_ckpt *ck = NULL;
			int rc = qc_ckpt_open(&ck, cut, NULL);
			if (rc == 0)
				rc = qc_ckpt_read_all(ck);
			if (rc == 0)
				rc = qc_ckpt_verify(ck);
			qc_ckpt_close(ck);
			int crc = copy_to_dir(cut, out);
			if (c == len) {
				tu_assert_rc(rc, 0);
				tu_assert_rc(crc, 0);
				assert_int_equal(sh("rm -rf '%s'", out), 0);
				continue;
			}
			if (rc != QC_EFORMAT || crc != QC_EFORMAT)
				fail_msg("cut at %zu of %zu: read %d, copy %d (%s)", c, len, rc, crc, qc_errmsg());
			assert_int_equal(sh("test ! -e '%s' && test ! -e '%s.partial'", out, out), 0);
			cuts++;
		}
	}
	assert_true(cuts > 2 * (int)(len / 512) - 2);
	free(img);
	free(tar), free(cut), free(out);
}

/* Layer-by-layer consumption of a stream, releasing as it goes. */
static void test_stream_read(void **state)
{
	(void)state;
	char *tar = tu_path("r.tar");
	struct wargs wa = { 4, 4, 3 };
	assert_int_equal(to_file(tar, write_stream, &wa), 0);
	qc_ckpt_opts o = { .hash_tensors = 1 };
	qc_ckpt *ck;
	assert_int_equal(qc_ckpt_open(&ck, tar, &o), 0);
	assert_true(qc_ckpt_is_stream(ck));
	/* small files before the first shard are there at once */
	assert_int_equal(qc_ckpt_file_count(ck), 2);
	const void *data;
	size_t len;
	assert_int_equal(qc_ckpt_file(ck, "config.json", &data, &len), 0);
	assert_string_equal(data, config);
	const char *const *names;
	size_t n;
	const qc_tensor *t;
	assert_int_equal(qc_ckpt_group_names(ck, QC_GROUP_PRE, &names, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(qc_ckpt_get(ck, names[0], &t), 0);
	void *e = tensor_bytes("model.embed_tokens.weight", V * H * 2, 3);
	assert_memory_equal(t->data, e, V * H * 2);
	free(e);
	qc_ckpt_release(ck, "model.embed_tokens.weight");
	tu_assert_rc(qc_ckpt_get(ck, "model.embed_tokens.weight", &t), QC_EINVAL);
	for (int l = 0; l < 4; l++) {
		assert_int_equal(qc_ckpt_group_names(ck, l, &names, &n), 0);
		assert_int_equal(n, 3);
		for (size_t i = 0; i < n; i++) {
			assert_int_equal(qc_ckpt_get(ck, names[i], &t), 0);
			void *x = tensor_bytes(names[i], t->nbytes, 3);
			assert_memory_equal(t->data, x, t->nbytes);
			free(x);
		}
		/* names stay valid after a release; copy them first */
		char *copy[3];
		for (size_t i = 0; i < n; i++)
			copy[i] = strdup(names[i]);
		for (size_t i = 0; i < 3; i++) {
			qc_ckpt_release(ck, copy[i]);
			free(copy[i]);
		}
	}
	assert_int_equal(qc_ckpt_group_names(ck, QC_GROUP_POST, &names, &n), 0);
	assert_int_equal(n, 2);
	/* the manifest comes after the index: reached by reading on */
	const qc_manifest *m;
	assert_int_equal(qc_ckpt_manifest(ck, &m), 0);
	assert_non_null(m);
	/* hashes were taken as the data passed: fingerprint and verify still work */
	char fp[33];
	assert_int_equal(qc_ckpt_fingerprint(ck, fp), 0);
	assert_string_equal(fp, qc_manifest_get_fingerprint(m));
	assert_int_equal(qc_ckpt_verify(ck), 0);
	assert_int_equal(qc_ckpt_file_count(ck), 3);   /* the report too, now */
	qc_ckpt_close(ck);

	/* without hash_tensors, released tensors cannot be hashed afterwards */
	assert_int_equal(qc_ckpt_open(&ck, tar, NULL), 0);
	assert_int_equal(qc_ckpt_get(ck, "model.layers.0.mlp.down_proj.weight", &t), 0);
	assert_int_equal(qc_ckpt_group_names(ck, QC_GROUP_PRE, &names, &n), 0);
	qc_ckpt_release(ck, "model.embed_tokens.weight");
	qc_ckpt_release(ck, "model.layers.0.mlp.down_proj.weight");
	qc_ckpt_release(ck, "model.layers.0.input_layernorm.weight");
	qc_ckpt_release(ck, "model.layers.0.self_attn.q_proj.weight");
	tu_assert_rc(qc_ckpt_fingerprint(ck, fp), QC_EINVAL);
	qc_ckpt_close(ck);

	/* a fresh stream can be verified in one pass; tensors are gone after it */
	assert_int_equal(qc_ckpt_open(&ck, tar, NULL), 0);
	assert_int_equal(qc_ckpt_verify(ck), 0);
	tu_assert_rc(qc_ckpt_get(ck, "lm_head.weight", &t), QC_EINVAL);
	qc_ckpt_close(ck);
	free(tar);
}

static int count_dir(const char *d)
{
	return sh("exit $(ls -A '%s' | wc -l)", d);
}

/* Asking for lm_head first reads every shard ahead: with a tiny memory
 * limit those go to the spill directory, which close removes. */
static void test_stream_spill(void **state)
{
	(void)state;
	char *tar = tu_path("sp.tar"), *tmp = tu_path("spilltmp");
	struct wargs wa = { 3, 3, 4 };
	assert_int_equal(to_file(tar, write_stream, &wa), 0);
	assert_int_equal(qc_mkdirs(tmp, 0755), 0);
	qc_ckpt_opts o = { .stream_mem_limit = 1, .tmpdir = tmp };
	qc_ckpt *ck;
	assert_int_equal(qc_ckpt_open(&ck, tar, &o), 0);
	const qc_tensor *t;
	assert_int_equal(qc_ckpt_get(ck, "lm_head.weight", &t), 0);
	void *e = tensor_bytes("lm_head.weight", V * H * 2, 4);
	assert_memory_equal(t->data, e, V * H * 2);
	free(e);
	assert_int_equal(count_dir(tmp), 1);           /* one spill directory */
	assert_int_equal(qc_ckpt_get(ck, "model.layers.0.self_attn.q_proj.weight", &t), 0);
	e = tensor_bytes("model.layers.0.self_attn.q_proj.weight", H * H * 2, 4);
	assert_memory_equal(t->data, e, H * H * 2);
	free(e);
	/* a report after the shards: found by reading on */
	const void *data;
	size_t len;
	assert_int_equal(qc_ckpt_file(ck, "quant_report.jsonl", &data, &len), 0);
	assert_string_equal(data, report);
	assert_int_equal(qc_ckpt_read_all(ck), 0);
	qc_ckpt_close(ck);
	assert_int_equal(count_dir(tmp), 0);
	free(tar);
	free(tmp);
}

/* Listing: members and tensors in stream order. */
struct lines { char buf[8192]; };
static int list_cb(void *ctx, const char *member, uint64_t size, const qc_tensor *t)
{
	struct lines *l = ctx;
	size_t u = strlen(l->buf);
	if (t)
		snprintf(l->buf + u, sizeof l->buf - u, "  %s%s\n", t->name, t->data ? " DATA" : "");
	else
		snprintf(l->buf + u, sizeof l->buf - u, "%s %llu\n", member, (unsigned long long)size);
	return 0;
}

static void test_list(void **state)
{
	(void)state;
	char *dir = tu_path("ldir"), *tar = tu_path("l.tar");
	write_ckpt(dir, 2, 2, 9);
	struct wargs wa = { 2, 2, 9 };
	assert_int_equal(to_file(tar, write_stream, &wa), 0);
	static struct lines a, b;
	qc_ckpt *ck;
	assert_int_equal(qc_ckpt_open(&ck, dir, NULL), 0);
	assert_int_equal(qc_ckpt_list(ck, list_cb, &a), 0);
	tu_assert_rc(qc_ckpt_list(ck, list_cb, &a), QC_EINVAL);
	qc_ckpt_close(ck);
	assert_int_equal(qc_ckpt_open(&ck, tar, NULL), 0);
	assert_int_equal(qc_ckpt_list(ck, list_cb, &b), 0);
	qc_ckpt_close(ck);
	assert_string_equal(a.buf, b.buf);
	assert_true(strncmp(a.buf, "config.json ", 12) == 0);
	assert_non_null(strstr(a.buf, "model-00001-of-00002.safetensors "));
	assert_non_null(strstr(a.buf, "\n  model.embed_tokens.weight\n"));
	assert_null(strstr(a.buf, "DATA"));
	free(dir);
	free(tar);
}

// ---------------------------------------------------------------- writer rules

static void test_writer_rules(void **state)
{
	(void)state;
	char *out = tu_path("wr");
	qc_ckw_opts o = { .n_shards = 2 };
	qc_ckpt_writer *w;
	assert_int_equal(qc_ckw_open(&w, out, &o), 0);
	tu_assert_rc(qc_ckw_add_file(w, QC_MANIFEST_NAME, "{}", 2), QC_EINVAL);
	tu_assert_rc(qc_ckw_add_file(w, QC_CKPT_INDEX_NAME, "{}", 2), QC_EINVAL);
	tu_assert_rc(qc_ckw_add_file(w, "x.safetensors", "", 0), QC_EINVAL);
	tu_assert_rc(qc_ckw_add_file(w, "../x", "", 0), QC_EINVAL);
	tu_assert_rc(qc_ckw_add_member(w, "x", 0, NULL, NULL), QC_EINVAL);
	assert_int_equal(qc_ckw_add_file(w, "config.json", config, strlen(config)), 0);
	tu_assert_rc(qc_ckw_add_file(w, "config.json", config, strlen(config)), QC_EINVAL);
	add_layer(w, 1, 1);
	assert_int_equal(qc_ckw_end_shard(w, 1), 0);
	/* layer 0 after layer 1 was complete: refused */
	add_layer(w, 0, 1);
	tu_assert_rc(qc_ckw_end_shard(w, QC_GROUP_POST), QC_EINVAL);
	assert_non_null(strstr(qc_errmsg(), "layer order"));
	/* the writer is broken now: closing fails and leaves nothing */
	tu_assert_rc(qc_ckw_close(w), QC_EINVAL);
	assert_int_equal(sh("test ! -e '%s' && test ! -e '%s.partial'", out, out), 0);

	/* missing shards at close */
	assert_int_equal(qc_ckw_open(&w, out, &o), 0);
	assert_int_equal(qc_ckw_add_file(w, "config.json", config, strlen(config)), 0);
	add_layer(w, 0, 1);
	assert_int_equal(qc_ckw_end_shard(w, 0), 0);
	tu_assert_rc(qc_ckw_close(w), QC_EINVAL);
	assert_non_null(strstr(qc_errmsg(), "1 of 2 shards"));
	assert_int_equal(sh("test ! -e '%s' && test ! -e '%s.partial'", out, out), 0);

	/* too many shards; tensors left after the last shard */
	o.n_shards = 1;
	assert_int_equal(qc_ckw_open(&w, out, &o), 0);
	assert_int_equal(qc_ckw_end_shard(w, QC_GROUP_PRE - 1), 0);
	tu_assert_rc(qc_ckw_end_shard(w, QC_GROUP_PRE - 1), QC_EINVAL);
	qc_ckw_abort(w);
	assert_int_equal(qc_ckw_open(&w, out, &o), 0);
	assert_int_equal(qc_ckw_end_shard(w, QC_GROUP_PRE - 1), 0);
	add_layer(w, 0, 1);
	tu_assert_rc(qc_ckw_close(w), QC_EINVAL);
	assert_int_equal(sh("test ! -e '%s.partial'", out), 0);

	/* keep_partial keeps the partial directory on abort */
	qc_ckw_opts k = { .n_shards = 1, .keep_partial = 1 };
	assert_int_equal(qc_ckw_open(&w, out, &k), 0);
	qc_ckw_abort(w);
	assert_int_equal(sh("test -d '%s.partial' && rm -r '%s.partial'", out, out), 0);
	qc_ckw_abort(NULL);

	/* an existing non-empty output: refused, then replaced with force */
	write_ckpt(out, 1, 1, 1);
	tu_assert_rc(write_ckpt_opts(out, 1, 1, 2, NULL), QC_EINVAL);
	assert_non_null(strstr(qc_errmsg(), "exists and is not empty"));
	qc_ckw_opts f = { .force = 1 };
	assert_int_equal(write_ckpt_opts(out, 2, 2, 2, &f), 0);
	assert_int_equal(sh("test -f '%s/model-00002-of-00002.safetensors' && test ! -e '%s/model.safetensors' "
	                    "&& test \"$(ls -d '%s'* | wc -l)\" = 1", out, out, out), 0);
	/* a file in the way, and an empty directory (which is fine) */
	char *file = tu_path("afile");
	tu_write(file, "x", 1);
	tu_assert_rc(write_ckpt_opts(file, 1, 1, 1, NULL), QC_EINVAL);
	assert_int_equal(write_ckpt_opts(file, 1, 1, 1, &f), 0);
	assert_true(qc_is_dir(file));
	char *empty = tu_path("emptydir");
	assert_int_equal(qc_mkdirs(empty, 0755), 0);
	assert_int_equal(write_ckpt_opts(empty, 1, 1, 1, NULL), 0);
	/* trailing slashes name the same directory */
	char *slash = tu_path("slashed/");
	assert_int_equal(write_ckpt_opts(slash, 1, 1, 1, NULL), 0);
	assert_int_equal(sh("test -f '%s/config.json' && test ! -e '%s.partial'", out, out), 0);
	free(out), free(file), free(empty), free(slash);
}

// ---------------------------------------------------------------- planned shards

/* How a test plans each shard: not at all, exactly, or wrongly in one way
 * (the writer must then write the same files as without a plan). */
enum plan_how { PLAN_NONE, PLAN_EXACT, PLAN_MISSING, PLAN_EXTRA, PLAN_SHAPE, PLAN_GROUPS };

struct pdecl {
	qc_tensor t[24];
	char names[24][96];
	size_t n;
};

static void pdecl_add(struct pdecl *d, const char *name, int64_t r, int64_t c)
{
	qc_tensor *t = &d->t[d->n];
	memset(t, 0, sizeof *t);
	snprintf(d->names[d->n], sizeof d->names[0], "%s", name);
	t->name = d->names[d->n];
	t->dtype = QC_DT_BF16;
	t->ndim = c ? 2 : 1;
	t->shape[0] = r;
	t->shape[1] = c;
	d->n++;
}

/* Layer l's shard of a `layers`-layer checkpoint with one shard per layer,
 * the embedding `big` rows tall (several of the writer's 1 MiB pieces). */
static void plan_layer_shard(qc_ckpt_writer *w, int l, int layers, int64_t big, enum plan_how how)
{
	struct pdecl d = { .n = 0 };
	char n[96];
	if (l == 0)
		pdecl_add(&d, "model.embed_tokens.weight", big, H);
	snprintf(n, sizeof n, "model.layers.%d.self_attn.q_proj.weight", l);
	pdecl_add(&d, n, H, H);
	snprintf(n, sizeof n, "model.layers.%d.mlp.down_proj.weight", l);
	pdecl_add(&d, n, H, I);
	snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
	pdecl_add(&d, n, H, 0);
	snprintf(n, sizeof n, "model.layers.%d.empty", l);   /* zero bytes */
	pdecl_add(&d, n, 0, 0);
	if (l == layers - 1) {
		pdecl_add(&d, "model.norm.weight", H, 0);
		pdecl_add(&d, "lm_head.weight", big, H);
	}
	int gc = l == layers - 1 ? QC_GROUP_POST : l;
	if (how == PLAN_MISSING)
		d.n--;
	if (how == PLAN_EXTRA)
		pdecl_add(&d, "model.layers.0.never.added", 3, 0);
	if (how == PLAN_SHAPE)
		d.t[0].shape[0]++;
	if (how == PLAN_GROUPS)
		gc = l;
	assert_int_equal(qc_ckw_plan_shard(w, d.t, d.n, gc), 0);
}

/* write_ckpt's layout (one shard per layer) with every shard planned as
 * `how` says and the tensors added in an order other than the file's: the
 * lm_head, first in the file, comes last. */
static int write_planned(const char *out, int layers, int64_t big, enum plan_how how)
{
	qc_ckw_opts o = { .n_shards = layers, .tool = "test_ckpt", .version = "1" };
	qc_ckpt_writer *w;
	QC_TRY(qc_ckw_open(&w, out, &o));
	assert_int_equal(qc_ckw_add_file(w, "config.json", config, strlen(config)), 0);
	for (int l = 0; l < layers; l++) {
		if (how != PLAN_NONE)
			plan_layer_shard(w, l, layers, big, how);
		if (l == 0)
			add_t(w, "model.embed_tokens.weight", big, H, 3);
		add_layer(w, l, 3);
		char empty[64];
		snprintf(empty, sizeof empty, "model.layers.%d.empty", l);
		add_t(w, empty, 0, 0, 3);
		if (l == layers - 1) {
			add_t(w, "model.norm.weight", H, 0, 3);
			add_t(w, "lm_head.weight", big, H, 3);
		}
		int rc = qc_ckw_end_shard(w, l == layers - 1 ? QC_GROUP_POST : l);
		if (rc) {
			qc_ckw_abort(w);
			return rc;
		}
	}
	return qc_ckw_close(w);
}

static int write_planned_stream(void *p)
{
	return write_planned("-", 2, 300000, *(enum plan_how *)p);
}

static void test_planned_shards(void **state)
{
	(void)state;
	/* 300000 x 8 BF16 = 4.8 MB: five pieces for the thread */
	const int64_t big = 300000;
	char *ref = tu_path("plan-none");
	assert_int_equal(write_planned(ref, 2, big, PLAN_NONE), 0);
	static const enum plan_how hows[] = { PLAN_EXACT, PLAN_MISSING, PLAN_EXTRA, PLAN_SHAPE,
		                              PLAN_GROUPS };
	for (size_t i = 0; i < sizeof hows / sizeof hows[0]; i++) {
		char name[32];
		snprintf(name, sizeof name, "plan-%zu", i);
		char *out = tu_path(name);
		assert_int_equal(write_planned(out, 2, big, hows[i]), 0);
		/* the same bytes, the manifest (file and tensor hashes) included */
		assert_int_equal(sh("diff -r '%s' '%s'", ref, out), 0);
		qc_ckpt *ck;
		assert_int_equal(qc_ckpt_open(&ck, out, NULL), 0);
		assert_int_equal(qc_ckpt_verify(ck), 0);
		qc_ckpt_close(ck);
		free(out);
	}
	/* one layer: a single shard holding everything */
	char *one = tu_path("plan-one"), *one_ref = tu_path("plan-one-ref");
	assert_int_equal(write_planned(one_ref, 1, big, PLAN_NONE), 0);
	assert_int_equal(write_planned(one, 1, big, PLAN_EXACT), 0);
	assert_int_equal(sh("diff -r '%s' '%s'", one_ref, one), 0);

	/* a stream ignores the plan */
	char *t0 = tu_path("plan-none.tar"), *t1 = tu_path("plan-exact.tar");
	enum plan_how none = PLAN_NONE, exact = PLAN_EXACT;
	assert_int_equal(to_file(t0, write_planned_stream, &none), 0);
	assert_int_equal(to_file(t1, write_planned_stream, &exact), 0);
	expect_same_file(t0, t1);

	/* planning a shard that has begun, twice, or past the last shard */
	qc_ckw_opts o = { .n_shards = 1 };
	qc_ckpt_writer *w;
	char *bad = tu_path("plan-bad");
	assert_int_equal(qc_ckw_open(&w, bad, &o), 0);
	add_t(w, "model.norm.weight", H, 0, 1);
	tu_assert_rc(qc_ckw_plan_shard(w, NULL, 0, QC_GROUP_POST), QC_EINVAL);
	qc_ckw_abort(w);
	assert_int_equal(qc_ckw_open(&w, bad, &o), 0);
	assert_int_equal(qc_ckw_plan_shard(w, NULL, 0, QC_GROUP_POST), 0);
	tu_assert_rc(qc_ckw_plan_shard(w, NULL, 0, QC_GROUP_POST), QC_EINVAL);
	assert_int_equal(qc_ckw_end_shard(w, QC_GROUP_POST), 0);
	tu_assert_rc(qc_ckw_plan_shard(w, NULL, 0, QC_GROUP_POST), QC_EINVAL);
	qc_ckw_abort(w);
	assert_int_equal(sh("test ! -e '%s.partial'", bad), 0);

	/* a write error on the thread (the file size limit) fails the shard,
	 * with its message, and leaves nothing behind */
	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 1 << 20;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	char *full = tu_path("plan-full");
	int rc = write_planned(full, 2, big, PLAN_EXACT);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	tu_assert_rc(rc, QC_EIO);
	assert_non_null(strstr(qc_errmsg(), "write error on"));
	assert_non_null(strstr(qc_errmsg(), "model-00001-of-00002.safetensors"));
	assert_int_equal(sh("test ! -e '%s' && test ! -e '%s.partial'", full, full), 0);
	free(ref), free(one), free(one_ref), free(t0), free(t1), free(bad), free(full);
}

/* A held tensor outlives releases by others until its last unhold. */
static void test_hold(void **state)
{
	(void)state;
	char *tar = tu_path("hold.tar");
	struct wargs a = { 2, 2, 4 };
	assert_int_equal(to_file(tar, write_stream, &a), 0);
	qc_ckpt *ck;
	assert_int_equal(qc_ckpt_open(&ck, tar, NULL), 0);
	const qc_tensor *t, *u;
	const char *name = "model.embed_tokens.weight";
	assert_int_equal(qc_ckpt_get(ck, name, &t), 0);
	void *copy = malloc(t->nbytes);
	memcpy(copy, t->data, t->nbytes);
	assert_int_equal(qc_ckpt_hold(ck, name), 0);
	assert_int_equal(qc_ckpt_hold(ck, name), 0);
	qc_ckpt_release(ck, name);      /* deferred: held twice */
	qc_ckpt_unhold(ck, name);
	assert_int_equal(qc_ckpt_get(ck, name, &u), 0);
	assert_memory_equal(u->data, copy, t->nbytes);
	qc_ckpt_unhold(ck, name);       /* the last hold: released now */
	tu_assert_rc(qc_ckpt_get(ck, name, &u), QC_EINVAL);
	qc_ckpt_unhold(ck, name);       /* not held: nothing */
	tu_assert_rc(qc_ckpt_hold(ck, name), QC_EINVAL);
	tu_assert_rc(qc_ckpt_hold(ck, "no.such.tensor"), QC_ENOTFOUND);
	/* held and never released by anyone: unhold leaves it readable */
	const char *q = "model.layers.0.self_attn.q_proj.weight";
	assert_int_equal(qc_ckpt_get(ck, q, &u), 0);
	assert_int_equal(qc_ckpt_hold(ck, q), 0);
	qc_ckpt_unhold(ck, q);
	assert_int_equal(qc_ckpt_get(ck, q, &u), 0);
	qc_ckpt_close(ck);
	free(copy);
	free(tar);
}

/* A terminal on stdout is refused for streams. */
static void test_refuse_terminal(void **state)
{
	(void)state;
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m)) {
		skip();
		return;
	}
	int s = open(ptsname(m), O_RDWR | O_NOCTTY);
	assert_true(s >= 0);
	fflush(stdout);
	int saved = dup(1);
	dup2(s, 1);
	qc_ckw_opts o = { .n_shards = 1 };
	qc_ckpt_writer *w = NULL;
	int rc = qc_ckw_open(&w, "-", &o);
	dup2(saved, 1);
	close(saved);
	close(s);
	close(m);
	tu_assert_rc(rc, QC_EINVAL);
	assert_non_null(strstr(qc_errmsg(), "terminal"));
	assert_null(w);
}

/* History, base and token sets carried from an input manifest. */
static void test_inherit(void **state)
{
	(void)state;
	char *a = tu_path("ia"), *b = tu_path("ib"), *c = tu_path("ic");
	write_ckpt(a, 1, 1, 1);
	qc_ckpt *ck;
	const qc_manifest *ma;
	assert_int_equal(qc_ckpt_open(&ck, a, NULL), 0);
	assert_int_equal(qc_ckpt_manifest(ck, &ma), 0);
	char *argv[] = { "qgptq", "--scheme", "w4a16" };
	qc_ckw_opts o = { .inherit = ma, .tool = "qgptq", .version = "0.1.0", .argc = 3, .argv = argv };
	qc_ckpt_writer *w;
	o.n_shards = 1;
	assert_int_equal(qc_ckw_open(&w, b, &o), 0);
	assert_int_equal(qc_ckw_add_file(w, "config.json", config, strlen(config)), 0);
	add_layer(w, 0, 77);
	qc_h128 ts = { 1, 2 };
	assert_int_equal(qc_ckw_add_token_set(w, "calibration", ts), 0);
	assert_int_equal(qc_ckw_end_shard(w, QC_GROUP_POST), 0);
	assert_int_equal(qc_ckw_close(w), 0);
	qc_ckpt *cb;
	const qc_manifest *mb;
	assert_int_equal(qc_ckpt_open(&cb, b, NULL), 0);
	assert_int_equal(qc_ckpt_manifest(cb, &mb), 0);
	assert_int_equal(qc_manifest_history_count(mb), 2);
	assert_string_equal(qc_manifest_history_tool(mb, 0), "test_ckpt");
	assert_string_equal(qc_manifest_history_tool(mb, 1), "qgptq");
	assert_string_equal(qc_manifest_base(mb), qc_manifest_base(ma));
	assert_string_not_equal(qc_manifest_get_fingerprint(mb), qc_manifest_base(mb));
	assert_int_equal(qc_ckpt_verify(cb), 0);
	qc_ckpt_close(cb);

	/* an explicit base wins; no_history adds no entry */
	qc_ckw_opts p = { .n_shards = 1, .inherit = ma, .no_history = 1, .tool = "x" };
	assert_int_equal(qc_ckw_open(&w, c, &p), 0);
	assert_int_equal(qc_ckw_add_file(w, "config.json", config, strlen(config)), 0);
	add_layer(w, 0, 78);
	tu_assert_rc(qc_ckw_set_base(w, "not-hex", NULL), QC_EINVAL);
	assert_int_equal(qc_ckw_set_base(w, "0123456789abcdef0123456789abcdef", "base/"), 0);
	assert_int_equal(qc_ckw_end_shard(w, QC_GROUP_POST), 0);
	assert_int_equal(qc_ckw_close(w), 0);
	assert_int_equal(qc_ckpt_open(&cb, c, NULL), 0);
	assert_int_equal(qc_ckpt_manifest(cb, &mb), 0);
	assert_int_equal(qc_manifest_history_count(mb), 1);
	assert_string_equal(qc_manifest_base(mb), "0123456789abcdef0123456789abcdef");
	qc_ckpt_close(cb);
	qc_ckpt_close(ck);
	free(a), free(b), free(c);
}

// ---------------------------------------------------------------- verify

static void test_verify_mismatch(void **state)
{
	(void)state;
	char *d = tu_path("v");
	qc_ckpt *ck;
	/* a flipped byte inside a tensor names the shard and the tensor */
	write_ckpt(d, 2, 2, 1);
	char *shard = qc_path_join(d, "model-00002-of-00002.safetensors");
	size_t len;
	unsigned char *img = tu_read(shard, &len);
	/* find the tensor's bytes by their content */
	void *expect = tensor_bytes("model.layers.1.mlp.down_proj.weight", H * I * 2, 1);
	unsigned char *at = memmem(img, len, expect, H * I * 2);
	assert_non_null(at);
	at[5] ^= 0x40;
	tu_write(shard, img, len);
	free(img);
	free(expect);
	assert_int_equal(qc_ckpt_open(&ck, d, NULL), 0);
	tu_assert_rc(qc_ckpt_verify(ck), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "tensor 'model.layers.1.mlp.down_proj.weight' in "
	                                    "'model-00002-of-00002.safetensors' does not match"));
	qc_ckpt_close(ck);

	/* a changed small file */
	assert_int_equal(sh("rm -r '%s'", d), 0);
	write_ckpt(d, 2, 2, 1);
	assert_int_equal(sh("printf x >> '%s/tokenizer.json'", d), 0);
	assert_int_equal(qc_ckpt_open(&ck, d, NULL), 0);
	tu_assert_rc(qc_ckpt_verify(ck), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "file 'tokenizer.json'"));
	qc_ckpt_close(ck);
	/* an extra file, a missing file */
	assert_int_equal(sh("cp '%s/tokenizer.json' '%s/extra.txt'; rm -r '%s'; true", d, d, d), 0);
	write_ckpt(d, 2, 2, 1);
	assert_int_equal(sh("printf x > '%s/extra.txt'", d), 0);
	assert_int_equal(qc_ckpt_open(&ck, d, NULL), 0);
	tu_assert_rc(qc_ckpt_verify(ck), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "file 'extra.txt' of"));
	assert_non_null(strstr(qc_errmsg(), "is not in the manifest"));
	qc_ckpt_close(ck);
	assert_int_equal(sh("rm '%s/extra.txt' '%s/quant_report.jsonl'", d, d), 0);
	assert_int_equal(qc_ckpt_open(&ck, d, NULL), 0);
	tu_assert_rc(qc_ckpt_verify(ck), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "file 'quant_report.jsonl' listed in the manifest is missing"));
	qc_ckpt_close(ck);
	/* a file that vanishes after open: the hashing threads report it */
	assert_int_equal(qc_ckpt_open(&ck, d, NULL), 0);
	assert_int_equal(sh("rm '%s/tokenizer.json'", d), 0);
	tu_assert_rc(qc_ckpt_verify(ck), QC_EIO);
	assert_non_null(strstr(qc_errmsg(), "tokenizer.json': No such file or directory"));
	qc_ckpt_close(ck);
	/* no manifest */
	assert_int_equal(sh("rm '%s/quant_manifest.json'", d), 0);
	assert_int_equal(qc_ckpt_open(&ck, d, NULL), 0);
	tu_assert_rc(qc_ckpt_verify(ck), QC_ENOTFOUND);
	const qc_manifest *m = (const qc_manifest *)1;
	assert_int_equal(qc_ckpt_manifest(ck, &m), 0);
	assert_null(m);
	qc_ckpt_close(ck);
	free(shard);
	free(d);
}

// ---------------------------------------------------------------- malformed

/* Edit the index of a fresh 2-shard checkpoint with sed, expect QC_EFORMAT. */
static void bad_index(const char *d, const char *sed, const char *msg)
{
	assert_int_equal(sh("rm -rf '%s'", d), 0);
	write_ckpt(d, 2, 2, 1);
	assert_int_equal(sh("cd '%s' && sed -i '%s' model.safetensors.index.json", d, sed), 0);
	qc_ckpt *ck = (qc_ckpt *)1;
	int rc = qc_ckpt_open(&ck, d, NULL);
	if (rc != QC_EFORMAT || !strstr(qc_errmsg(), msg)) {
		print_error("index edit '%s': rc %d, message '%s', expected '%s'\n", sed, rc, qc_errmsg(), msg);
		fail();
	}
	assert_null(ck);
}

static void test_bad_dirs(void **state)
{
	(void)state;
	char *d = tu_path("bad");
	bad_index(d, "s|\"model-00002-of-00002.safetensors\",|\"../x.safetensors\",|",
	          "unsafe file '../x.safetensors'");
	bad_index(d, "s|\"model-00002-of-00002.safetensors\",|\"/etc/passwd\",|", "unsafe file '/etc/passwd'");
	bad_index(d, "s|\"model-00002-of-00002.safetensors\",|\"config.json\",|", "not a .safetensors file");
	bad_index(d, "s|\"model-00002-of-00002.safetensors\",|\"model-00009-of-00009.safetensors\",|",
	          "but '");
	bad_index(d, "s|\"lm_head.weight\": \"model-00002-of-00002|\"lm_head.weight\": \"model-00001-of-00002|",
	          "puts tensor 'lm_head.weight' in 'model-00001-of-00002.safetensors', but "
	          "'model-00002-of-00002.safetensors' holds it");
	bad_index(d, "/\"lm_head.weight\"/d", "tensor 'lm_head.weight' in 'model-00002-of-00002.safetensors' "
	          "is not listed");
	bad_index(d, "s|\"lm_head.weight\"|\"ghost.weight\"|", "is not listed");
	bad_index(d, "s|\"weight_map\"|\"weights\"|", "has no \"weight_map\"");
	bad_index(d, "s|{|[|", "bad JSON");
	bad_index(d, "s|\"lm_head.weight\": \"model-00002-of-00002.safetensors\"|\"lm_head.weight\": 5|",
	          "not a file name");

	qc_ckpt *ck;
	/* no config.json; no safetensors; a stray shard; sharded without index */
	assert_int_equal(sh("rm -rf '%s' && mkdir '%s'", d, d), 0);
	write_ckpt(d, 2, 2, 1);
	assert_int_equal(sh("rm '%s/config.json'", d), 0);
	tu_assert_rc(qc_ckpt_open(&ck, d, NULL), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "no config.json"));
	assert_int_equal(sh("rm -rf '%s' && mkdir '%s' && echo {} > '%s/config.json'", d, d, d), 0);
	tu_assert_rc(qc_ckpt_open(&ck, d, NULL), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "no safetensors"));
	assert_int_equal(sh("rm -rf '%s'", d), 0);
	write_ckpt(d, 2, 2, 1);
	qc_st_writer *sw = qc_st_writer_new();
	int64_t one[1] = { 1 };
	uint16_t val = 7;
	assert_int_equal(qc_st_writer_add(sw, "extra.w", QC_DT_BF16, 1, one, &val, 0), 0);
	char *stray = qc_path_join(d, "stray.safetensors");
	assert_int_equal(qc_st_writer_save(sw, stray), 0);
	qc_st_writer_free(sw);
	free(stray);
	tu_assert_rc(qc_ckpt_open(&ck, d, NULL), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "tensor 'extra.w' in 'stray.safetensors' is not listed"));
	assert_int_equal(sh("cd '%s' && rm stray.safetensors model.safetensors.index.json", d), 0);
	tu_assert_rc(qc_ckpt_open(&ck, d, NULL), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "is not model.safetensors and there is no"));
	/* a tensor in two shards (index edited to agree with one of them) */
	assert_int_equal(sh("rm -rf '%s'", d), 0);
	write_ckpt(d, 2, 2, 1);
	assert_int_equal(sh("cd '%s' && cp model-00001-of-00002.safetensors model-00002-of-00002.safetensors", d), 0);
	tu_assert_rc(qc_ckpt_open(&ck, d, NULL), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "tensor 'model.embed_tokens.weight' is in both "
	                                    "'model-00001-of-00002.safetensors' and 'model-00002-of-00002.safetensors'"));
	/* a corrupt shard header is reported with the shard's path */
	assert_int_equal(sh("rm -rf '%s'", d), 0);
	write_ckpt(d, 2, 2, 1);
	assert_int_equal(sh("cd '%s' && printf '\\377\\377' | dd of=model-00001-of-00002.safetensors bs=1 seek=0 "
	                    "conv=notrunc 2>/dev/null", d), 0);
	tu_assert_rc(qc_ckpt_open(&ck, d, NULL), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "model-00001-of-00002.safetensors"));
	/* a missing path */
	tu_assert_rc(qc_ckpt_open(&ck, "/nonexistent/ckpt", NULL), QC_EIO);
	free(d);
}

/* Streams built by hand: shards in the wrong order, a missing index, junk. */
static void write_members(const char *tar, const char *dir, const char *const *names, size_t n, int end)
{
	qc_membuf b = { 0 };
	qc_sink s;
	qc_sink_membuf(&s, &b, "mem");
	for (size_t i = 0; i < n; i++) {
		char *p = qc_path_join(dir, names[i]);
		size_t len;
		char *data = tu_read(p, &len);
		assert_int_equal(qc_tar_write_file(&s, names[i], data, len), 0);
		free(data);
		free(p);
	}
	if (end)
		assert_int_equal(qc_tar_write_end(&s), 0);
	tu_write(tar, b.data, b.len);
	qc_membuf_free(&b);
}

static int read_stream_all(const char *tar)
{
	qc_ckpt *ck;
	int rc = qc_ckpt_open(&ck, tar, NULL);
	if (rc)
		return rc;
	rc = qc_ckpt_read_all(ck);
	qc_ckpt_close(ck);
	return rc;
}

static void test_bad_streams(void **state)
{
	(void)state;
	char *d = tu_path("bsd"), *tar = tu_path("bs.tar");
	write_ckpt(d, 3, 3, 1);
	static const char *s1 = "model-00001-of-00003.safetensors", *s2 = "model-00002-of-00003.safetensors",
	                  *s3 = "model-00003-of-00003.safetensors", *ix = QC_CKPT_INDEX_NAME;
	/* hand-made but fine: index first, config after a shard */
	const char *ok[] = { ix, s1, "config.json", s2, s3 };
	write_members(tar, d, ok, 5, 1);
	assert_int_equal(read_stream_all(tar), 0);
	/* out of layer order */
	const char *order[] = { "config.json", s2, s1, s3, ix };
	write_members(tar, d, order, 5, 1);
	tu_assert_rc(read_stream_all(tar), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "out of layer order: tensor 'model.embed_tokens.weight' in "
	                                    "'model-00001-of-00003.safetensors' comes after the stream completed the embeddings"));
	assert_non_null(strstr(qc_errmsg(), "untar the stream"));
	/* several shards, no index */
	const char *noidx[] = { "config.json", s1, s2, s3 };
	write_members(tar, d, noidx, 4, 1);
	tu_assert_rc(read_stream_all(tar), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "3 safetensors files but no"));
	/* a shard missing that the index names */
	const char *miss[] = { "config.json", s1, s2, ix };
	write_members(tar, d, miss, 4, 1);
	tu_assert_rc(read_stream_all(tar), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "but the file is missing"));
	/* no config.json */
	const char *nocfg[] = { s1, s2, s3, ix };
	write_members(tar, d, nocfg, 4, 1);
	tu_assert_rc(read_stream_all(tar), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "no config.json"));
	/* a member twice */
	const char *twice[] = { "config.json", "config.json" };
	write_members(tar, d, twice, 2, 1);
	tu_assert_rc(read_stream_all(tar), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "appears twice"));
	/* truncated: no end blocks; cut inside a shard */
	const char *all[] = { "config.json", s1, s2, s3, ix };
	write_members(tar, d, all, 5, 0);
	tu_assert_rc(read_stream_all(tar), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "no end-of-archive"));
	write_members(tar, d, all, 5, 1);
	assert_int_equal(sh("truncate -s 3000 '%s'", tar), 0);
	tu_assert_rc(read_stream_all(tar), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "is truncated"));
	/* a shard whose header lies (length beyond the member) */
	write_members(tar, d, all, 5, 1);
	assert_int_equal(sh("printf '\\377\\377\\377' | dd of='%s' bs=1 seek=$((512*2+512+2)) conv=notrunc 2>/dev/null",
	                    tar), 0);
	tu_assert_rc(read_stream_all(tar), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "invalid safetensors file 'model-00001-of-00003.safetensors'"));
	/* an error is sticky: the stream cannot go on */
	qc_ckpt *ck;
	write_members(tar, d, order, 5, 1);
	assert_int_equal(qc_ckpt_open(&ck, tar, NULL), 0);
	const qc_tensor *t;
	tu_assert_rc(qc_ckpt_get(ck, "lm_head.weight", &t), QC_EFORMAT);
	tu_assert_rc(qc_ckpt_get(ck, "lm_head.weight", &t), QC_EFORMAT);
	qc_ckpt_close(ck);
	/* not a tar at all */
	tu_write(tar, "hello world, this is not a tar stream", 37);
	tu_assert_rc(qc_ckpt_open(&ck, tar, NULL), QC_EFORMAT);
	/* a directory whose shards interleave layers cannot be streamed: shard A
	 * holds layers 0 and 2, shard B layer 1 (valid as a directory) */
	char *il = tu_path("interleaved");
	assert_int_equal(qc_mkdirs(il, 0755), 0);
	static const char *lay[3] = { "model.layers.0.w", "model.layers.1.w", "model.layers.2.w" };
	uint16_t v[2] = { 1, 2 };
	int64_t sz2[1] = { 2 };
	for (int k = 0; k < 2; k++) {
		qc_st_writer *sw = qc_st_writer_new();
		for (int l = 0; l < 3; l++)
			if ((l == 1) == (k == 1))
				assert_int_equal(qc_st_writer_add(sw, lay[l], QC_DT_BF16, 1, sz2, v, 0), 0);
		char *p = qc_path_join(il, k ? "b.safetensors" : "a.safetensors");
		assert_int_equal(qc_st_writer_save(sw, p), 0);
		free(p);
		qc_st_writer_free(sw);
	}
	assert_int_equal(sh("cd '%s' && echo {} > config.json && printf '%%s' '{\"weight_map\": {"
	                    "\"model.layers.0.w\": \"a.safetensors\", \"model.layers.2.w\": \"a.safetensors\", "
	                    "\"model.layers.1.w\": \"b.safetensors\"}}' > model.safetensors.index.json", il), 0);
	assert_int_equal(qc_ckpt_open(&ck, il, NULL), 0);
	qc_ckpt_close(ck);
	struct copy_args ca = { il };
	char *junk = tu_path("junk.tar");
	tu_assert_rc(to_file(junk, copy_to_stdout, &ca), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "cannot be streamed in layer order: 'b.safetensors' holds tensor "
	                                    "'model.layers.1.w' of layer 1"));
	struct stat stb;
	assert_int_equal(stat(junk, &stb), 0);
	assert_int_equal(stb.st_size, 0);           /* nothing written */
	free(junk);
	free(d), free(tar), free(il);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_groups),
		cmocka_unit_test(test_dir_roundtrip),
		cmocka_unit_test(test_single_shard_and_determinism),
		cmocka_unit_test(test_stream_write_and_copy),
		cmocka_unit_test(test_stream_every_cut),
		cmocka_unit_test(test_stream_read),
		cmocka_unit_test(test_stream_spill),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_writer_rules),
		cmocka_unit_test(test_planned_shards),
		cmocka_unit_test(test_hold),
		cmocka_unit_test(test_refuse_terminal),
		cmocka_unit_test(test_inherit),
		cmocka_unit_test(test_verify_mismatch),
		cmocka_unit_test(test_bad_dirs),
		cmocka_unit_test(test_bad_streams),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
