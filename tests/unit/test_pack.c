/* test_pack.c - packed layouts (qc_pack.h): bits against hand-worked
 * examples from the formats' sources (compressed-tensors pack_to_int32,
 * AutoGPTQ QuantLinear.pack, AutoAWQ WQLinear_GEMM.from_linear), the fast
 * packers against their plain references, unpack(pack(x)) == x for every
 * format and scheme, dequantized weights equal to the naive checkpoint's
 * through the runtime's reader (qc_ctq, also over the GPTQ/AWQ view),
 * config blocks key for key, and every refusal. */
#include "tutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qc_card.h"
#include "qc_ctq.h"
#include "qc_err.h"
#include "qc_json.h"
#include "qc_num.h"
#include "qc_packfmt.h"
#include "qc_quant.h"
#include "qc_rng.h"

static qk_ctx *kc;

static int setup(void **state)
{
	(void)state;
	return qk_ctx_new(&kc, QK_DEVICE_CPU, 2);
}

static int teardown(void **state)
{
	(void)state;
	qk_ctx_free(kc);
	return 0;
}

// ---------------------------------------------------------------- a tensor table

/* named tensors in memory behind a qc_wsrc; counts gets and releases so a
 * test can check that every get is released */
typedef struct table {
	qc_tensor t[64];
	int n;
	int gets, releases;
	qc_wsrc src;
} table;

static int tab_get(void *ctx, const char *name, const qc_tensor **t)
{
	table *b = ctx;
	for (int i = 0; i < b->n; i++)
		if (strcmp(b->t[i].name, name) == 0) {
			b->gets++;
			*t = &b->t[i];
			return 0;
		}
	return qc_seterr(QC_ENOTFOUND, "no tensor '%s'", name);
}

static void tab_release(void *ctx, const char *name)
{
	table *b = ctx;
	for (int i = 0; i < b->n; i++)
		if (strcmp(b->t[i].name, name) == 0)
			b->releases++;
}

static void tab_init(table *b)
{
	memset(b, 0, sizeof *b);
	b->src = (qc_wsrc){ b, tab_get, tab_release };
}

/* add a copy of data */
static qc_tensor *tab_put(table *b, const char *name, qc_dtype dt, int ndim, int64_t d0, int64_t d1,
                          const void *data)
{
	assert_true(b->n < 64);
	qc_tensor *t = &b->t[b->n++];
	memset(t, 0, sizeof *t);
	t->name = strdup(name);
	t->dtype = dt;
	t->ndim = ndim;
	t->shape[0] = d0;
	t->shape[1] = d1;
	int64_t numel = ndim == 0 ? 1 : ndim == 1 ? d0 : d0 * d1;
	t->nbytes = (size_t)qc_nbytes(dt, numel);
	void *p = malloc(t->nbytes ? t->nbytes : 1);
	memcpy(p, data, t->nbytes);
	t->data = p;
	return t;
}

static void tab_free(table *b)
{
	for (int i = 0; i < b->n; i++) {
		free((void *)b->t[i].name);
		free((void *)b->t[i].data);
	}
	b->n = 0;
}

// ---------------------------------------------------------------- hand-worked bits

static void test_ct_by_hand(void **state)
{
	(void)state;
	/* compressed-tensors pack_to_int32: u = q + 8, column c in nibble c % 8
	 * of word c / 8, the first column in the least significant nibble. Row
	 * 0: u = 0 1 8 9 15 11 7 10 -> nibbles from the top A 7 B F 9 8 1 0.
	 * Row 1 has 10 columns: the second word holds columns 8 and 9 in its
	 * two low nibbles and zero padding above. */
	int8_t codes[2][10] = { { -8, -7, 0, 1, 7, 3, -1, 2, 5, -6 },
		                    { 0, 0, 0, 0, 0, 0, 0, 0, -8, 7 } };
	uint32_t w[4], r[4];
	assert_int_equal(qc_pack_ct_rows(&codes[0][0], 2, 10, 4, w), 0);
	assert_int_equal(qc_pack_ct_rows_ref(&codes[0][0], 2, 10, 4, r), 0);
	assert_int_equal(w[0], 0xA7BF9810u);
	assert_int_equal(w[1], 0x0000002Du);   /* u(5) = 13 = D, u(-6) = 2 */
	assert_int_equal(w[2], 0x88888888u);
	assert_int_equal(w[3], 0x000000F0u);
	assert_memory_equal(w, r, sizeof w);
	int8_t back[2][10];
	qc_unpack_ct_rows(w, 2, 10, 4, &back[0][0]);
	assert_memory_equal(back, codes, sizeof codes);

	/* 8 bits: u = q + 128, four per word, byte k = column k */
	int8_t c8[4] = { -128, 0, 127, -1 };
	assert_int_equal(qc_pack_ct_rows(c8, 1, 4, 8, w), 0);
	assert_int_equal(w[0], 0x7FFF8000u);

	/* zero points [9, 2] packed along dim 0: rows 0..7 in word row 0 (row
	 * r in nibble r), row 8 alone in word row 1 */
	int8_t zp[9][2];
	for (int i = 0; i < 9; i++) {
		zp[i][0] = (int8_t)(i - 8);   /* u = i */
		zp[i][1] = 7;                 /* u = 15 */
	}
	uint32_t z[4];
	assert_int_equal(qc_pack_ct_cols(&zp[0][0], 9, 2, 4, z), 0);
	assert_int_equal(z[0], 0x76543210u);
	assert_int_equal(z[1], 0xFFFFFFFFu);
	assert_int_equal(z[2], 0x00000008u);
	assert_int_equal(z[3], 0x0000000Fu);
	int8_t zb[9][2];
	qc_unpack_ct_cols(z, 9, 2, 4, &zb[0][0]);
	assert_memory_equal(zb, zp, sizeof zp);
}

