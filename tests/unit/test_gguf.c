/* test_gguf.c - the GGUF container (qc_gguf.h) and the Llama GGUF writer
 * (qc_gguf_pack.h).
 *
 * The structural check below is written from the GGUF specification
 * (ggml docs/gguf.md, gguf.cpp's checks on load), independently of
 * qc_gguf.c's reader: header, every key's value type, the types llama.cpp's
 * loader demands for the llama keys, names, dims, the block size of each
 * type, offsets aligned and back to back, and the file's length. The packed
 * files must pass it; their dequantized Linears must equal the naive
 * checkpoint's (q - zp) * scale exactly once the q/k rope permutation is
 * undone; what cannot be exact is refused and leaves no file. */
#include "tutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_err.h"
#include "qc_ggml.h"
#include "qc_gguf.h"
#include "qc_gguf_llama.h"
#include "qc_gguf_pack.h"
#include "qc_io.h"
#include "qc_num.h"
#include "qc_qout.h"
#include "qc_quant.h"
#include "qc_report.h"
#include "qc_synth.h"
#include "qc_tok.h"

/* ---------------------------------------------------------------- the spec check */

typedef struct scur {
	const uint8_t *p, *b, *e;
	int bad;
	char why[200];
} scur;

static uint64_t rdn(scur *c, int n)
{
	if (c->bad || c->e - c->p < n) {
		if (!c->bad)
			snprintf(c->why, sizeof c->why, "truncated at %ld", (long)(c->p - c->b));
		c->bad = 1;
		return 0;
	}
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (uint64_t)c->p[i] << (8 * i);
	c->p += n;
	return v;
}

/* a string into out (truncated), its length returned */
static uint64_t rstr(scur *c, char *out, size_t cap)
{
	uint64_t n = rdn(c, 8);
	if (c->bad || (uint64_t)(c->e - c->p) < n) {
		c->bad = 1;
		snprintf(c->why, sizeof c->why, "string runs past the end");
		return 0;
	}
	if (out) {
		size_t k = n < cap - 1 ? (size_t)n : cap - 1;
		memcpy(out, c->p, k);
		out[k] = 0;
	}
	c->p += n;
	return n;
}

static const int vsize[13] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };

/* Block size and bytes of the types the writer may use (ggml-common.h). */
static int blk(uint32_t t, int *elems, int *bytes)
{
	switch (t) {
	case 0: *elems = 1; *bytes = 4; return 1;     /* F32 */
	case 1: *elems = 1; *bytes = 2; return 1;     /* F16 */
	case 30: *elems = 1; *bytes = 2; return 1;    /* BF16 */
	case 2: *elems = 32; *bytes = 18; return 1;   /* Q4_0 */
	case 3: *elems = 32; *bytes = 20; return 1;   /* Q4_1 */
	case 8: *elems = 32; *bytes = 34; return 1;   /* Q8_0 */
	case 12: *elems = 256; *bytes = 144; return 1;/* Q4_K */
	case 13: *elems = 256; *bytes = 176; return 1;/* Q5_K */
	case 14: *elems = 256; *bytes = 210; return 1;/* Q6_K */
	default: return 0;
	}
}

/* Type llama.cpp's loader requires of a key (-1: not checked). */
static int want_type(const char *k)
{
	static const char *u32s[] = { "llama.vocab_size", "llama.context_length",
		"llama.embedding_length", "llama.block_count", "llama.feed_forward_length",
		"llama.attention.head_count", "llama.attention.head_count_kv",
		"llama.rope.dimension_count", "llama.attention.key_length",
		"llama.attention.value_length", "general.file_type", "general.quantization_version",
		"general.alignment", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
		"tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id", NULL };
	for (int i = 0; u32s[i]; i++)
		if (strcmp(k, u32s[i]) == 0)
			return 4;
	if (strcmp(k, "llama.rope.freq_base") == 0 || strcmp(k, "llama.rope.scaling.factor") == 0 ||
	    strcmp(k, "llama.attention.layer_norm_rms_epsilon") == 0)
		return 6;
	if (strcmp(k, "general.architecture") == 0 || strcmp(k, "tokenizer.ggml.model") == 0 ||
	    strcmp(k, "tokenizer.ggml.pre") == 0 || strcmp(k, "tokenizer.chat_template") == 0 ||
	    strcmp(k, "general.name") == 0)
		return 8;
	if (strncmp(k, "tokenizer.ggml.add_", 19) == 0)
		return 7;
	if (strcmp(k, "tokenizer.ggml.tokens") == 0 || strcmp(k, "tokenizer.ggml.merges") == 0 ||
	    strcmp(k, "tokenizer.ggml.token_type") == 0)
		return 9;
	return -1;
}