static void test_gptq_by_hand(void **state)
{
	(void)state;
	/* AutoGPTQ: qweight [in/8, out], input row 8R + j of output n in nibble
	 * j of word [R][n]. Output 0 holds u = 0..7, output 1 u = 15..8. */
	int8_t codes[2][8] = { { -8, -7, -6, -5, -4, -3, -2, -1 }, { 7, 6, 5, 4, 3, 2, 1, 0 } };
	uint32_t qw[2], ref[2];
	assert_int_equal(qc_pack_gptq_qweight(&codes[0][0], 2, 8, 4, qw), 0);
	assert_int_equal(qc_pack_gptq_qweight_ref(&codes[0][0], 2, 8, 4, ref), 0);
	assert_int_equal(qw[0], 0x76543210u);
	assert_int_equal(qw[1], 0x89ABCDEFu);
	assert_memory_equal(qw, ref, sizeof qw);
	int8_t back[2][8];
	qc_unpack_gptq_qweight(qw, 2, 8, 4, &back[0][0]);
	assert_memory_equal(back, codes, sizeof codes);
	/* 8 bits: in = 4, out = 1 */
	int8_t c8[4] = { -128, -1, 0, 127 };
	assert_int_equal(qc_pack_gptq_qweight(c8, 1, 4, 8, qw), 0);
	assert_int_equal(qw[0], 0xFF807F00u);

	/* qzeros, v1: the unsigned zero point minus one. Symmetric 4-bit: z = 8
	 * stored as 7 in every nibble; 8-bit: 128 stored as 0x7F. */
	uint32_t qz[2];
	assert_int_equal(qc_pack_gptq_qzeros(NULL, 8, 1, 4, 0, qz), 0);
	assert_int_equal(qz[0], 0x77777777u);
	assert_int_equal(qc_pack_gptq_qzeros(NULL, 4, 1, 8, 0, qz), 0);
	assert_int_equal(qz[0], 0x7F7F7F7Fu);
	/* asymmetric [8 outputs, 1 group]: signed zp -5 (z = 3) for output 0,
	 * zp 7 (z = 15) for output 7, 0 (z = 8) elsewhere */
	int8_t zp[8] = { -5, 0, 0, 0, 0, 0, 0, 7 };
	assert_int_equal(qc_pack_gptq_qzeros(zp, 8, 1, 4, 0, qz), 0);
	assert_int_equal(qz[0], 0xE7777772u);   /* v1: 3 - 1 = 2, 15 - 1 = 14 */
	assert_int_equal(qc_pack_gptq_qzeros(zp, 8, 1, 4, 1, qz), 0);
	assert_int_equal(qz[0], 0xF8888883u);   /* v2: as they are */
	int8_t zb[8];
	assert_int_equal(qc_unpack_gptq_qzeros(qz, 8, 1, 4, 1, zb), 0);
	assert_memory_equal(zb, zp, sizeof zp);
	/* a zero point of 0 (signed -8) has no v1 form */
	zp[3] = -8;
	tu_assert_rc(qc_pack_gptq_qzeros(zp, 8, 1, 4, 0, qz), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "v1"));
	assert_int_equal(qc_pack_gptq_qzeros(zp, 8, 1, 4, 1, qz), 0);
	/* a v1 field of all ones reads back as 16: beyond 4 bits */
	qz[0] = 0x0000000Fu;
	tu_assert_rc(qc_unpack_gptq_qzeros(qz, 8, 1, 4, 0, zb), QC_EFORMAT);
}

static void test_awq_by_hand(void **state)
{
	(void)state;
	/* AutoAWQ: nibble i of word [k][C] holds output 8C + ORDER[i], ORDER =
	 * 0 2 4 6 1 3 5 7. Output n carries u = n: nibbles from the low end
	 * 0 2 4 6 1 3 5 7, i.e. 0x75316420. */
	int8_t codes[8];
	for (int n = 0; n < 8; n++)
		codes[n] = (int8_t)(n - 8);
	uint32_t qw[1], ref[1];
	assert_int_equal(qc_pack_awq_qweight(codes, 8, 1, qw), 0);
	assert_int_equal(qc_pack_awq_qweight_ref(codes, 8, 1, ref), 0);
	assert_int_equal(qw[0], 0x75316420u);
	assert_int_equal(ref[0], 0x75316420u);
	int8_t back[8];
	qc_unpack_awq_qweight(qw, 8, 1, back);
	assert_memory_equal(back, codes, sizeof codes);
	/* zero points as they are (z = zp + 8), same interleave; symmetric 8 */
	uint32_t qz[1];
	assert_int_equal(qc_pack_awq_qzeros(NULL, 8, 1, qz), 0);
	assert_int_equal(qz[0], 0x88888888u);
	int8_t zp[8] = { -8, -7, -6, -5, -4, -3, -2, -1 };   /* z = n */
	assert_int_equal(qc_pack_awq_qzeros(zp, 8, 1, qz), 0);
	assert_int_equal(qz[0], 0x75316420u);
	int8_t zb[8];
	qc_unpack_awq_qzeros(qz, 8, 1, zb);
	assert_memory_equal(zb, zp, sizeof zp);
}

static void test_code_ranges(void **state)
{
	(void)state;
	int8_t codes[64];
	uint32_t w[64];
	memset(codes, 0, sizeof codes);
	codes[37] = 8;   /* not an int4 code */
	tu_assert_rc(qc_pack_ct_rows(codes, 4, 16, 4, w), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "index 37"));
	tu_assert_rc(qc_pack_ct_rows_ref(codes, 4, 16, 4, w), QC_EFORMAT);
	tu_assert_rc(qc_pack_gptq_qweight(codes, 4, 16, 4, w), QC_EFORMAT);
	tu_assert_rc(qc_pack_gptq_qweight_ref(codes, 4, 16, 4, w), QC_EFORMAT);
	tu_assert_rc(qc_pack_awq_qweight(codes, 8, 8, w), QC_EFORMAT);
	tu_assert_rc(qc_pack_awq_qweight_ref(codes, 8, 8, w), QC_EFORMAT);
	codes[37] = -9;
	tu_assert_rc(qc_pack_ct_rows(codes, 4, 16, 4, w), QC_EFORMAT);
	/* every int8 is an 8-bit code */
	codes[37] = -128;
	assert_int_equal(qc_pack_ct_rows(codes, 4, 16, 8, w), 0);
	int8_t zp[16] = { 0 };
	zp[5] = 9;
	tu_assert_rc(qc_pack_ct_cols(zp, 16, 1, 4, w), QC_EFORMAT);
	tu_assert_rc(qc_pack_awq_qzeros(zp, 16, 1, w), QC_EFORMAT);
	tu_assert_rc(qc_pack_gptq_qzeros(zp, 16, 1, 4, 1, w), QC_EFORMAT);
}

/* The fast packers against the plain references on random codes, over
 * shapes with partial words and blocks. */
static void test_fast_vs_ref(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 7);
	const int64_t shapes[][2] = { { 1, 8 }, { 3, 13 }, { 17, 40 }, { 40, 96 }, { 64, 264 } };
	for (int bits = 4; bits <= 8; bits += 4)
		for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
			int64_t rows = shapes[s][0], cols = shapes[s][1];
			int8_t *c = malloc((size_t)(rows * cols));
			for (int64_t i = 0; i < rows * cols; i++)
				c[i] = (int8_t)(bits == 4 ? (int)(qc_rng_u64(&r) % 16) - 8 : (int)(qc_rng_u64(&r) % 256) - 128);
			size_t nw = (size_t)(rows * cols) + 64;
			uint32_t *a = calloc(nw, 4), *b = calloc(nw, 4);
			assert_int_equal(qc_pack_ct_rows(c, rows, cols, bits, a), 0);
			assert_int_equal(qc_pack_ct_rows_ref(c, rows, cols, bits, b), 0);
			assert_memory_equal(a, b, nw * 4);
			if (cols % (32 / bits) == 0) {
				memset(a, 0, nw * 4);
				memset(b, 0, nw * 4);
				assert_int_equal(qc_pack_gptq_qweight(c, rows, cols, bits, a), 0);
				assert_int_equal(qc_pack_gptq_qweight_ref(c, rows, cols, bits, b), 0);
				assert_memory_equal(a, b, nw * 4);
			}
			if (bits == 4 && rows % 8 == 0) {
				memset(a, 0, nw * 4);
				memset(b, 0, nw * 4);
				assert_int_equal(qc_pack_awq_qweight(c, rows, cols, a), 0);
				assert_int_equal(qc_pack_awq_qweight_ref(c, rows, cols, b), 0);
				assert_memory_equal(a, b, nw * 4);
			}
			free(a);
			free(b);
			free(c);
		}
}

static void test_scales_f16(void **state)
{
	(void)state;
	/* BF16 [2, 3] -> F16 [3, 2], exact */
	float v[6] = { 0.01171875f, 1.0f, 65280.0f, 0x1p-17f, 0x1.fep-3f, 3.0f };
	uint16_t bf[6], h[6];
	qc_from_f32(bf, QC_DT_BF16, v, 6);
	assert_int_equal(qc_pack_scales_f16(bf, QC_DT_BF16, 2, 3, h, "s"), 0);
	for (int r = 0; r < 2; r++)
		for (int g = 0; g < 3; g++)
			assert_true(qc_f16_to_f32(h[g * 2 + r]) == v[r * 3 + g]);
	/* F32 0.1 is not an F16 value: refused, not rounded */
	float f = 0.1f;
	tu_assert_rc(qc_pack_scales_f16(&f, QC_DT_F32, 1, 1, h, "m.weight_scale"), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "'m.weight_scale' at [0, 0]"));
	/* below F16's subnormals, or beyond its range */
	uint16_t tiny = qc_f32_to_bf16(0x1p-30f), big = qc_f32_to_bf16(1e6f);
	tu_assert_rc(qc_pack_scales_f16(&tiny, QC_DT_BF16, 1, 1, h, "s"), QC_EUNSUPPORTED);
	tu_assert_rc(qc_pack_scales_f16(&big, QC_DT_BF16, 1, 1, h, "s"), QC_EUNSUPPORTED);
	/* not a scale at all */
	uint16_t neg = qc_f32_to_bf16(-1.0f), nan = 0x7fc0, zero = 0;
	tu_assert_rc(qc_pack_scales_f16(&neg, QC_DT_BF16, 1, 1, h, "s"), QC_EFORMAT);
	tu_assert_rc(qc_pack_scales_f16(&nan, QC_DT_BF16, 1, 1, h, "s"), QC_EFORMAT);
	tu_assert_rc(qc_pack_scales_f16(&zero, QC_DT_BF16, 1, 1, h, "s"), QC_EFORMAT);
	/* F16 scales pass through unchanged */
	uint16_t f16 = qc_f32_to_f16(0.1f);
	assert_int_equal(qc_pack_scales_f16(&f16, QC_DT_F16, 1, 1, h, "s"), 0);
	assert_int_equal(h[0], f16);
}

// ---------------------------------------------------------------- naive Linears

/* A naive-quantized Linear made with qc_quant_rtn from random weights, the
 * tensors held in a table as a naive checkpoint stores them. */
typedef struct nlin {
	table tab;
	qc_ctq_linear L;
	qc_qscheme s;
	int64_t out, in;
} nlin;

static const char *M = "model.layers.0.mlp.down_proj";

static void make_naive(nlin *n, const char *preset, int64_t group, int sym, int64_t out, int64_t in,
                       int static_act, uint64_t seed)
{
	memset(n, 0, sizeof *n);
	tab_init(&n->tab);
	assert_int_equal(qc_qscheme_preset(&n->s, preset), 0);
	qc_qargs *a = &n->s.weights;
	if (group > 0) {
		a->strategy = QC_QS_GROUP;
		a->group_size = group;
	} else if (group == 0) {
		a->strategy = QC_QS_CHANNEL;
	} else {
		a->strategy = QC_QS_TENSOR;
	}
	a->symmetric = sym;
	if (static_act) {
		n->s.act = QC_ACT_STATIC_TENSOR;
		n->s.act_is_float = a->is_float;
	}
	n->out = out;
	n->in = in;
	qc_rng r;
	qc_rng_seed(&r, seed);
	float *W = malloc((size_t)(out * in) * sizeof *W);
	for (int64_t i = 0; i < out * in; i++)
		W[i] = (float)qc_rng_normal(&r) * 0.05f;
	int64_t ng = qc_qgroups(a, in), srows = a->strategy == QC_QS_TENSOR ? 1 : out;
	uint8_t *codes = malloc((size_t)(out * in));
	float *sc = malloc((size_t)(srows * ng) * sizeof *sc), *zp = malloc((size_t)(srows * ng) * sizeof *zp);
	qc_clip_opts co;
	qc_clip_opts_default(&co, QC_CLIP_MINMAX);
	assert_int_equal(qc_quant_rtn(a, &co, W, out, in, NULL, codes, sc, sym ? NULL : zp, NULL), 0);
	uint16_t *sb = malloc((size_t)(srows * ng) * 2);
	qc_from_f32(sb, QC_DT_BF16, sc, (size_t)(srows * ng));
	int8_t *zb = malloc((size_t)(srows * ng));
	for (int64_t i = 0; i < srows * ng; i++)
		zb[i] = (int8_t)(sym ? 0 : zp[i]);
	char name[256];
	snprintf(name, sizeof name, "%s.weight", M);
	tab_put(&n->tab, name, a->is_float ? QC_DT_F8_E4M3 : QC_DT_I8, 2, out, in, codes);
	snprintf(name, sizeof name, "%s.weight_scale", M);
	if (a->strategy == QC_QS_TENSOR)
		tab_put(&n->tab, name, QC_DT_BF16, 1, 1, 0, sb);
	else
		tab_put(&n->tab, name, QC_DT_BF16, 2, srows, ng, sb);
	if (!sym && !a->is_float) {
		snprintf(name, sizeof name, "%s.weight_zero_point", M);
		if (a->strategy == QC_QS_TENSOR)
			tab_put(&n->tab, name, QC_DT_I8, 1, 1, 0, zb);
		else
			tab_put(&n->tab, name, QC_DT_I8, 2, srows, ng, zb);
	}
	if (static_act) {
		uint16_t is = qc_f32_to_bf16(0.02f);
		snprintf(name, sizeof name, "%s.input_scale", M);
		tab_put(&n->tab, name, QC_DT_BF16, 1, 1, 0, &is);
	}
	free(W);
	free(codes);
	free(sc);
	free(zp);
	free(sb);
	free(zb);
	/* read it as the runtime does */
	json_t *qcj;
	assert_int_equal(qc_qscheme_to_json(&n->s, &qcj), 0);
	json_t *cfg = json_object();
	json_object_set_new(cfg, "quantization_config", qcj);
	qc_ctq *q;
	tu_assert_rc(qc_ctq_from_config(&q, cfg), 0);
	json_decref(cfg);
	tu_assert_rc(qc_ctq_linear_get(&n->L, q, &n->tab.src, M, out, in), 0);
	tu_assert_rc(qc_ctq_linear_check(&n->L), 0);
	qc_ctq_free(q);
}

static void free_naive(nlin *n)
{
	qc_ctq_linear_release(&n->L);
	qc_qscheme_free(&n->s);
	tab_free(&n->tab);
}

/* the packed tensors, stored in a table as a checkpoint would hold them */
static void store(table *t, const qc_pack_out *o)
{
	char name[256];
	for (int i = 0; i < o->n; i++) {
		snprintf(name, sizeof name, "%s.%s", M, o->t[i].suffix);
		tab_put(t, name, o->t[i].dtype, o->t[i].ndim, o->t[i].shape[0], o->t[i].shape[1],
		        o->t[i].data ? o->t[i].data : o->t[i].borrowed);
	}
}