/* Returns 0 when the file is well formed; sets *n_tensors. */
static int spec_check(const uint8_t *buf, size_t len, uint64_t *n_tensors, char *why)
{
	scur c = { buf, buf, buf + len, 0, "" };
#define BAD(...)                                          \
	do {                                                  \
		snprintf(why, 200, __VA_ARGS__);                  \
		return 1;                                         \
	} while (0)
	if (len < 24 || memcmp(buf, "GGUF", 4) != 0)
		BAD("no magic");
	c.p += 4;
	if (rdn(&c, 4) != 3)
		BAD("version is not 3");
	uint64_t nt = rdn(&c, 8), nkv = rdn(&c, 8);
	uint64_t align = 32;
	char key[256], prev[64][64];
	for (uint64_t i = 0; i < nkv; i++) {
		rstr(&c, key, sizeof key);
		uint32_t t = (uint32_t)rdn(&c, 4);
		if (c.bad)
			BAD("%s", c.why);
		int w = want_type(key);
		if (w >= 0 && (int)t != w)
			BAD("key %.60s has type %u, llama.cpp wants %d", key, t, w);
		if (t == 8) {
			rstr(&c, NULL, 0);
		} else if (t == 9) {
			uint32_t et = (uint32_t)rdn(&c, 4);
			uint64_t n = rdn(&c, 8);
			if (strcmp(key, "tokenizer.ggml.token_type") == 0 && et != 5)
				BAD("token_type elements are %u, not i32", et);
			if ((strcmp(key, "tokenizer.ggml.tokens") == 0 ||
			     strcmp(key, "tokenizer.ggml.merges") == 0) && et != 8)
				BAD("%.60s elements are %u, not strings", key, et);
			for (uint64_t j = 0; j < n && !c.bad; j++) {
				if (et == 8)
					rstr(&c, NULL, 0);
				else if (et < 13 && vsize[et])
					rdn(&c, vsize[et]);
				else
					BAD("key %.60s: element type %u", key, et);
			}
		} else if (t < 13 && vsize[t]) {
			uint64_t v = rdn(&c, vsize[t]);
			if (t == 7 && v > 1)
				BAD("bool %.60s is %llu", key, (unsigned long long)v);
			if (strcmp(key, "general.alignment") == 0)
				align = v;
		} else {
			BAD("key %.60s: value type %u", key, t);
		}
		if (c.bad)
			BAD("%s", c.why);
	}
	if (align == 0 || (align & (align - 1)))
		BAD("alignment %llu", (unsigned long long)align);
	uint64_t expect = 0;
	static uint64_t offs[4096], sizes[4096];
	if (nt > 4096)
		BAD("%llu tensors (this check reads up to 4096)", (unsigned long long)nt);
	for (uint64_t i = 0; i < nt; i++) {
		char name[128];
		uint64_t nl = rstr(&c, name, sizeof name);
		if (c.bad)
			BAD("%s", c.why);
		if (nl >= 64)
			BAD("tensor name %.60s is %llu bytes", name, (unsigned long long)nl);
		if (i < 64) {
			for (uint64_t j = 0; j < i; j++)
				if (strcmp(prev[j], name) == 0)
					BAD("duplicate tensor %.60s", name);
			snprintf(prev[i], sizeof prev[i], "%.63s", name);
		}
		uint32_t nd = (uint32_t)rdn(&c, 4);
		if (nd < 1 || nd > 4)
			BAD("tensor %.60s has %u dims", name, nd);
		uint64_t ne[4] = { 1, 1, 1, 1 }, n = 1;
		for (uint32_t d = 0; d < nd; d++) {
			ne[d] = rdn(&c, 8);
			if (ne[d] == 0)
				BAD("tensor %.60s dim %u is 0", name, d);
			n *= ne[d];
		}
		uint32_t ty = (uint32_t)rdn(&c, 4);
		int be, bb;
		if (!blk(ty, &be, &bb))
			BAD("tensor %.60s type %u", name, ty);
		if (ne[0] % (uint64_t)be)
			BAD("tensor %.60s ne0 %llu not a multiple of %d", name, (unsigned long long)ne[0], be);
		offs[i] = rdn(&c, 8);
		sizes[i] = n / (uint64_t)be * (uint64_t)bb;
		if (offs[i] % align)
			BAD("tensor %.60s offset %llu not aligned", name, (unsigned long long)offs[i]);
		if (offs[i] != expect)
			BAD("tensor %.60s offset %llu, expected %llu", name, (unsigned long long)offs[i],
			    (unsigned long long)expect);
		expect = (offs[i] + sizes[i] + align - 1) / align * align;
		if (c.bad)
			BAD("%s", c.why);
	}
	uint64_t hdr = (uint64_t)(c.p - buf), start = (hdr + align - 1) / align * align;
	for (uint64_t i = hdr; i < start && i < len; i++)
		if (buf[i] != 0)
			BAD("padding byte %llu is not zero", (unsigned long long)i);
	if (start + expect != len)
		BAD("file is %zu bytes, the layout says %llu", len, (unsigned long long)(start + expect));
	for (uint64_t i = 0; i < nt; i++)
		for (uint64_t k = offs[i] + sizes[i]; k < (i + 1 < nt ? offs[i + 1] : expect); k++)
			if (buf[start + k] != 0)
				BAD("padding after tensor %llu is not zero", (unsigned long long)i);
	*n_tensors = nt;
	return 0;
#undef BAD
}

/* ---------------------------------------------------------------- container */

static void write_mem(qc_gguf_w *w, const uint8_t *const *data, qc_membuf *mb)
{
	qc_sink s;
	qc_sink_membuf(&s, mb, "mem");
	tu_assert_rc(qc_gguf_w_begin(w, &s), 0);
	for (size_t i = 0; data[i]; i++)
		tu_assert_rc(qc_gguf_w_data(w, data[i], (size_t)qc_gguf_w_tensor_bytes(w, i)), 0);
	tu_assert_rc(qc_gguf_w_end(w), 0);
}