static float *rows_of(const qc_ctq_linear *L)
{
	float *w = malloc((size_t)(L->out * L->in) * sizeof *w);
	tu_assert_rc(qc_ctq_linear_rows(kc, L, 0, L->out, w), 0);
	return w;
}

/* Pack n under format f, check the layout, unpack, compare with n's tensors;
 * the dequantized weights must equal the naive ones bit for bit, read back
 * through the packed checkpoint (CT), or through the view (GPTQ, AWQ). */
static void roundtrip(nlin *n, qc_pack_format f, const char *want_format)
{
	qc_pack_spec spec;
	tu_assert_rc(qc_pack_spec_for(&spec, f, &n->s), 0);
	if (want_format)
		assert_string_equal(spec.ct_format, want_format);
	qc_pack_out o, lay, o3;
	tu_assert_rc(qc_pack_linear(&spec, &n->L, 1, &o), 0);
	/* threads give the same bits */
	tu_assert_rc(qc_pack_linear(&spec, &n->L, 3, &o3), 0);
	assert_int_equal(o.n, o3.n);
	for (int i = 0; i < o.n; i++)
		assert_memory_equal(o.t[i].data ? o.t[i].data : o.t[i].borrowed,
		                    o3.t[i].data ? o3.t[i].data : o3.t[i].borrowed, o.t[i].nbytes);
	qc_pack_out_free(&o3);
	/* the layout predicts what was written */
	tu_assert_rc(qc_pack_layout(&spec, n->out, n->in, n->L.scale->dtype, n->L.input_scale != NULL,
	                            n->L.input_zp != NULL, &lay), 0);
	assert_int_equal(lay.n, o.n);
	for (int i = 0; i < o.n; i++) {
		assert_string_equal(lay.t[i].suffix, o.t[i].suffix);
		assert_int_equal(lay.t[i].dtype, o.t[i].dtype);
		assert_int_equal(lay.t[i].nbytes, o.t[i].nbytes);
		assert_int_equal(lay.t[i].copied, o.t[i].borrowed != NULL);
	}
	table packed;
	tab_init(&packed);
	store(&packed, &o);
	qc_pack_out_free(&o);

	qc_pack_unpacked u;
	tu_assert_rc(qc_unpack_linear(&spec, &packed.src, M, n->out, n->in, &u), 0);
	assert_int_equal(packed.gets, packed.releases);
	const qc_ctq_linear *L = &n->L;
	assert_int_equal(u.out, n->out);
	assert_int_equal(u.in, n->in);
	assert_memory_equal(u.codes, L->weight->data, (size_t)(n->out * n->in));
	int64_t ns = u.srows * u.ng;
	assert_int_equal(ns, qc_numel(L->scale->ndim, L->scale->shape));
	float *a = malloc((size_t)ns * sizeof *a), *b = malloc((size_t)ns * sizeof *b);
	qc_to_f32(a, u.scales, u.scale_dt, (size_t)ns);
	qc_to_f32(b, L->scale->data, L->scale->dtype, (size_t)ns);
	assert_memory_equal(a, b, (size_t)ns * sizeof *a);
	assert_int_equal(u.scale_dt, f == QC_PACK_CT ? QC_DT_BF16 : QC_DT_F16);
	if (L->zero_point) {
		assert_non_null(u.zps);
		assert_memory_equal(u.zps, L->zero_point->data, (size_t)ns);
	} else {
		assert_null(u.zps);
	}
	/* dequantized rows: unpacked == naive through the runtime's reader */
	float *wn = rows_of(L), *wu = malloc((size_t)(n->out * n->in) * sizeof *wu);
	tu_assert_rc(qc_pack_unpacked_rows(&u, 0, n->out, wu), 0);
	assert_memory_equal(wu, wn, (size_t)(n->out * n->in) * sizeof *wu);
	free(wu);

	/* read the packed tensors back as the runtime will */
	json_t *cfg = json_object(), *qcj;
	tu_assert_rc(qc_pack_qconfig(&spec, &n->s, NULL, 0, &qcj), 0);
	json_object_set_new(cfg, "quantization_config", qcj);
	qc_ctq *q = NULL;
	qc_ctq_linear P;
	qc_pack_view *v = NULL;
	const qc_wsrc *src = &packed.src;
	if (f == QC_PACK_CT) {
		tu_assert_rc(qc_ctq_from_config(&q, cfg), 0);
	} else {
		tu_assert_rc(qc_pack_view_open(&v, cfg, &packed.src), 0);
		assert_non_null(v);
		tu_assert_rc(qc_ctq_from_config(&q, qc_pack_view_config(v)), 0);
		src = qc_pack_view_wsrc(v);
	}
	tu_assert_rc(qc_ctq_linear_get(&P, q, src, M, n->out, n->in), 0);
	tu_assert_rc(qc_ctq_linear_check(&P), 0);
	float *wp = rows_of(&P);
	assert_memory_equal(wp, wn, (size_t)(n->out * n->in) * sizeof *wp);
	qc_ctq_linear_release(&P);
	assert_int_equal(packed.gets, packed.releases);
	free(wp);
	free(wn);
	qc_pack_view_free(v);
	qc_ctq_free(q);
	json_decref(cfg);
	qc_pack_unpacked_free(&u);
	free(a);
	free(b);
	tab_free(&packed);
}

static void test_roundtrip_ct(void **state)
{
	(void)state;
	nlin n;
	/* pack-quantized: int4 group sym/asym, channel, partial last group and
	 * rows that do not fill a word */
	make_naive(&n, "w4a16", 128, 1, 64, 256, 0, 1);
	roundtrip(&n, QC_PACK_CT, "pack-quantized");
	free_naive(&n);
	make_naive(&n, "w4a16", 32, 0, 20, 100, 0, 2);
	roundtrip(&n, QC_PACK_CT, "pack-quantized");
	free_naive(&n);
	make_naive(&n, "w4a16", 0, 0, 24, 64, 0, 3);
	roundtrip(&n, QC_PACK_CT, "pack-quantized");
	free_naive(&n);
	make_naive(&n, "w8a16", 0, 1, 32, 72, 0, 4);
	roundtrip(&n, QC_PACK_CT, "pack-quantized");
	free_naive(&n);
	make_naive(&n, "w8a16", 16, 0, 33, 48, 0, 5);
	roundtrip(&n, QC_PACK_CT, "pack-quantized");
	free_naive(&n);
	make_naive(&n, "w8a16", -1, 1, 16, 40, 0, 6);   /* per-tensor */
	roundtrip(&n, QC_PACK_CT, "pack-quantized");
	free_naive(&n);
	/* int-quantized and float-quantized keep the codes one per byte */
	make_naive(&n, "w8a8", 0, 1, 32, 64, 0, 7);
	roundtrip(&n, QC_PACK_CT, "int-quantized");
	free_naive(&n);
	make_naive(&n, "w8a8", -1, 1, 32, 64, 1, 8);     /* static input scale */
	roundtrip(&n, QC_PACK_CT, "int-quantized");
	free_naive(&n);
	make_naive(&n, "fp8-dynamic", 0, 1, 32, 64, 0, 9);
	roundtrip(&n, QC_PACK_CT, "float-quantized");
	free_naive(&n);
	make_naive(&n, "fp8-static", -1, 1, 32, 64, 1, 10);
	roundtrip(&n, QC_PACK_CT, "float-quantized");
	free_naive(&n);
}