static void test_container(void **state)
{
	(void)state;
	for (int al = 0; al < 2; al++) {
		qc_gguf_w *w;
		tu_assert_rc(qc_gguf_w_new(&w, al ? 64 : 0), 0);
		tu_assert_rc(qc_gguf_w_str(w, "general.architecture", "llama"), 0);
		tu_assert_rc(qc_gguf_w_u32(w, "llama.block_count", 7), 0);
		tu_assert_rc(qc_gguf_w_f32(w, "llama.rope.freq_base", 500000.f), 0);
		tu_assert_rc(qc_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", 1), 0);
		const char *toks[3] = { "a", "", "\xc4\xa0the" };
		tu_assert_rc(qc_gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 3), 0);
		int32_t ty[3] = { 1, 3, -2 };
		tu_assert_rc(qc_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", ty, 3), 0);
		tu_assert_rc(qc_gguf_w_u32(w, "llama.block_count", 8), QC_EINVAL);
		int64_t ne1[1] = { 5 }, ne2[2] = { 64, 3 }, bad[2] = { 48, 2 };
		tu_assert_rc(qc_gguf_w_tensor(w, "norm.weight", QC_GGML_F32, 1, ne1), 0);
		tu_assert_rc(qc_gguf_w_tensor(w, "blk.0.attn_q.weight", QC_GGML_Q4_0, 2, ne2), 0);
		tu_assert_rc(qc_gguf_w_tensor(w, "blk.0.attn_q.weight", QC_GGML_F32, 1, ne1), QC_EINVAL);
		tu_assert_rc(qc_gguf_w_tensor(w, "x", QC_GGML_Q4_0, 2, bad), QC_EINVAL);
		tu_assert_rc(qc_gguf_w_tensor(w, "a-name-that-is-much-longer-than-the-sixty-three-bytes-"
		                              "ggml-allows", QC_GGML_F32, 1, ne1), QC_EINVAL);
		uint8_t d0[20], d1[3 * 36];
		for (size_t i = 0; i < sizeof d0; i++)
			d0[i] = (uint8_t)(i + 1);
		for (size_t i = 0; i < sizeof d1; i++)
			d1[i] = (uint8_t)(200 - i);
		const uint8_t *data[3] = { d0, d1, NULL };
		qc_membuf mb = { 0 };
		write_mem(w, data, &mb);
		qc_gguf_w_free(w);
		char why[200] = "";
		uint64_t nt = 0;
		if (spec_check(mb.data, mb.len, &nt, why))
			fail_msg("spec check: %s", why);
		assert_int_equal(nt, 2);
		qc_gguf *g;
		tu_assert_rc(qc_gguf_open_mem(&g, mb.data, mb.len, "mem"), 0);
		assert_int_equal(qc_gguf_alignment(g), al ? 64 : 32);
		uint32_t u;
		tu_assert_rc(qc_gguf_get_u32(g, "llama.block_count", &u), 0);
		assert_int_equal(u, 7);
		float f;
		tu_assert_rc(qc_gguf_get_u32(g, "llama.rope.freq_base", &u), QC_EFORMAT);
		tu_assert_rc(qc_gguf_get_f32(g, "llama.rope.freq_base", &f), 0);
		assert_true(f == 500000.f);
		const char *s;
		size_t sl;
		tu_assert_rc(qc_gguf_arr_str(g, "tokenizer.ggml.tokens", 2, &s, &sl), 0);
		assert_int_equal(sl, 5);
		assert_memory_equal(s, "\xc4\xa0the", 5);
		int32_t iv;
		tu_assert_rc(qc_gguf_arr_i32(g, "tokenizer.ggml.token_type", 2, &iv), 0);
		assert_int_equal(iv, -2);
		const qc_gguf_tensor *t = qc_gguf_tensor_find(g, "blk.0.attn_q.weight");
		assert_non_null(t);
		assert_int_equal(t->type, QC_GGML_Q4_0);
		assert_int_equal(t->ne[0], 64);
		assert_int_equal(t->ne[1], 3);
		assert_int_equal(t->bytes, sizeof d1);
		assert_memory_equal(t->data, d1, sizeof d1);
		assert_int_equal(t->offset % (al ? 64 : 32), 0);
		qc_gguf_close(g);

		/* corruptions: each refused by the reader and by the spec check */
		uint8_t *cp = malloc(mb.len);
		const size_t tinfo = mb.len - (al ? 64 + 128 : 32 + 128);   /* somewhere in data */
		(void)tinfo;
		struct {
			size_t at;
			uint8_t v;
		} flips[] = { { 0, 'X' }, { 4, 4 } };
		for (size_t k = 0; k < sizeof flips / sizeof flips[0]; k++) {
			memcpy(cp, mb.data, mb.len);
			cp[flips[k].at] = flips[k].v;
			tu_assert_rc(qc_gguf_open_mem(&g, cp, mb.len, "mem"), QC_EFORMAT);
			assert_int_not_equal(spec_check(cp, mb.len, &nt, why), 0);
		}
		/* truncation anywhere */
		for (size_t cut = 0; cut < mb.len; cut += 7) {
			int rc = qc_gguf_open_mem(&g, mb.data, cut, "mem");
			if (rc == 0)
				fail_msg("a file cut to %zu of %zu bytes was accepted", cut, mb.len);
			assert_int_not_equal(spec_check(mb.data, cut, &nt, why), 0);
		}
		/* the second tensor's offset moved by one alignment unit */
		memcpy(cp, mb.data, mb.len);
		uint8_t *hit = NULL;
		for (size_t i = 0; i + 19 < mb.len; i++)
			if (memcmp(cp + i, "blk.0.attn_q.weight", 19) == 0)
				hit = cp + i + 19;
		assert_non_null(hit);
		hit += 4 + 16 + 4;       /* n_dims, ne[2], type: the offset */
		hit[0] = (uint8_t)(hit[0] + (al ? 64 : 32));
		tu_assert_rc(qc_gguf_open_mem(&g, cp, mb.len, "mem"), QC_EFORMAT);
		assert_int_not_equal(spec_check(cp, mb.len, &nt, why), 0);
		/* random damage to the header: refused or read within bounds,
		 * never a crash */
		uint64_t x = 88172645463325252ull;
		for (int it = 0; it < 3000; it++) {
			memcpy(cp, mb.data, mb.len);
			for (int k = 0; k < 1 + it % 3; k++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				cp[x % 320 % mb.len] ^= (uint8_t)(1u << (x >> 40) % 8);
			}
			int rc = qc_gguf_open_mem(&g, cp, mb.len, "mem");
			if (rc) {
				assert_int_equal(rc, QC_EFORMAT);
				continue;
			}
			for (size_t i = 0; i < qc_gguf_n_tensors(g); i++) {
				const qc_gguf_tensor *tt = qc_gguf_tensor_at(g, i);
				assert_true((const uint8_t *)tt->data >= cp &&
				            (const uint8_t *)tt->data + tt->bytes <= cp + mb.len);
			}
			qc_gguf_close(g);
		}
		free(cp);
		qc_membuf_free(&mb);
	}
}

/* ---------------------------------------------------------------- the packer */

/* A small Llama: 2 layers, hidden 64, intermediate 96, 4 heads of 16
 * (2 KV heads), vocab 300 with a real byte-level BPE tokenizer, llama3
 * rope scaling, untied lm_head. */
static void small_config(qc_config *c, int tie)
{
	memset(c, 0, sizeof *c);
	c->hidden_size = 64;
	c->intermediate_size = 96;
	c->num_hidden_layers = 2;
	c->num_attention_heads = 4;
	c->num_key_value_heads = 2;
	c->vocab_size = 300;
	c->max_position_embeddings = 512;
	c->tie_word_embeddings = tie;
	c->rope_type = QC_ROPE_LLAMA3;
	c->rope_theta = 500000;
	c->rope_factor = 8;
	c->rope_low_freq_factor = 1;
	c->rope_high_freq_factor = 4;
	c->rope_original_max_position_embeddings = 64;
	assert_int_equal(qc_config_build(c), 0);
}

static void make_dense(const char *dir, const qc_config *cfg)
{
	qc_ckw_opts wo = { .n_shards = (int)cfg->num_hidden_layers, .force = 1, .tool = "test" };
	qc_ckpt_writer *w;
	tu_assert_rc(qc_ckw_open(&w, dir, &wo), 0);
	char *cj;
	size_t cn;
	tu_assert_rc(qc_config_dump(cfg, &cj, &cn), 0);
	tu_assert_rc(qc_ckw_add_file(w, "config.json", cj, cn), 0);
	free(cj);
	qc_tok_built tb;
	const char text[] = "the quick brown fox jumps over the lazy dog; the dog sleeps. "
	                    "the fox runs, the fox jumps again and again over the dogs.";
	tu_assert_rc(qc_tok_build_bytelevel(cfg->vocab_size, text, sizeof text - 1, &tb), 0);
	tu_assert_rc(qc_ckw_add_file(w, "tokenizer.json", tb.tokenizer_json, tb.tokenizer_len), 0);
	tu_assert_rc(qc_ckw_add_file(w, "tokenizer_config.json", tb.config_json, tb.config_len), 0);
	qc_tok_built_release(&tb);
	qc_synth_opts so;
	qc_synth_opts_default(&so);
	so.threads = 1;
	tu_assert_rc(qc_synth_write(cfg, &so, w, NULL, NULL), 0);
	tu_assert_rc(qc_ckw_close(w), 0);
}

/* Round a positive float to `bits` significant bits. */
static float round_bits(float x, int bits)
{
	int e;
	float m = frexpf(x, &e);
	return ldexpf(nearbyintf(ldexpf(m, bits)), e - bits);
}

/* RTN under scheme s into a naive checkpoint; scales with at most
 * scale_bits significant bits (11: F16's own) when s has F16 scales. */
static void make_naive(const char *dense, const char *dir, const qc_qscheme *s, int scale_bits)
{
	qc_ckpt *in;
	tu_assert_rc(qc_ckpt_open(&in, dense, NULL), 0);
	const void *data;
	size_t len;
	tu_assert_rc(qc_ckpt_file(in, "config.json", &data, &len), 0);
	qc_config cfg;
	tu_assert_rc(qc_config_parse(&cfg, data, len, NULL), 0);
	char *argv[] = { "qgptq", NULL };
	qc_qout_opts qo = { .path = dir, .force = 1, .tool = "qgptq", .argc = 1, .argv = argv };
	qc_qout *q;
	tu_assert_rc(qc_qout_open(&q, in, &cfg, s, &qo), 0);
	qc_clip_opts co;
	qc_clip_opts_default(&co, QC_CLIP_MINMAX);
	int L = (int)cfg.num_hidden_layers;
	for (int l = 0; l < L; l++) {
		int groups[3] = { l == 0 ? QC_GROUP_PRE : l, l, l == L - 1 ? QC_GROUP_POST : l };
		for (int gi = 0; gi < 3; gi++) {
			if (gi > 0 && groups[gi] == groups[gi - 1])
				continue;
			const char *const *names;
			size_t n;
			tu_assert_rc(qc_ckpt_group_names(in, groups[gi], &names, &n), 0);
			for (size_t i = 0; i < n; i++) {
				const qc_tensor *t;
				tu_assert_rc(qc_ckpt_get(in, names[i], &t), 0);
				char module[200];
				size_t nl = strlen(names[i]);
				int lin = 0;
				if (nl > 7 && strcmp(names[i] + nl - 7, ".weight") == 0 && groups[gi] == l) {
					snprintf(module, sizeof module, "%.*s", (int)(nl - 7), names[i]);
					lin = strstr(module, "_proj") != NULL && !qc_qscheme_ignored(s, module);
				}
				if (!lin) {
					tu_assert_rc(qc_qout_copy(q, t), 0);
					continue;
				}
				int64_t rows = t->shape[0], cols = t->shape[1];
				float *W = malloc((size_t)(rows * cols) * sizeof *W);
				tu_assert_rc(qc_to_f32(W, t->data, t->dtype, (size_t)(rows * cols)), 0);
				int64_t ns = rows * qc_qgroups(&s->weights, cols);
				uint8_t *codes = malloc((size_t)(rows * cols));
				float *sc = malloc((size_t)ns * sizeof *sc), *zp = malloc((size_t)ns * sizeof *zp);
				float *zpp = s->weights.symmetric ? NULL : zp;
				tu_assert_rc(qc_quant_rtn(&s->weights, &co, W, rows, cols, NULL, codes, sc, zpp,
				                          NULL), 0);
				if (scale_bits < 11) {
					for (int64_t k = 0; k < ns; k++)
						sc[k] = round_bits(sc[k], scale_bits);
					tu_assert_rc(qc_quant_apply(&s->weights, W, rows, cols, sc, zpp, codes, NULL),
					             0);
				}
				tu_assert_rc(qc_qout_linear(q, module, rows, cols, codes, sc, zpp, NULL), 0);
				free(W);
				free(codes);
				free(sc);
				free(zp);
			}
		}
		tu_assert_rc(qc_qout_end_layer(q, l), 0);
	}
	qc_report *rep = qc_report_new();
	tu_assert_rc(qc_qout_close(q, rep), 0);
	qc_report_free(rep);
	qc_config_free(&cfg);
	qc_ckpt_close(in);
}

static qc_qscheme scheme(int bits, int64_t group, int sym, qc_dtype sd)
{
	qc_qscheme s;
	assert_int_equal(qc_qscheme_preset(&s, bits == 4 ? "w4a16" : "w8a16"), 0);
	s.weights.strategy = group > 0 ? QC_QS_GROUP : QC_QS_CHANNEL;
	s.weights.group_size = group > 0 ? group : 0;
	s.weights.symmetric = sym;
	s.weights.scale_dtype = sd;
	return s;
}

static int pack(const char *in, const char *out)
{
	qc_gguf_pack_opts o = { .input = in, .output = out, .force = 1 };
	qc_gguf_pack_result r;
	return qc_gguf_pack(&o, &r);
}

static int exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

/* Every Linear of the GGUF file equals the naive checkpoint's dequantized
 * weight exactly, rows un-permuted for q/k; norms and embeddings are the
 * input's values. */
static void check_file(const char *naive, const char *file, const qc_config *cfg, int qtype)
{
	size_t len;
	uint8_t *buf = tu_read(file, &len);
	char why[200] = "";
	uint64_t nt;
	if (spec_check(buf, len, &nt, why))
		fail_msg("%s: %s", file, why);
	free(buf);
	qc_gguf *g;
	tu_assert_rc(qc_gguf_open(&g, file), 0);
	uint32_t u;
	tu_assert_rc(qc_gguf_get_u32(g, "general.file_type", &u), 0);
	assert_int_equal(u, qtype == QC_GGML_Q4_0 ? 2 : qtype == QC_GGML_Q4_1 ? 3 : 7);
	tu_assert_rc(qc_gguf_get_u32(g, "llama.attention.head_count_kv", &u), 0);
	assert_int_equal(u, cfg->num_key_value_heads);
	tu_assert_rc(qc_gguf_get_u32(g, "llama.rope.dimension_count", &u), 0);
	assert_int_equal(u, cfg->head_dim);
	const char *s;
	size_t sl;
	tu_assert_rc(qc_gguf_get_str(g, "tokenizer.ggml.pre", &s, &sl), 0);
	assert_true(sl == 9 && memcmp(s, "llama-bpe", 9) == 0);
	int64_t ki = qc_gguf_find(g, "tokenizer.ggml.tokens");
	assert_true(ki >= 0);
	assert_int_equal(qc_gguf_arr_n(g, (size_t)ki), cfg->vocab_size);
	/* the BOS token: its text and a control type */
	uint32_t bos;
	tu_assert_rc(qc_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &bos), 0);
	tu_assert_rc(qc_gguf_arr_str(g, "tokenizer.ggml.tokens", bos, &s, &sl), 0);
	assert_true(sl == 17 && memcmp(s, "<|begin_of_text|>", 17) == 0);
	int32_t tt;
	tu_assert_rc(qc_gguf_arr_i32(g, "tokenizer.ggml.token_type", bos, &tt), 0);
	assert_int_equal(tt, 3);
	tu_assert_rc(qc_gguf_arr_i32(g, "tokenizer.ggml.token_type", 97, &tt), 0);
	assert_int_equal(tt, 1);
	tu_assert_rc(qc_gguf_arr_str(g, "tokenizer.ggml.merges", 0, &s, &sl), 0);
	assert_non_null(memchr(s, ' ', sl));
	/* rope factors: 1 for the highest frequency, the factor for the lowest */
	const qc_gguf_tensor *rf = qc_gguf_tensor_find(g, "rope_freqs.weight");
	assert_non_null(rf);
	assert_int_equal(rf->ne[0], cfg->head_dim / 2);
	assert_true(((const float *)rf->data)[0] == 1.0f);
	assert_true(((const float *)rf->data)[cfg->head_dim / 2 - 1] == 8.0f);

	qc_ckpt *ck;
	tu_assert_rc(qc_ckpt_open(&ck, naive, NULL), 0);
	static const char *gl[QC_LIN_COUNT] = { "attn_q", "attn_k", "attn_v", "attn_output",
		                                    "ffn_gate", "ffn_up", "ffn_down" };
	for (int l = 0; l < cfg->num_hidden_layers; l++) {
		for (int li = 0; li < QC_LIN_COUNT; li++) {
			char gname[64], hn[200];
			snprintf(gname, sizeof gname, "blk.%d.%s.weight", l, gl[li]);
			const qc_gguf_tensor *t = qc_gguf_tensor_find(g, gname);
			assert_non_null(t);
			assert_int_equal(t->type, qtype);
			int64_t rows = t->ne[1], cols = t->ne[0];
			const qc_tensor *codes, *scale, *zpt = NULL;
			qc_linear_name(hn, sizeof hn, l, (qc_linear)li, "weight");
			tu_assert_rc(qc_ckpt_get(ck, hn, &codes), 0);
			assert_int_equal(codes->shape[0], rows);
			assert_int_equal(codes->shape[1], cols);
			qc_linear_name(hn, sizeof hn, l, (qc_linear)li, "weight_scale");
			tu_assert_rc(qc_ckpt_get(ck, hn, &scale), 0);
			if (qtype == QC_GGML_Q4_1) {
				qc_linear_name(hn, sizeof hn, l, (qc_linear)li, "weight_zero_point");
				tu_assert_rc(qc_ckpt_get(ck, hn, &zpt), 0);
			}
			int64_t ng = cols / 32;
			float *sc = malloc((size_t)(rows * ng) * sizeof *sc);
			tu_assert_rc(qc_to_f32(sc, scale->data, scale->dtype, (size_t)(rows * ng)), 0);
			float *y = malloc((size_t)cols * sizeof *y);
			size_t rb;
			tu_assert_rc(qc_ggml_row_bytes(qtype, cols, &rb), 0);
			int heads = li == QC_LIN_Q ? (int)cfg->num_attention_heads
			            : li == QC_LIN_K ? (int)cfg->num_key_value_heads : 0;
			for (int64_t r = 0; r < rows; r++) {
				tu_assert_rc(qc_ggml_dequantize(qtype, (const uint8_t *)t->data + r * rb, cols,
				                                y), 0);
				int64_t src = r;
				if (heads) {
					/* the converter's permute: within a head, GGUF row 2i + j
					 * is HF row j * hd/2 + i */
					int64_t hd = rows / heads, h = r / hd, k = r % hd;
					src = h * hd + (k % 2) * (hd / 2) + k / 2;
				}
				for (int64_t c = 0; c < cols; c++) {
					float q = ((const int8_t *)codes->data)[src * cols + c];
					float z = zpt ? ((const int8_t *)zpt->data)[src * ng + c / 32] : 0;
					float want = (q - z) * sc[src * ng + c / 32];
					if (y[c] != want)
						fail_msg("%s row %lld col %lld: %.9g, naive %.9g", gname, (long long)r,
						         (long long)c, (double)y[c], (double)want);
				}
			}
			free(sc);
			free(y);
		}
		char hn[128], gname[64];
		snprintf(hn, sizeof hn, "model.layers.%d.post_attention_layernorm.weight", l);
		snprintf(gname, sizeof gname, "blk.%d.ffn_norm.weight", l);
		const qc_tensor *nt2;
		tu_assert_rc(qc_ckpt_get(ck, hn, &nt2), 0);
		const qc_gguf_tensor *gn = qc_gguf_tensor_find(g, gname);
		assert_non_null(gn);
		assert_int_equal(gn->type, QC_GGML_F32);
		for (int64_t c = 0; c < cfg->hidden_size; c++)
			assert_true(((const float *)gn->data)[c] ==
			            qc_bf16_to_f32(((const uint16_t *)nt2->data)[c]));
	}
	const qc_tensor *emb;
	tu_assert_rc(qc_ckpt_get(ck, "model.embed_tokens.weight", &emb), 0);
	const qc_gguf_tensor *ge = qc_gguf_tensor_find(g, "token_embd.weight");
	assert_non_null(ge);
	assert_int_equal(ge->type, QC_GGML_BF16);
	assert_int_equal(ge->bytes, emb->nbytes);
	assert_memory_equal(ge->data, emb->data, emb->nbytes);
	assert_true((qc_gguf_tensor_find(g, "output.weight") != NULL) == !cfg->tie_word_embeddings);
	/* read back in HF terms: the config, llama3 rope included, and the
	 * q_proj rows in HF order */
	qc_gguf_llama *back;
	tu_assert_rc(qc_gguf_llama_open(&back, file), 0);
	const qc_config *rc2 = qc_gguf_llama_config(back);
	assert_int_equal(rc2->hidden_size, cfg->hidden_size);
	assert_int_equal(rc2->num_key_value_heads, cfg->num_key_value_heads);
	assert_int_equal(rc2->tie_word_embeddings, cfg->tie_word_embeddings);
	assert_int_equal(rc2->rope_type, QC_ROPE_LLAMA3);
	assert_true(rc2->rope_factor == 8);
	assert_int_equal(rc2->rope_original_max_position_embeddings, 64);
	const qc_wsrc *ws = qc_gguf_llama_wsrc(back);
	const qc_tensor *qw, *codes, *scale;
	const char *qn = "model.layers.1.self_attn.q_proj.weight";
	tu_assert_rc(ws->get(ws->ctx, qn, &qw), 0);
	tu_assert_rc(qc_ckpt_get(ck, qn, &codes), 0);
	tu_assert_rc(qc_ckpt_get(ck, "model.layers.1.self_attn.q_proj.weight_scale", &scale), 0);
	assert_int_equal(qw->dtype, QC_DT_F32);
	assert_int_equal(qw->shape[0], codes->shape[0]);
	int64_t qcols = codes->shape[1];
	for (int64_t i = 0; i < codes->shape[0] * qcols; i++) {
		float s1;
		tu_assert_rc(qc_to_f32(&s1, (const uint8_t *)scale->data + (size_t)(i / 32) * 2, scale->dtype,
		                       1), 0);
		float zz = 0;
		if (qtype == QC_GGML_Q4_1) {
			const qc_tensor *zt;
			tu_assert_rc(qc_ckpt_get(ck, "model.layers.1.self_attn.q_proj.weight_zero_point", &zt),
			             0);
			zz = ((const int8_t *)zt->data)[i / 32];
		}
		float want = ((float)((const int8_t *)codes->data)[i] - zz) * s1;
		if (((const float *)qw->data)[i] != want)
			fail_msg("read back %s [%lld]: %.9g, naive %.9g", qn, (long long)i,
			         (double)((const float *)qw->data)[i], (double)want);
	}
	ws->release(ws->ctx, qn);
	qc_gguf_llama_close(back);
	qc_ckpt_close(ck);
	qc_gguf_close(g);
}

static void test_pack(void **state)
{
	(void)state;
	for (int tie = 0; tie < 2; tie++) {
		qc_config cfg;
		small_config(&cfg, tie);
		char *dense = tu_path(tie ? "dense-tied" : "dense");
		make_dense(dense, &cfg);
		struct {
			int bits, sym, qtype, scale_bits;
		} cases[] = {
			{ 4, 1, QC_GGML_Q4_0, 11 },
			{ 8, 1, QC_GGML_Q8_0, 11 },
			/* Q4_1's minimum -(8 + zp) * s is exact in F16 when s has at
			 * most 7 significant bits */
			{ 4, 0, QC_GGML_Q4_1, 7 },
		};
		for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
			qc_qscheme s = scheme(cases[k].bits, 32, cases[k].sym, QC_DT_F16);
			char *naive = tu_path("naive"), *file = tu_path("m.gguf");
			make_naive(dense, naive, &s, cases[k].scale_bits);
			tu_assert_rc(pack(naive, file), 0);
			check_file(naive, file, &cfg, cases[k].qtype);
			remove(file);
			free(naive);
			free(file);
			qc_qscheme_free(&s);
		}
		qc_config_free(&cfg);
		free(dense);
	}
}

/* What cannot be exact or expressed is refused, naming why, and leaves
 * no file. */