static void test_roundtrip_gptq_awq(void **state)
{
	(void)state;
	nlin n;
	make_naive(&n, "w4a16", 128, 1, 64, 256, 0, 11);
	roundtrip(&n, QC_PACK_GPTQ, NULL);
	roundtrip(&n, QC_PACK_AWQ, NULL);
	free_naive(&n);
	make_naive(&n, "w4a16", 32, 0, 96, 128, 0, 12);   /* asymmetric: gptq_v2 */
	roundtrip(&n, QC_PACK_GPTQ, NULL);
	roundtrip(&n, QC_PACK_AWQ, NULL);
	free_naive(&n);
	make_naive(&n, "w4a16", 0, 1, 64, 96, 0, 13);     /* channel: group_size -1 */
	roundtrip(&n, QC_PACK_GPTQ, NULL);
	free_naive(&n);
	make_naive(&n, "w8a16", 0, 1, 64, 64, 0, 14);
	roundtrip(&n, QC_PACK_GPTQ, NULL);
	free_naive(&n);
	make_naive(&n, "w8a16", 32, 0, 32, 64, 0, 15);
	roundtrip(&n, QC_PACK_GPTQ, NULL);
	free_naive(&n);
}

/* What each format cannot express is refused before anything is packed,
 * with the reason in the message. */
static void test_refusals(void **state)
{
	(void)state;
	static const struct {
		const char *preset;
		qc_pack_format f;
		const char *why;
	} cases[] = {
		{ "fp8-dynamic", QC_PACK_GPTQ, "fp8" }, { "fp8-dynamic", QC_PACK_AWQ, "fp8" },
		{ "w8a8", QC_PACK_GPTQ, "activations" }, { "w8a8", QC_PACK_AWQ, "activations" },
		{ "w8a16", QC_PACK_AWQ, "8-bit" }, { "fp8-static", QC_PACK_GPTQ, "fp8" },
	};
	qc_pack_spec spec;
	qc_qscheme s;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		assert_int_equal(qc_qscheme_preset(&s, cases[i].preset), 0);
		tu_assert_rc(qc_pack_spec_for(&spec, cases[i].f, &s), QC_EUNSUPPORTED);
		assert_non_null(strstr(qc_errmsg(), cases[i].why));
		qc_qscheme_free(&s);
	}
	/* per-channel AWQ, per-tensor int as gptq, quantized lm_head, fp8 KV */
	assert_int_equal(qc_qscheme_preset(&s, "w4a16"), 0);
	s.weights.strategy = QC_QS_CHANNEL;
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_AWQ, &s), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "per-channel"));
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_GPTQ, &s), 0);
	s.weights.strategy = QC_QS_TENSOR;
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_GPTQ, &s), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "per-tensor"));
	s.weights.symmetric = 0;
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_CT, &s), QC_EUNSUPPORTED);
	qc_qscheme_free(&s);
	assert_int_equal(qc_qscheme_preset(&s, "w4a16"), 0);
	qc_qscheme_free(&s);   /* no ignore list: lm_head quantized */
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_GPTQ, &s), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "lm_head"));
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_CT, &s), 0);
	assert_int_equal(qc_qscheme_add_ignore(&s, "lm_head"), 0);
	s.kv_cache_fp8 = 1;
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_AWQ, &s), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "KV"));
	s.kv_cache_fp8 = 0;
	/* shapes: a partial last group for gptq/awq, AutoGPTQ's 32-alignment,
	 * AWQ's 8-alignment of out; compressed-tensors pads anything */
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_AWQ, &s), 0);
	tu_assert_rc(qc_pack_check_linear(&spec, M, 64, 200), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "partial"));
	tu_assert_rc(qc_pack_check_linear(&spec, M, 60, 256), QC_EUNSUPPORTED);
	tu_assert_rc(qc_pack_check_linear(&spec, M, 64, 256), 0);
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_GPTQ, &s), 0);
	tu_assert_rc(qc_pack_check_linear(&spec, M, 48, 256), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "32"));
	tu_assert_rc(qc_pack_check_linear(&spec, M, 64, 200), QC_EUNSUPPORTED);
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_CT, &s), 0);
	tu_assert_rc(qc_pack_check_linear(&spec, M, 3, 200), 0);
	qc_qscheme_free(&s);
	/* v1 cannot hold a zero point of 0: an asymmetric Linear with one is
	 * written as v2 by the spec, and the v1 packer refuses it */
	nlin n;
	make_naive(&n, "w4a16", 32, 0, 32, 64, 0, 21);
	int8_t *zp = (int8_t *)n.L.zero_point->data;
	zp[0] = -8;
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_GPTQ, &n.s), 0);
	assert_int_equal(spec.gptq_v2, 1);
	qc_pack_out o;
	tu_assert_rc(qc_pack_linear(&spec, &n.L, 1, &o), 0);
	qc_pack_out_free(&o);
	spec.gptq_v2 = 0;
	tu_assert_rc(qc_pack_linear(&spec, &n.L, 1, &o), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), M));
	assert_int_equal(o.n, 0);
	/* a code outside int4 names the Linear and its index, whatever thread
	 * packed it */
	spec.gptq_v2 = 1;
	((int8_t *)n.L.weight->data)[31 * 64 + 5] = 9;
	tu_assert_rc(qc_pack_linear(&spec, &n.L, 2, &o), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), M));
	assert_non_null(strstr(qc_errmsg(), "index 1989 "));
	free_naive(&n);
	/* BF16 scales beyond F16 */
	make_naive(&n, "w4a16", 32, 1, 32, 64, 0, 22);
	((uint16_t *)n.L.scale->data)[3] = qc_f32_to_bf16(1e6f);
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_AWQ, &n.s), 0);
	tu_assert_rc(qc_pack_linear(&spec, &n.L, 1, &o), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "F16"));
	free_naive(&n);
}

// ---------------------------------------------------------------- config blocks

static char *dump(const json_t *j)
{
	char *t;
	size_t n;
	assert_int_equal(qc_json_dump(j, &t, &n), 0);
	return t;
}