static void test_refused(void **state)
{
	(void)state;
	qc_config cfg;
	small_config(&cfg, 1);
	char *dense = tu_path("dense-r"), *naive = tu_path("naive-r"), *file = tu_path("r.gguf");
	make_dense(dense, &cfg);
	struct {
		int bits, group, sym, bitsc;
		qc_dtype sd;
		const char *msg;
	} cases[] = {
		{ 4, 128, 1, 11, QC_DT_F16, "32 inputs" },         /* not whole blocks of 32 */
		{ 4, 0, 1, 11, QC_DT_F16, "per channel" },
		{ 8, 32, 0, 11, QC_DT_F16, "zero points" },
		{ 4, 32, 1, 24, QC_DT_F32, "not an F16 value" },  /* F32 scales */
		{ 4, 32, 0, 11, QC_DT_F16, "minimum" },           /* full F16 scales, Q4_1 */
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		qc_qscheme s = scheme(cases[k].bits, cases[k].group, cases[k].sym, cases[k].sd);
		make_naive(dense, naive, &s, cases[k].bitsc);
		tu_assert_rc(pack(naive, file), QC_EUNSUPPORTED);
		if (!strstr(qc_errmsg(), cases[k].msg))
			fail_msg("case %zu: '%s' does not say '%s'", k, qc_errmsg(), cases[k].msg);
		assert_false(exists(file));
		qc_qscheme_free(&s);
	}
	/* a dense model */
	tu_assert_rc(pack(dense, file), QC_EUNSUPPORTED);
	assert_false(exists(file));
	/* an existing output is kept without force */
	tu_write(file, "x", 1);
	qc_qscheme s = scheme(4, 32, 1, QC_DT_F16);
	make_naive(dense, naive, &s, 11);
	qc_gguf_pack_opts o = { .input = naive, .output = file };
	tu_assert_rc(qc_gguf_pack(&o, NULL), QC_EINVAL);
	size_t n;
	free(tu_read(file, &n));
	assert_int_equal(n, 1);
	qc_qscheme_free(&s);
	qc_config_free(&cfg);
	free(dense);
	free(naive);
	free(file);
}