static void test_qconfig(void **state)
{
	(void)state;
	qc_qscheme s;
	qc_pack_spec spec;
	json_t *j;
	assert_int_equal(qc_qscheme_preset(&s, "w4a16"), 0);
	/* AutoGPTQ's BaseQuantizeConfig.to_dict keys (doc/formats.md 2.3) */
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_GPTQ, &s), 0);
	tu_assert_rc(qc_pack_qconfig(&spec, &s, NULL, 0, &j), 0);
	char *t = dump(j);
	assert_string_equal(t, "{\n"
	                       "  \"bits\": 4,\n"
	                       "  \"checkpoint_format\": \"gptq\",\n"
	                       "  \"damp_percent\": 0.01,\n"
	                       "  \"desc_act\": false,\n"
	                       "  \"group_size\": 128,\n"
	                       "  \"model_file_base_name\": \"model\",\n"
	                       "  \"model_name_or_path\": null,\n"
	                       "  \"quant_method\": \"gptq\",\n"
	                       "  \"static_groups\": false,\n"
	                       "  \"sym\": true,\n"
	                       "  \"true_sequential\": true\n"
	                       "}\n");
	free(t);
	/* detect reads back the same spec */
	json_t *cfg = json_object(), *jn;
	json_object_set_new(cfg, "quantization_config", j);
	qc_pack_spec back;
	assert_int_equal(qc_pack_detect(cfg, &back, &jn), 1);
	assert_int_equal(back.format, QC_PACK_GPTQ);
	assert_int_equal(back.w.bits, 4);
	assert_int_equal(back.w.strategy, QC_QS_GROUP);
	assert_int_equal(back.w.group_size, 128);
	assert_int_equal(back.w.symmetric, 1);
	assert_int_equal(back.gptq_v2, 0);
	t = dump(json_object_get(jn, "config_groups"));
	assert_non_null(strstr(t, "\"group_size\": 128"));
	assert_non_null(strstr(t, "\"num_bits\": 4"));
	assert_non_null(strstr(t, "\"symmetric\": true"));
	free(t);
	assert_string_equal(json_string_value(json_object_get(jn, "format")), "naive-quantized");
	json_decref(jn);
	json_decref(cfg);

	/* asymmetric channel -> gptq_v2, group_size -1 */
	s.weights.symmetric = 0;
	s.weights.strategy = QC_QS_CHANNEL;
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_GPTQ, &s), 0);
	tu_assert_rc(qc_pack_qconfig(&spec, &s, NULL, 0, &j), 0);
	assert_string_equal(json_string_value(json_object_get(j, "checkpoint_format")), "gptq_v2");
	assert_int_equal(json_integer_value(json_object_get(j, "group_size")), -1);
	assert_true(json_is_false(json_object_get(j, "sym")));
	cfg = json_object();
	json_object_set_new(cfg, "quantization_config", j);
	assert_int_equal(qc_pack_detect(cfg, &back, NULL), 1);
	assert_int_equal(back.gptq_v2, 1);
	assert_int_equal(back.w.strategy, QC_QS_CHANNEL);
	json_decref(cfg);

	/* AutoAWQ's to_transformers_dict (doc/formats.md 3.2), ignored Linears listed */
	s.weights.symmetric = 1;
	s.weights.strategy = QC_QS_GROUP;
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_AWQ, &s), 0);
	tu_assert_rc(qc_pack_qconfig(&spec, &s, NULL, 0, &j), 0);
	t = dump(j);
	assert_string_equal(t, "{\n"
	                       "  \"bits\": 4,\n"
	                       "  \"group_size\": 128,\n"
	                       "  \"modules_to_not_convert\": null,\n"
	                       "  \"quant_method\": \"awq\",\n"
	                       "  \"version\": \"gemm\",\n"
	                       "  \"zero_point\": true\n"
	                       "}\n");
	free(t);
	json_decref(j);
	const char *ign[] = { "model.layers.1.mlp.down_proj" };
	tu_assert_rc(qc_pack_qconfig(&spec, &s, ign, 1, &j), 0);
	t = dump(json_object_get(j, "modules_to_not_convert"));
	assert_string_equal(t, "[\n  \"model.layers.1.mlp.down_proj\"\n]\n");
	free(t);
	cfg = json_object();
	json_object_set_new(cfg, "quantization_config", j);
	assert_int_equal(qc_pack_detect(cfg, &back, &jn), 1);
	assert_int_equal(back.format, QC_PACK_AWQ);
	assert_int_equal(back.w.symmetric, 0);   /* AWQ always has zero points */
	qc_qscheme ns;
	assert_int_equal(qc_qscheme_from_json(&ns, jn), 0);
	/* a substring match, as AutoAWQ and vLLM mean it */
	assert_int_equal(qc_qscheme_ignored(&ns, "model.layers.1.mlp.down_proj"), 1);
	assert_int_equal(qc_qscheme_ignored(&ns, "model.layers.11.mlp.down_proj"), 0);
	assert_int_equal(qc_qscheme_ignored(&ns, "model.layers.1.mlpxdown_proj"), 0);
	assert_int_equal(qc_qscheme_ignored(&ns, "lm_head"), 1);
	qc_qscheme_free(&ns);
	json_decref(jn);
	json_decref(cfg);

	/* compressed-tensors: the field set doc/formats.md 1.6 reconstructs for
	 * W4A16 g128 symmetric, with format pack-quantized */
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_CT, &s), 0);
	tu_assert_rc(qc_pack_qconfig(&spec, &s, NULL, 0, &j), 0);
	t = dump(j);
	assert_string_equal(t, "{\n"
	                       "  \"config_groups\": {\n"
	                       "    \"group_0\": {\n"
	                       "      \"input_activations\": null,\n"
	                       "      \"output_activations\": null,\n"
	                       "      \"targets\": [\n        \"Linear\"\n      ],\n"
	                       "      \"weights\": {\n"
	                       "        \"actorder\": null,\n"
	                       "        \"block_structure\": null,\n"
	                       "        \"dynamic\": false,\n"
	                       "        \"group_size\": 128,\n"
	                       "        \"num_bits\": 4,\n"
	                       "        \"observer\": \"minmax\",\n"
	                       "        \"observer_kwargs\": {},\n"
	                       "        \"strategy\": \"group\",\n"
	                       "        \"symmetric\": true,\n"
	                       "        \"type\": \"int\"\n"
	                       "      }\n"
	                       "    }\n"
	                       "  },\n"
	                       "  \"format\": \"pack-quantized\",\n"
	                       "  \"global_compression_ratio\": null,\n"
	                       "  \"ignore\": [\n    \"lm_head\"\n  ],\n"
	                       "  \"kv_cache_scheme\": null,\n"
	                       "  \"quant_method\": \"compressed-tensors\",\n"
	                       "  \"quantization_status\": \"compressed\",\n"
	                       "  \"sparsity_config\": {},\n"
	                       "  \"transform_config\": {},\n"
	                       "  \"version\": \"0.12.2\"\n"
	                       "}\n");
	free(t);
	json_decref(j);
	qc_qscheme_free(&s);
}

static int detect_rc(const char *qc)
{
	json_error_t e;
	char buf[1024];
	snprintf(buf, sizeof buf, "{\"quantization_config\": %s}", qc);
	json_t *cfg = json_loads(buf, 0, &e);
	assert_non_null(cfg);
	qc_pack_spec spec;
	json_t *jn = NULL;
	int rc = qc_pack_detect(cfg, &spec, &jn);
	json_decref(jn);
	json_decref(cfg);
	return rc;
}

static void test_detect(void **state)
{
	(void)state;
	/* what vLLM and transformers accept and this module reads */
	assert_int_equal(detect_rc("{\"quant_method\": \"gptq\", \"bits\": 8, \"group_size\": 64, "
	                           "\"desc_act\": false}"), 1);
	assert_int_equal(detect_rc("{\"quant_method\": \"awq\", \"w_bit\": 4, \"q_group_size\": 64, "
	                           "\"zero_point\": true, \"version\": \"GEMM\"}"), 1);
	assert_int_equal(detect_rc("null"), 0);
	/* variants it refuses, and malformed blocks */
	tu_assert_rc(detect_rc("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 128, "
	                       "\"desc_act\": true}"), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "desc_act"));
	tu_assert_rc(detect_rc("{\"quant_method\": \"gptq\", \"bits\": 3, \"group_size\": 128}"),
	             QC_EUNSUPPORTED);
	tu_assert_rc(detect_rc("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 128, "
	                       "\"checkpoint_format\": \"marlin\"}"), QC_EUNSUPPORTED);
	tu_assert_rc(detect_rc("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 128, "
	                       "\"dynamic\": {\"-:.*down\": {}}}"), QC_EUNSUPPORTED);
	tu_assert_rc(detect_rc("{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 128, "
	                       "\"version\": \"gemv\"}"), QC_EUNSUPPORTED);
	tu_assert_rc(detect_rc("{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 128, "
	                       "\"zero_point\": false}"), QC_EUNSUPPORTED);
	tu_assert_rc(detect_rc("{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": -1}"),
	             QC_EFORMAT);
	tu_assert_rc(detect_rc("{\"quant_method\": \"gptq\", \"group_size\": 128}"), QC_EFORMAT);
	tu_assert_rc(detect_rc("{\"quant_method\": \"gptq\", \"bits\": \"4\", \"group_size\": 128}"),
	             QC_EFORMAT);
	tu_assert_rc(detect_rc("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 0}"),
	             QC_EFORMAT);
	tu_assert_rc(detect_rc("{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 64, "
	                       "\"modules_to_not_convert\": [1]}"), QC_EFORMAT);
	tu_assert_rc(detect_rc("{\"quant_method\": \"bitsandbytes\"}"), QC_EUNSUPPORTED);
	tu_assert_rc(detect_rc("[]"), QC_EFORMAT);
}

// ---------------------------------------------------------------- unpacking checks and the view

static void test_unpack_malformed(void **state)
{
	(void)state;
	nlin n;
	make_naive(&n, "w4a16", 32, 1, 64, 128, 0, 31);
	qc_pack_spec spec;
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_GPTQ, &n.s), 0);
	qc_pack_out o;
	tu_assert_rc(qc_pack_linear(&spec, &n.L, 1, &o), 0);
	qc_pack_unpacked u;
	/* each stored tensor missing, then with a wrong shape or dtype */
	for (int drop = 0; drop < o.n; drop++) {
		table t;
		tab_init(&t);
		for (int i = 0; i < o.n; i++) {
			if (i == drop)
				continue;
			char name[256];
			snprintf(name, sizeof name, "%s.%s", M, o.t[i].suffix);
			tab_put(&t, name, o.t[i].dtype, o.t[i].ndim, o.t[i].shape[0], o.t[i].shape[1], o.t[i].data);
		}
		tu_assert_rc(qc_unpack_linear(&spec, &t.src, M, -1, -1, &u), QC_ENOTFOUND);
		assert_non_null(strstr(qc_errmsg(), o.t[drop].suffix));
		assert_int_equal(t.gets, t.releases);
		tab_free(&t);
	}
	table t;
	tab_init(&t);
	store(&t, &o);
	/* the config's shape disagrees with the stored one */
	tu_assert_rc(qc_unpack_linear(&spec, &t.src, M, 64, 256, &u), QC_EFORMAT);
	/* act-order g_idx */
	int32_t *gi = NULL;
	for (int i = 0; i < t.n; i++)
		if (strstr(t.t[i].name, "g_idx"))
			gi = (int32_t *)t.t[i].data;
	gi[3] = 1;
	tu_assert_rc(qc_unpack_linear(&spec, &t.src, M, -1, -1, &u), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "g_idx"));
	gi[3] = 0;
	/* symmetric qzeros must say 8 (stored 7) */
	uint32_t *qz = NULL;
	for (int i = 0; i < t.n; i++)
		if (strstr(t.t[i].name, "qzeros"))
			qz = (uint32_t *)t.t[i].data;
	qz[1] = 0x77777776u;
	tu_assert_rc(qc_unpack_linear(&spec, &t.src, M, -1, -1, &u), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "qzeros"));
	qz[1] = 0x77777777u;
	tu_assert_rc(qc_unpack_linear(&spec, &t.src, M, -1, -1, &u), 0);
	qc_pack_unpacked_free(&u);
	assert_int_equal(t.gets, t.releases);
	/* the scales' dtype is not a float */
	for (int i = 0; i < t.n; i++)
		if (strstr(t.t[i].name, ".scales"))
			t.t[i].dtype = QC_DT_I16;
	tu_assert_rc(qc_unpack_linear(&spec, &t.src, M, -1, -1, &u), QC_EFORMAT);
	tab_free(&t);
	qc_pack_out_free(&o);
	free_naive(&n);
}

static void test_view(void **state)
{
	(void)state;
	nlin n;
	make_naive(&n, "w4a16", 32, 1, 64, 128, 0, 41);
	qc_pack_spec spec;
	tu_assert_rc(qc_pack_spec_for(&spec, QC_PACK_GPTQ, &n.s), 0);
	qc_pack_out o;
	tu_assert_rc(qc_pack_linear(&spec, &n.L, 1, &o), 0);
	table t;
	tab_init(&t);
	store(&t, &o);
	qc_pack_out_free(&o);
	float norm[4] = { 1, 2, 3, 4 };
	tab_put(&t, "model.norm.weight", QC_DT_F32, 1, 4, 0, norm);
	json_t *cfg = json_object(), *qcj;
	tu_assert_rc(qc_pack_qconfig(&spec, &n.s, NULL, 0, &qcj), 0);
	json_object_set_new(cfg, "quantization_config", qcj);
	json_object_set_new(cfg, "hidden_size", json_integer(4));
	qc_pack_view *v;
	tu_assert_rc(qc_pack_view_open(&v, cfg, &t.src), 0);
	assert_non_null(v);
	/* the rest of config.json is kept */
	assert_int_equal(json_integer_value(json_object_get(qc_pack_view_config(v), "hidden_size")), 4);
	const qc_wsrc *s = qc_pack_view_wsrc(v);
	const qc_tensor *w, *sc, *x;
	char name[256];
	snprintf(name, sizeof name, "%s.weight", M);
	tu_assert_rc(s->get(s->ctx, name, &w), 0);
	assert_int_equal(w->dtype, QC_DT_I8);
	assert_int_equal(w->shape[0], 64);
	assert_int_equal(w->shape[1], 128);
	assert_memory_equal(w->data, n.L.weight->data, 64 * 128);
	snprintf(name, sizeof name, "%s.weight_scale", M);
	tu_assert_rc(s->get(s->ctx, name, &sc), 0);
	assert_int_equal(sc->dtype, QC_DT_F16);
	assert_int_equal(sc->shape[1], 4);
	/* symmetric: no zero points */
	snprintf(name, sizeof name, "%s.weight_zero_point", M);
	tu_assert_rc(s->get(s->ctx, name, &x), QC_ENOTFOUND);
	/* dense tensors pass through */
	tu_assert_rc(s->get(s->ctx, "model.norm.weight", &x), 0);
	assert_int_equal(x->dtype, QC_DT_F32);
	s->release(s->ctx, "model.norm.weight");
	snprintf(name, sizeof name, "%s.weight", M);
	s->release(s->ctx, name);
	snprintf(name, sizeof name, "%s.weight_scale", M);
	s->release(s->ctx, name);
	assert_int_equal(t.gets, t.releases);
	/* a Linear without qweight is not served (a dense one passes through) */
	tu_assert_rc(s->get(s->ctx, "lm_head.weight", &x), QC_ENOTFOUND);
	qc_pack_view_free(v);
	/* compressed-tensors and dense configs need no view */
	json_t *c2 = json_object();
	tu_assert_rc(qc_pack_view_open(&v, c2, &t.src), 0);
	assert_null(v);
	tu_assert_rc(qc_qscheme_to_json(&n.s, &qcj), 0);
	json_object_set_new(c2, "quantization_config", qcj);
	tu_assert_rc(qc_pack_view_open(&v, c2, &t.src), 0);
	assert_null(v);
	/* other methods are the runtime's to refuse; gptq variants not read are ours */
	json_object_set_new(c2, "quantization_config", json_pack("{s:s}", "quant_method", "bitsandbytes"));
	tu_assert_rc(qc_pack_view_open(&v, c2, &t.src), 0);
	assert_null(v);
	json_object_set_new(c2, "quantization_config",
	                    json_pack("{s:s, s:i, s:i, s:b}", "quant_method", "gptq", "bits", 4,
	                              "group_size", 128, "desc_act", 1));
	tu_assert_rc(qc_pack_view_open(&v, c2, &t.src), QC_EUNSUPPORTED);
	assert_null(v);
	json_decref(c2);
	json_decref(cfg);
	tab_free(&t);
	free_naive(&n);
}