/* llama3 rope factors against values worked by hand: theta 500000,
 * head_dim 128, factor 8, low 1, high 4, original context 8192 (Llama 3.1):
 * wavelengths below 2048 keep 1, above 8192 take 8, between blend. */
static void test_rope_factors(void **state)
{
	(void)state;
	float f[64];
	qc_gguf_rope_factors(500000, 128, 8, 1, 4, 8192, f);
	assert_true(f[0] == 1.0f);
	assert_true(f[63] == 8.0f);
	int blended = 0;
	for (int i = 0; i < 64; i++) {
		double freq = 1.0 / pow(500000.0, 2.0 * i / 128), wl = 2 * M_PI / freq;
		if (wl < 2048)
			assert_true(f[i] == 1.0f);
		else if (wl > 8192)
			assert_true(f[i] == 8.0f);
		else {
			double sm = (8192 / wl - 1) / 3, want = 1 / ((1 - sm) / 8 + sm);
			assert_true(fabs(f[i] - want) < 1e-5 * want);
			blended++;
		}
	}
	assert_true(blended > 0);
}


/* A Llama GGUF with K-quant Linears (as llama.cpp's quantizer writes
 * Q4_K_M: Q4_K, Q6_K for attn_v and ffn_down) read back: every Linear is
 * ggml's decoding of its rows, q/k rows back in HF order; F16 embeddings
 * come as views. */