// ---------------------------------------------------------------- the card

static void test_card(void **state)
{
	(void)state;
	qc_qscheme s;
	assert_int_equal(qc_qscheme_preset(&s, "w4a16"), 0);
	const char rep[] =
	        "{\"tool\": \"qgptq\", \"layer\": \"a\", \"err_out\": 0.1, \"err_w\": 0.01, \"err_rtn\": 0.2, \"n_tokens\": 64}\n"
	        "{\"tool\": \"qgptq\", \"layer\": \"b\", \"err_out\": null, \"err_w\": 0.5, \"err_rtn\": null, \"n_tokens\": 64}\n"
	        "{\"tool\": \"qgptq\", \"layer\": \"c\", \"err_out\": 0.3, \"err_w\": 0.02, \"err_rtn\": 0.4, \"n_tokens\": 64}\n"
	        "{\"tool\": \"qgptq\", \"layer\": \"d\", \"err_out\": null, \"err_w\": null, \"err_rtn\": null, \"n_tokens\": 64}\n";
	char *argv[] = { "qpack", "-o", "OUT", "a b", "it's" };
	const char *notes[] = { "a note" };
	qc_card_info ci = { .title = "T", .scheme = &s, .format = "F", .notes = notes, .n_notes = 1,
		                .report = rep, .report_len = sizeof rep - 1, .worst = 3, .n_shards = 2,
		                .run_tool = "qpack", .run_version = "9", .run_argc = 5, .run_argv = argv };
	char *md, *md2;
	size_t len, len2;
	tu_assert_rc(qc_card_markdown(&ci, &md, &len), 0);
	assert_int_equal(strlen(md), len);
	assert_non_null(strstr(md, "# T\n"));
	assert_non_null(strstr(md, "- Weights: int4, scales per group of 128 input channels, symmetric "
	                           "(scale = amax / 7.5, zero point 0)\n"));
	assert_non_null(strstr(md, "- Not quantized: embeddings, norms, `lm_head`\n"));
	assert_non_null(strstr(md, "- F\n- a note\n"));
	/* no manifest: said so, never invented */
	assert_non_null(strstr(md, "(earlier steps not recorded: the input had no manifest)\n"
	                           "qpack -o OUT 'a b' 'it'\\''s'    # qpack 9\n"));
	assert_non_null(strstr(md, "- Token sets: not recorded"));
	assert_non_null(strstr(md, "- Base model fingerprint: not recorded"));
	assert_non_null(strstr(md, "- Calibration tokens per Linear: 64\n"));
	/* worst first by err_out, err_w where err_out is null; 3 of 4 */
	char *b = strstr(md, "| `b` | - | 0.5 | - |\n"), *cc = strstr(md, "| `c` | 0.3 | 0.02 | 0.4 |\n"),
	     *a = strstr(md, "| `a` | 0.1 | 0.01 | 0.2 |\n");
	assert_non_null(b);
	assert_non_null(cc);
	assert_non_null(a);
	assert_true(b < cc && cc < a);
	assert_null(strstr(md, "| `d` |"));
	assert_non_null(strstr(md, "The 3 of 4 quantized Linears"));
	assert_non_null(strstr(md, "- 2 safetensors shards\n"));
	/* deterministic */
	tu_assert_rc(qc_card_markdown(&ci, &md2, &len2), 0);
	assert_int_equal(len, len2);
	assert_memory_equal(md, md2, len);
	free(md);
	free(md2);
	/* with a manifest: its history and token sets */
	qc_manifest *m = qc_manifest_new();
	char *h0[] = { "qsynth", "--preset", "tiny" };
	assert_int_equal(qc_manifest_add_history(m, "qsynth", "1", 3, h0), 0);
	qc_h128 th = { 0x0123456789abcdefull, 0xfedcba9876543210ull };
	assert_int_equal(qc_manifest_add_token_set(m, "calibration", th), 0);
	assert_int_equal(qc_manifest_set_base(m, "00112233445566778899aabbccddeeff", "model"), 0);
	ci.manifest = m;
	ci.report = NULL;
	tu_assert_rc(qc_card_markdown(&ci, &md, &len), 0);
	assert_non_null(strstr(md, "```\nqsynth --preset tiny    # qsynth 1\nqpack -o OUT"));
	assert_non_null(strstr(md, "- Token set (calibration): XXH3-128 `0123456789abcdeffedcba9876543210`"));
	assert_non_null(strstr(md, "`00112233445566778899aabbccddeeff` from model"));
	assert_non_null(strstr(md, "No quant_report.jsonl was recorded."));
	free(md);
	qc_manifest_free(m);
	/* a malformed report line is named */
	ci.manifest = NULL;
	const char bad[] = "{\"layer\": \"a\"}\n[1, 2]\n";
	ci.report = bad;
	ci.report_len = sizeof bad - 1;
	tu_assert_rc(qc_card_markdown(&ci, &md, &len), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "line 2"));
	assert_null(md);
	qc_qscheme_free(&s);
}

static void test_format_names(void **state)
{
	(void)state;
	qc_pack_format f;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(qc_pack_format_parse(qc_pack_format_name((qc_pack_format)i), &f), 0);
		assert_int_equal(f, i);
	}
	tu_assert_rc(qc_pack_format_parse("gguf", &f), QC_EINVAL);
	assert_non_null(strstr(qc_errmsg(), "'gguf'"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ct_by_hand),
		cmocka_unit_test(test_gptq_by_hand),
		cmocka_unit_test(test_awq_by_hand),
		cmocka_unit_test(test_code_ranges),
		cmocka_unit_test(test_fast_vs_ref),
		cmocka_unit_test(test_scales_f16),
		cmocka_unit_test(test_roundtrip_ct),
		cmocka_unit_test(test_roundtrip_gptq_awq),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_qconfig),
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_unpack_malformed),
		cmocka_unit_test(test_view),
		cmocka_unit_test(test_card),
		cmocka_unit_test(test_format_names),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