static void test_read_kquants(void **state)
{
	(void)state;
	enum { H = 256, F = 512, NH = 4, NKV = 2, HD = 64, V = 40 };
	qc_gguf_w *w;
	tu_assert_rc(qc_gguf_w_new(&w, 0), 0);
	tu_assert_rc(qc_gguf_w_str(w, "general.architecture", "llama"), 0);
	tu_assert_rc(qc_gguf_w_u32(w, "llama.block_count", 1), 0);
	tu_assert_rc(qc_gguf_w_u32(w, "llama.context_length", 128), 0);
	tu_assert_rc(qc_gguf_w_u32(w, "llama.embedding_length", H), 0);
	tu_assert_rc(qc_gguf_w_u32(w, "llama.feed_forward_length", F), 0);
	tu_assert_rc(qc_gguf_w_u32(w, "llama.attention.head_count", NH), 0);
	tu_assert_rc(qc_gguf_w_u32(w, "llama.attention.head_count_kv", NKV), 0);
	tu_assert_rc(qc_gguf_w_u32(w, "llama.rope.dimension_count", HD), 0);
	tu_assert_rc(qc_gguf_w_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f), 0);
	struct {
		const char *name;
		int type;
		int64_t rows, cols;
	} ts[] = {
		{ "token_embd.weight", QC_GGML_F16, V, H },
		{ "blk.0.attn_norm.weight", QC_GGML_F32, 0, H },
		{ "blk.0.attn_q.weight", QC_GGML_Q4_K, NH * HD, H },
		{ "blk.0.attn_k.weight", QC_GGML_Q4_K, NKV * HD, H },
		{ "blk.0.attn_v.weight", QC_GGML_Q6_K, NKV * HD, H },
		{ "blk.0.attn_output.weight", QC_GGML_Q4_K, H, NH * HD },
		{ "blk.0.ffn_norm.weight", QC_GGML_F32, 0, H },
		{ "blk.0.ffn_gate.weight", QC_GGML_Q5_K, F, H },
		{ "blk.0.ffn_up.weight", QC_GGML_Q4_K, F, H },
		{ "blk.0.ffn_down.weight", QC_GGML_Q6_K, H, F },
		{ "output_norm.weight", QC_GGML_F32, 0, H },
	};
	enum { NT = sizeof ts / sizeof ts[0] };
	uint8_t *data[NT + 1];
	for (int i = 0; i < NT; i++) {
		int64_t ne[2] = { ts[i].cols, ts[i].rows };
		tu_assert_rc(qc_gguf_w_tensor(w, ts[i].name, ts[i].type, ts[i].rows ? 2 : 1, ne), 0);
		int64_t rows = ts[i].rows ? ts[i].rows : 1;
		size_t rb;
		tu_assert_rc(qc_ggml_row_bytes(ts[i].type, ts[i].cols, &rb), 0);
		data[i] = malloc(rb * (size_t)rows);
		float *x = malloc((size_t)ts[i].cols * sizeof *x);
		for (int64_t r = 0; r < rows; r++) {
			for (int64_t c = 0; c < ts[i].cols; c++)
				x[c] = (float)(0.05 * sin(0.37 * (double)(r * 7919 + c * 104729 + i)));
			tu_assert_rc(qc_ggml_quantize_ref(ts[i].type, x, ts[i].cols, data[i] + r * rb), 0);
		}
		free(x);
	}
	data[NT] = NULL;
	qc_membuf mb = { 0 };
	write_mem(w, (const uint8_t *const *)data, &mb);
	qc_gguf_w_free(w);
	char *path = tu_path("k.gguf");
	tu_write(path, mb.data, mb.len);
	assert_true(qc_gguf_is_file(path));
	qc_gguf_llama *g;
	tu_assert_rc(qc_gguf_llama_open(&g, path), 0);
	const qc_config *c = qc_gguf_llama_config(g);
	assert_int_equal(c->vocab_size, V);
	assert_int_equal(c->tie_word_embeddings, 1);
	assert_int_equal(c->torch_dtype, QC_DT_F16);
	assert_int_equal(c->rope_type, QC_ROPE_DEFAULT);
	assert_string_equal(qc_gguf_llama_weight_type(g), "Q4_K");
	const qc_wsrc *ws = qc_gguf_llama_wsrc(g);
	static const char *hf[] = { "model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
		"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
		"model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
		"model.layers.0.post_attention_layernorm.weight", "model.layers.0.mlp.gate_proj.weight",
		"model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
		"model.norm.weight" };
	for (int i = 0; i < NT; i++) {
		const qc_tensor *t;
		tu_assert_rc(ws->get(ws->ctx, hf[i], &t), 0);
		int64_t rows = ts[i].rows ? ts[i].rows : 1, cols = ts[i].cols;
		assert_int_equal(qc_numel(t->ndim, t->shape), rows * cols);
		int heads = i == 2 ? NH : i == 3 ? NKV : 0;
		size_t rb;
		tu_assert_rc(qc_ggml_row_bytes(ts[i].type, cols, &rb), 0);
		float *y = malloc((size_t)cols * sizeof *y), *got = malloc((size_t)cols * sizeof *got);
		for (int64_t r = 0; r < rows; r++) {
			tu_assert_rc(qc_ggml_dequantize(ts[i].type, data[i] + r * rb, cols, y), 0);
			int64_t hr = r;   /* the HF row GGUF row r holds */
			if (heads) {
				int64_t k = r % HD;
				hr = r / HD * HD + (k % 2) * (HD / 2) + k / 2;
			}
			size_t es = qc_dtype_size(t->dtype);
			tu_assert_rc(qc_to_f32(got, (const uint8_t *)t->data + (size_t)(hr * cols) * es,
			                       t->dtype, (size_t)cols), 0);
			if (memcmp(got, y, (size_t)cols * sizeof *y) != 0)
				fail_msg("%s GGUF row %lld is not HF row %lld", hf[i], (long long)r, (long long)hr);
		}
		free(y);
		free(got);
		ws->release(ws->ctx, hf[i]);
	}
	const qc_tensor *t;
	tu_assert_rc(ws->get(ws->ctx, "lm_head.weight", &t), QC_ENOTFOUND);
	qc_gguf_llama_close(g);
	/* the architecture is checked */
	for (size_t i = 0; i + 5 < mb.len; i++)
		if (memcmp(mb.data + i, "llama", 5) == 0) {
			memcpy(mb.data + i, "gemma", 5);
			break;
		}
	tu_write(path, mb.data, mb.len);
	tu_assert_rc(qc_gguf_llama_open(&g, path), QC_EUNSUPPORTED);
	for (int i = 0; i < NT; i++)
		free(data[i]);
	qc_membuf_free(&mb);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_container),
		cmocka_unit_test(test_rope_factors),
		cmocka_unit_test(test_pack),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_read_kquants),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
