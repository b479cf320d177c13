/* qc_model.c - the decoder graph of the Llama, Mistral, Gemma and Gemma 2
 * families one layer at a time (see qc_model.h). */
#include "qc_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_num.h"
#include "qc_packfmt.h"

/* up to this many rows of logits read a BF16 lm_head directly (decoding) */
#define HEAD_DIRECT_ROWS 4

struct qc_model {
	qc_config cfg;            /* hyperparameters; raw owned only by qc_model_open */
	int own_cfg;
	qc_wsrc src;
	const qc_ctq *q;
	qc_ctq *own_q;
	qc_pack_view *own_view;   /* gptq/awq artifacts seen as naive-quantized */
	qk_ctx *kc;
	qc_model_opts o;
	int64_t H, I, nh, nkv, hd, V, qd, kvd;
	float eps, att_scale;
	float *embed_mult;        /* [H] host: Gemma's sqrt(hidden) in the model's dtype, or NULL */
	float *inv_freq;          /* [hd/2], host */
	/* ends of the graph, fetched on first use */
	int have_embed, have_head;
	int head_bf16_checked;    /* the BF16 lm_head was scanned for NaN/Inf */
	qc_ctq_linear embed, head;
	float *final_norm;        /* [H] */
	/* scratch for T tokens: h [T,H], a [T,qd], q [T,qd], k, v [T,kvd],
	 * t [T, max(H,qd)] (a quantized copy of a Linear's input) */
	int64_t cap_T;
	float *s_h, *s_a, *s_q, *s_k, *s_v, *s_t;
	float *s_o;               /* [T, H] o_proj's output before its norm (sandwich norms) */
	/* MLP rows: g, u [mlp_rows, I], x [mlp_rows, H] (quantized input copy);
	 * o [mlp_rows, H] down_proj's output before its norm (sandwich norms) */
	float *m_g, *m_u, *m_x, *m_o;
	float *head_w;            /* [head_rows, H] */
	/* buffers of released layers, reused by the next load: fresh pages
	 * cost the kernel a clear each (a third of a layer's load time) */
	struct { float *p; int64_t n; } pool[2 * QC_LIN_COUNT + QC_NORM_COUNT];
	int npool;
};

void qc_model_opts_default(qc_model_opts *o)
{
	o->vllm_fused = 1;
	o->chunk_tokens = 2048;
	o->mlp_rows = 256;
	o->head_rows = 0;
	o->keep_tensors = 0;
}

const qc_config *qc_model_config(const qc_model *m) { return &m->cfg; }
const qc_ctq *qc_model_ctq(const qc_model *m) { return m->q; }
const float *qc_model_inv_freq(const qc_model *m)
{
	return m->inv_freq;
}

qk_ctx *qc_model_kernels(const qc_model *m) { return m->kc; }
const qc_wsrc *qc_model_wsrc(const qc_model *m) { return &m->src; }

/* ---------------------------------------------------------------- setup */

static int check_hparams(const qc_config *c)
{
	if (c->hidden_size <= 0 || c->intermediate_size <= 0 || c->num_hidden_layers <= 0 ||
	    c->num_attention_heads <= 0 || c->num_key_value_heads <= 0 || c->head_dim <= 0 ||
	    c->vocab_size <= 0)
		return qc_seterr(QC_EFORMAT, "model sizes must be positive");
	if (c->num_attention_heads % c->num_key_value_heads)
		return qc_seterr(QC_EFORMAT, "num_key_value_heads %lld does not divide num_attention_heads %lld",
		                 (long long)c->num_key_value_heads, (long long)c->num_attention_heads);
	if (c->head_dim % 2)
		return qc_seterr(QC_EFORMAT, "head_dim %lld is odd", (long long)c->head_dim);
	if (!(c->rms_norm_eps > 0) || !isfinite(c->rms_norm_eps))
		return qc_seterr(QC_EFORMAT, "rms_norm_eps %g is not positive", c->rms_norm_eps);
	if (c->hidden_act[0] && strcmp(c->hidden_act, "silu") != 0 &&
	    strcmp(c->hidden_act, "gelu_pytorch_tanh") != 0)
		return qc_seterr(QC_EUNSUPPORTED, "hidden_act '%s' is not supported (silu, "
		                 "gelu_pytorch_tanh)", c->hidden_act);
	if (c->norm_offset < 0 || c->norm_offset > 1 || c->sliding_window < 0 ||
	    !(c->attn_softcap >= 0) || !(c->final_softcap >= 0) || !(c->query_pre_attn_scalar >= 0) ||
	    !isfinite(c->attn_softcap) || !isfinite(c->final_softcap) ||
	    !isfinite(c->query_pre_attn_scalar))
		return qc_seterr(QC_EFORMAT, "invalid norm offset, window, soft-capping or attention scale");
	return 0;
}

int qc_model_new(qc_model **out, const qc_config *cfg, const qc_wsrc *src, const qc_ctq *q,
                 qk_ctx *kc, const qc_model_opts *opts)
{
	*out = NULL;
	QC_TRY(check_hparams(cfg));
	qc_model *m = calloc(1, sizeof *m);
	if (!m)
		return qc_seterr(QC_ENOMEM, "out of memory");
	m->cfg = *cfg;
	m->cfg.raw = NULL;
	m->src = *src;
	m->q = q;
	m->kc = kc;
	qc_model_opts_default(&m->o);
	if (opts)
		m->o = *opts;
	if (m->o.chunk_tokens <= 0)
		m->o.chunk_tokens = 2048;
	if (m->o.mlp_rows <= 0)
		m->o.mlp_rows = 256;
	/* without a release, every user of m->src (qc_ctq too) keeps what it got */
	if (m->o.keep_tensors)
		m->src.release = NULL;
	m->H = cfg->hidden_size;
	m->I = cfg->intermediate_size;
	m->nh = cfg->num_attention_heads;
	m->nkv = cfg->num_key_value_heads;
	m->hd = cfg->head_dim;
	m->V = cfg->vocab_size;
	m->qd = m->nh * m->hd;
	m->kvd = m->nkv * m->hd;
	m->eps = (float)cfg->rms_norm_eps;
	/* Gemma 2: query_pre_attn_scalar^-1/2 (27B's is not head_dim's) */
	m->att_scale = (float)(1.0 / sqrt(cfg->query_pre_attn_scalar > 0 ? cfg->query_pre_attn_scalar
	                                                                 : (double)m->hd));
	if (m->o.head_rows <= 0) {
		/* about 16 MiB of FP32 rows per lm_head block */
		int64_t r = (16 << 20) / (4 * m->H);
		m->o.head_rows = r < 64 ? 64 : r;
	}
	if (m->o.head_rows > m->V)
		m->o.head_rows = m->V;
	qk_rope rp = { .theta = cfg->rope_theta, .type = QK_ROPE_DEFAULT, .factor = cfg->rope_factor,
	               .low_freq_factor = cfg->rope_low_freq_factor,
	               .high_freq_factor = cfg->rope_high_freq_factor,
	               .original_max_pos = (double)cfg->rope_original_max_position_embeddings };
	if (cfg->rope_type == QC_ROPE_LLAMA3)
		rp.type = QK_ROPE_LLAMA3;
	else if (cfg->rope_type == QC_ROPE_LINEAR)
		rp.type = QK_ROPE_LINEAR;
	int rc;
	m->inv_freq = malloc((size_t)(m->hd / 2) * sizeof *m->inv_freq);
	if (!m->inv_freq) {
		rc = qc_seterr(QC_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = qk_rope_inv_freq(m->inv_freq, m->hd, &rp))) {
		rc = qc_errctx(QC_EFORMAT, "config.json");
		goto fail;
	}
	if (cfg->embed_scale) {
		/* transformers' Gemma: hidden * torch.tensor(hidden_size ** 0.5,
		 * dtype=hidden.dtype): the normalizer rounded to the model's dtype
		 * (the product itself is FP32 here) */
		float mult = qc_round_to((float)sqrt((double)m->H), cfg->torch_dtype);
		if (!(m->embed_mult = malloc((size_t)m->H * sizeof *m->embed_mult))) {
			rc = qc_seterr(QC_ENOMEM, "out of memory");
			goto fail;
		}
		for (int64_t i = 0; i < m->H; i++)
			m->embed_mult[i] = mult;
	}
	*out = m;
	return 0;
fail:
	qc_model_free(m);
	return rc;
}

static void free_scratch(qc_model *m)
{
	float **bufs[] = { &m->s_h, &m->s_a, &m->s_q, &m->s_k, &m->s_v, &m->s_t, &m->s_o };
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
		qk_free(m->kc, *bufs[i]);
		*bufs[i] = NULL;
	}
	m->cap_T = 0;
}

void qc_model_free(qc_model *m)
{
	if (!m)
		return;
	if (m->have_embed)
		qc_ctq_linear_release(&m->embed);
	if (m->have_head)
		qc_ctq_linear_release(&m->head);
	qk_free(m->kc, m->final_norm);
	free_scratch(m);
	qk_free(m->kc, m->m_g);
	qk_free(m->kc, m->m_u);
	qk_free(m->kc, m->m_x);
	qk_free(m->kc, m->m_o);
	qk_free(m->kc, m->head_w);
	free(m->embed_mult);
	for (int i = 0; i < m->npool; i++)
		qk_free(m->kc, m->pool[i].p);
	free(m->inv_freq);
	qc_ctq_free(m->own_q);
	/* after every tensor fetched through it was released */
	qc_pack_view_free(m->own_view);
	if (m->own_cfg)
		qc_config_free(&m->cfg);
	free(m);
}

static float *dalloc(qc_model *m, int64_t n)
{
	return qk_alloc(m->kc, (size_t)n * sizeof(float));
}

/* per-chunk buffers for T tokens, kept and grown as needed */
static int ensure_scratch(qc_model *m, int64_t T)
{
	if (T <= m->cap_T)
		return 0;
	free_scratch(m);
	int64_t tw = m->H > m->qd ? m->H : m->qd;
	m->s_h = dalloc(m, T * m->H);
	m->s_a = dalloc(m, T * m->qd);
	m->s_q = dalloc(m, T * m->qd);
	m->s_k = dalloc(m, T * m->kvd);
	m->s_v = dalloc(m, T * m->kvd);
	m->s_t = dalloc(m, T * tw);
	if (m->cfg.sandwich_norms)
		m->s_o = dalloc(m, T * m->H);
	if (!m->s_h || !m->s_a || !m->s_q || !m->s_k || !m->s_v || !m->s_t ||
	    (m->cfg.sandwich_norms && !m->s_o)) {
		free_scratch(m);
		return qc_seterr(QC_ENOMEM, "cannot allocate activations for %lld tokens", (long long)T);
	}
	m->cap_T = T;
	return 0;
}

static int ensure_mlp(qc_model *m)
{
	if (m->m_g)
		return 0;
	int64_t M = m->o.mlp_rows;
	m->m_g = dalloc(m, M * m->I);
	m->m_u = dalloc(m, M * m->I);
	m->m_x = dalloc(m, M * m->H);
	if (m->cfg.sandwich_norms)
		m->m_o = dalloc(m, M * m->H);
	if (!m->m_g || !m->m_u || !m->m_x || (m->cfg.sandwich_norms && !m->m_o)) {
		qk_free(m->kc, m->m_g);
		qk_free(m->kc, m->m_u);
		qk_free(m->kc, m->m_x);
		qk_free(m->kc, m->m_o);
		m->m_g = m->m_u = m->m_x = m->m_o = NULL;
		return qc_seterr(QC_ENOMEM, "cannot allocate MLP activations");
	}
	return 0;
}

/* ---------------------------------------------------------------- tensor helpers */

static void release_name(qc_model *m, const char *name)
{
	if (m->src.release)
		m->src.release(m->src.ctx, name);
}

/* w [n] device memory */
static int check_finite(qc_model *m, const float *w, int64_t n, const char *what)
{
	int64_t i;
	QC_TRY(qk_nonfinite(m->kc, w, (size_t)n, &i));
	if (i >= 0)
		return qc_seterr(QC_EFORMAT, "%s holds a non-finite value at index %lld", what,
		                 (long long)i);
	return 0;
}

/* the same for BF16 bits in host memory: all-ones exponent is Inf or NaN */
static int check_finite_bf16(const uint16_t *w, int64_t n, const char *what)
{
	for (int64_t i = 0; i < n; i++)
		if ((w[i] & 0x7f80) == 0x7f80)
			return qc_seterr(QC_EFORMAT, "%s holds a non-finite value at index %lld", what,
			                 (long long)i);
	return 0;
}

static int load_vector_off(qc_model *m, const char *name, int64_t n, float off, float **out);

/* a float vector tensor [n] (norm weight, bias) into new FP32 memory */
static int load_vector(qc_model *m, const char *name, int64_t n, float **out)
{
	return load_vector_off(m, name, n, 0.0f, out);
}

/* an RMSNorm's weight as the norm applies it: norm_offset + w in FP32
 * (Gemma's (1 + weight), computed in FP32 as its module does) */
static int load_norm(qc_model *m, const char *name, float **out)
{
	return load_vector_off(m, name, m->H, (float)m->cfg.norm_offset, out);
}

/* the same plus off, added in FP32 on the host */
static int load_vector_off(qc_model *m, const char *name, int64_t n, float off, float **out)
{
	*out = NULL;
	const qc_tensor *t;
	int rc = m->src.get(m->src.ctx, name, &t);
	if (rc == QC_ENOTFOUND)
		return qc_seterr(QC_ENOTFOUND, "tensor '%s' is missing", name);
	if (rc)
		return rc;
	char a[64];
	if (!qc_dtype_is_float(t->dtype) || t->dtype == QC_DT_F8_E4M3) {
		rc = qc_seterr(QC_EFORMAT, "tensor '%s' has dtype %s, expected a float type", name,
		               qc_dtype_name(t->dtype));
	} else if (t->ndim != 1 || t->shape[0] != n) {
		rc = qc_seterr(QC_EFORMAT, "tensor '%s' has shape %s, expected [%lld]", name,
		               qc_shape_str(a, sizeof a, t->ndim, t->shape), (long long)n);
	} else if (!(*out = dalloc(m, n))) {
		rc = qc_seterr(QC_ENOMEM, "out of memory loading '%s'", name);
	} else if (off != 0.0f) {
		float *h = malloc((size_t)n * sizeof *h);
		if (!h) {
			rc = qc_seterr(QC_ENOMEM, "out of memory loading '%s'", name);
		} else {
			rc = qc_to_f32(h, t->data, t->dtype, (size_t)n);
			for (int64_t i = 0; !rc && i < n; i++)
				h[i] += off;
			if (!rc)
				rc = qk_upload(m->kc, *out, h, (size_t)n * sizeof *h);
			free(h);
		}
	} else {
		rc = qk_to_f32(m->kc, *out, t->data, t->dtype, (size_t)n);
	}
	if (!rc && *out) {
		char what[300];
		snprintf(what, sizeof what, "tensor '%s'", name);
		rc = check_finite(m, *out, n, what);
	}
	release_name(m, name);
	if (rc) {
		qk_free(m->kc, *out);
		*out = NULL;
	}
	return rc;
}

/* ---------------------------------------------------------------- layers */

/* a weight buffer of n floats: a pooled one of that size, or a new one */
static float *walloc(qc_model *m, int64_t n)
{
	for (int i = 0; i < m->npool; i++)
		if (m->pool[i].n == n) {
			float *p = m->pool[i].p;
			m->pool[i] = m->pool[--m->npool];
			return p;
		}
	return dalloc(m, n);
}

static void wfree(qc_model *m, float *p, int64_t n)
{
	if (!p)
		return;
	if (m->npool < (int)(sizeof m->pool / sizeof m->pool[0])) {
		m->pool[m->npool].p = p;
		m->pool[m->npool++].n = n;
	} else {
		qk_free(m->kc, p);
	}
}

void qc_layer_release(qc_model *m, qc_layer *lw)
{
	wfree(m, lw->attn_norm, m->H);
	wfree(m, lw->mlp_norm, m->H);
	wfree(m, lw->attn_out_norm, m->H);
	wfree(m, lw->mlp_out_norm, m->H);
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		wfree(m, lw->w[l], lw->out[l] * lw->in[l]);
		wfree(m, lw->b[l], lw->out[l]);
		qk_free(m->kc, lw->q4[l]);
		qk_free(m->kc, lw->q4s[l]);
		qk_free(m->kc, lw->q4z[l]);
	}
	memset(lw, 0, sizeof *lw);
}

/*
 * What vLLM's fusion of shards [first, first + n) into one Linear does to
 * the numbers: one static input scale (the maximum; for asymmetric int8 the
 * scale and zero point covering every shard's range), and FP8 per-tensor
 * weights requantized to the largest weight scale. wscale[l] holds each
 * shard's per-tensor weight scale (0 when not per-tensor FP8).
 */
static int fuse_like_vllm(qc_model *m, qc_layer *lw, int first, int n, const float *wscale)
{
	int static_in = 1, fp8_tensor = 1;
	for (int l = first; l < first + n; l++) {
		if (lw->act[l].kind != QK_ACTQ_INT8_TENSOR && lw->act[l].kind != QK_ACTQ_FP8_TENSOR)
			static_in = 0;
		if (!(wscale[l] > 0))
			fp8_tensor = 0;
	}
	if (static_in) {
		int sym = 1;
		for (int l = first; l < first + n; l++)
			sym &= lw->act[l].zero_point == 0;
		float s = 0;
		int32_t z = 0;
		if (sym) {
			for (int l = first; l < first + n; l++)
				s = fmaxf(s, lw->act[l].scale);
		} else {
			/* asymmetric int8 (vLLM compressed_tensors_w8a8_int8.py): the
			 * union of the shards' ranges [s(-128 - z), s(127 - z)] */
			float hi = -INFINITY, lo = INFINITY;
			for (int l = first; l < first + n; l++) {
				hi = fmaxf(hi, lw->act[l].scale * (127.0f - (float)lw->act[l].zero_point));
				lo = fminf(lo, lw->act[l].scale * (-128.0f - (float)lw->act[l].zero_point));
			}
			s = (hi - lo) / 255.0f;
			z = (int32_t)nearbyintf(-128.0f - lo / s);
		}
		for (int l = first; l < first + n; l++) {
			lw->act[l].scale = s;
			lw->act[l].zero_point = z;
		}
	}
	if (fp8_tensor) {
		float smax = 0;
		for (int l = first; l < first + n; l++)
			smax = fmaxf(smax, wscale[l]);
		/* w = e4m3(w / smax) * smax, as the FP8 scheme requantizes */
		for (int l = first; l < first + n; l++)
			if (wscale[l] != smax)
				QC_TRY(qk_fp8_qdq(m->kc, lw->w[l], (size_t)(lw->out[l] * lw->in[l]), smax));
	}
	return 0;
}

/*
 * Linear l of lw (w[l] FP32, dequantized from L) kept as 4-bit codes
 * instead, when that loses nothing: int4 weight-only with group or channel
 * scales L.scale [out, ng]. The codes are recovered from the dequantized
 * weights themselves: per group, k = W / s must be integers spanning at
 * most 16 values and (k + zz - zz) * s must give W back bit for bit, with
 * zz = 8 when it fits (then no zero points are stored), else the lowest
 * offset that fits. Anything else (act-order permutations, a zero scale)
 * leaves the FP32 weight: 0 is returned either way unless memory runs out.
 */
static int pack_q4(qc_model *m, qc_layer *lw, int l, const qc_ctq_linear *L)
{
	if (!L->quantized || L->args.bits != 4 || L->args.is_float ||
	    L->act.kind != QK_ACTQ_NONE || !L->scale || L->scale->ndim != 2 ||
	    qk_ctx_device(m->kc) != QK_DEVICE_CPU)
		return 0;
	int64_t out = lw->out[l], in = lw->in[l], ng = L->scale->shape[1];
	if (L->scale->shape[0] != out || ng <= 0 || in % ng || (in / ng) % 2)
		return 0;
	int64_t g = in / ng;
	float *W = malloc((size_t)(out * in) * sizeof *W), *s = malloc((size_t)(out * ng) * sizeof *s);
	float *z = malloc((size_t)(out * ng) * sizeof *z);
	uint8_t *q = malloc((size_t)(out * in / 2));
	int rc = 0, ok = W && s && z && q, sym = 1;
	if (!ok)
		rc = qc_seterr(QC_ENOMEM, "out of memory packing a Linear");
	if (ok && (rc = qk_download(m->kc, W, lw->w[l], (size_t)(out * in) * sizeof *W)))
		ok = 0;
	if (ok)
		qc_to_f32(s, L->scale->data, L->scale->dtype, (size_t)(out * ng));
	for (int64_t o = 0; ok && o < out; o++)
		for (int64_t k = 0; ok && k < ng; k++) {
			float sc = s[o * ng + k];
			const float *w = W + o * in + k * g;
			if (!(sc > 0) || !isfinite(sc)) {
				ok = 0;
				break;
			}
			float lo = INFINITY, hi = -INFINITY;
			for (int64_t i = 0; i < g; i++) {
				float c = nearbyintf(w[i] / sc);
				lo = fminf(lo, c);
				hi = fmaxf(hi, c);
			}
			float zz = lo >= -8 && hi <= 7 ? 8.0f : -lo;
			if (!(hi + zz <= 15 && lo + zz >= 0)) {
				ok = 0;
				break;
			}
			sym &= zz == 8.0f;
			z[o * ng + k] = zz;
			for (int64_t i = 0; i < g; i++) {
				float u = nearbyintf(w[i] / sc) + zz;
				if ((u - zz) * sc != w[i]) {
					ok = 0;
					break;
				}
				uint8_t *b = q + (o * in + k * g + i) / 2;
				*b = (uint8_t)(i % 2 ? (*b & 15) | ((int)u << 4) : (int)u);
			}
		}
	if (ok) {
		lw->q4[l] = qk_alloc(m->kc, (size_t)(out * in / 2));
		lw->q4s[l] = qk_alloc(m->kc, (size_t)(out * ng) * sizeof(float));
		lw->q4z[l] = sym ? NULL : qk_alloc(m->kc, (size_t)(out * ng) * sizeof(float));
		if (!lw->q4[l] || !lw->q4s[l] || (!sym && !lw->q4z[l]))
			rc = qc_seterr(QC_ENOMEM, "out of memory packing a Linear");
		if (!rc)
			rc = qk_upload(m->kc, lw->q4[l], q, (size_t)(out * in / 2));
		if (!rc)
			rc = qk_upload(m->kc, lw->q4s[l], s, (size_t)(out * ng) * sizeof *s);
		if (!rc && !sym)
			rc = qk_upload(m->kc, lw->q4z[l], z, (size_t)(out * ng) * sizeof *z);
		if (!rc) {
			lw->q4g[l] = g;
			wfree(m, lw->w[l], out * in);
			lw->w[l] = NULL;
		}
	}
	free(W);
	free(s);
	free(z);
	free(q);
	return rc;
}

static int load_layer(qc_model *m, int layer, qc_layer *lw, int packed);

int qc_model_load_layer(qc_model *m, int layer, qc_layer *lw)
{
	return load_layer(m, layer, lw, 0);
}

int qc_model_load_layer_packed(qc_model *m, int layer, qc_layer *lw)
{
	return load_layer(m, layer, lw, 1);
}

static int load_layer(qc_model *m, int layer, qc_layer *lw, int packed)
{
	memset(lw, 0, sizeof *lw);
	lw->index = layer;
	if (layer < 0 || layer >= m->cfg.num_hidden_layers)
		return qc_seterr(QC_EINVAL, "layer %d outside 0..%lld", layer,
		                 (long long)m->cfg.num_hidden_layers - 1);
	char name[256], module[200];
	int rc;
	float **norms[QC_NORM_COUNT] = { &lw->attn_norm, &lw->mlp_norm, &lw->attn_out_norm,
		                         &lw->mlp_out_norm };
	for (int k = 0; k < QC_NORM_COUNT; k++) {
		const char *path = qc_norm_path(&m->cfg, (qc_norm)k);
		if (!path)
			continue;
		snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, path);
		if ((rc = load_norm(m, name, norms[k])))
			goto fail;
	}
	lw->window = qc_config_layer_window(&m->cfg, layer);
	float wscale[QC_LIN_COUNT] = { 0 };
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		int64_t sh[2];
		qc_linear_shape(&m->cfg, (qc_linear)l, sh);
		lw->out[l] = sh[0];
		lw->in[l] = sh[1];
		snprintf(module, sizeof module, "model.layers.%d.%s", layer, qc_linear_path((qc_linear)l));
		qc_ctq_linear L;
		rc = qc_ctq_linear_get(&L, m->q, &m->src, module, lw->out[l], lw->in[l]);
		if (!rc && !(lw->w[l] = walloc(m, lw->out[l] * lw->in[l])))
			rc = qc_seterr(QC_ENOMEM, "out of memory loading '%s'", module);
		if (!rc)
			rc = qc_ctq_linear_rows(m->kc, &L, 0, lw->out[l], lw->w[l]);
		if (!rc) {
			lw->act[l] = L.act;
			lw->quantized[l] = L.quantized;
			if (L.quantized && L.args.is_float && L.args.strategy == QC_QS_TENSOR)
				qc_to_f32(&wscale[l], L.scale->data, L.scale->dtype, 1);
		}
		if (!rc) {
			char what[300];
			snprintf(what, sizeof what, "weight of '%s'%s", module,
			         lw->quantized[l] ? " (dequantized)" : "");
			rc = check_finite(m, lw->w[l], lw->out[l] * lw->in[l], what);
		}
		if (!rc && packed)
			rc = pack_q4(m, lw, l, &L);
		qc_ctq_linear_release(&L);
		if (rc)
			goto fail;
		int bias = qc_linear_has_bias(&m->cfg, (qc_linear)l);
		if (bias) {
			snprintf(name, sizeof name, "%s.bias", module);
			if ((rc = load_vector(m, name, lw->out[l], &lw->b[l])))
				goto fail;
		}
	}
	if (m->o.vllm_fused && ((rc = fuse_like_vllm(m, lw, QC_LIN_Q, 3, wscale)) ||
	                        (rc = fuse_like_vllm(m, lw, QC_LIN_GATE, 2, wscale)))) {
		rc = qc_errctx(rc, "layer %d", layer);
		goto fail;
	}
	return 0;
fail:
	qc_layer_release(m, lw);
	lw->index = layer;
	return rc;
}

/* ---------------------------------------------------------------- layer steps */

static int same_actq(const qk_actq *a, const qk_actq *b)
{
	return a->kind == b->kind && a->scale == b->scale && a->zero_point == b->zero_point;
}

/* y [T, out] (+)= x [T, in] W^T (+ bias) for Linear l: packed int4 codes
 * when the layer keeps them, else the FP32 weight */
static int lin_apply(qc_model *m, const qc_layer *lw, int l, float *y, const float *x, int64_t T,
                     int accumulate)
{
	if (lw->q4[l])
		return qk_linear_q4(m->kc, y, x, lw->q4[l], lw->q4s[l], lw->q4z[l], lw->b[l], T,
		                    lw->in[l], lw->out[l], lw->q4g[l], accumulate);
	return qk_linear(m->kc, y, x, lw->w[l], lw->b[l], T, lw->in[l], lw->out[l], accumulate);
}

/* the input a Linear reads: x itself, or its fake-quantized copy in buf
 * (made once for Linears that share the same quantization: *have says
 * which one buf holds) */
static int lin_input(qc_model *m, const qk_actq *q, const float *x, int64_t T, int64_t D,
                     float *buf, const qk_actq **have, const float **in)
{
	*in = x;
	if (q->kind == QK_ACTQ_NONE)
		return 0;
	if (!*have || !same_actq(*have, q)) {
		QC_TRY(qk_copy(m->kc, buf, x, (size_t)(T * D) * sizeof *buf));
		QC_TRY(qk_actq_apply(m->kc, buf, T, D, q));
		*have = q;
	}
	*in = buf;
	return 0;
}

static int64_t sum_lens(const int64_t *lens, int64_t nseq)
{
	int64_t T = 0;
	for (int64_t i = 0; i < nseq; i++)
		T += lens[i];
	return T;
}

int qc_layer_attn_norm(qc_model *m, const qc_layer *lw, const float *x, float *h, int64_t T)
{
	return qk_rmsnorm(m->kc, h, x, lw->attn_norm, T, m->H, m->eps);
}

int qc_layer_mlp_norm(qc_model *m, const qc_layer *lw, const float *x, float *h, int64_t T)
{
	return qk_rmsnorm(m->kc, h, x, lw->mlp_norm, T, m->H, m->eps);
}

/*
 * Attention of the packed sequences of h (kv NULL), or of T = lens[0] new
 * tokens of one sequence continuing the kv->past cached ones: their keys
 * and values are written straight into the cache rows past .. past + T - 1
 * (after RoPE at those positions) and the queries attend over the whole
 * cache. One code path for both, so decoding cannot drift from the forward
 * pass.
 */
static int attention(qc_model *m, const qc_layer *lw, const float *h, float *a,
                     const int64_t *lens, int64_t nseq, qc_kv *kv)
{
	int64_t T = sum_lens(lens, nseq);
	if (T == 0)
		return 0;
	if (kv && (nseq != 1 || kv->past + T > kv->cap))
		return qc_seterr(QC_EINVAL, "%lld tokens after %lld do not fit in a KV cache of %lld",
		                 (long long)T, (long long)kv->past, (long long)kv->cap);
	QC_TRY(ensure_scratch(m, T));
	qk_ctx *kc = m->kc;
	/* q [T, qd]; k, v [T, kvd] in scratch or in the cache's next rows */
	float *ck = kv ? kv->k + kv->past * m->kvd : m->s_k, *cv = kv ? kv->v + kv->past * m->kvd : m->s_v;
	float *dst[3] = { m->s_q, ck, cv };
	const qk_actq *have = NULL;
	for (int l = QC_LIN_Q; l <= QC_LIN_V; l++) {
		const float *in;
		QC_TRY(lin_input(m, &lw->act[l], h, T, m->H, m->s_t, &have, &in));
		QC_TRY(lin_apply(m, lw, l, dst[l], in, T, 0));
	}
	/* soft-capping and this layer's window (Gemma 2, Mistral): qk_attention_ex;
	 * the plain operations otherwise */
	qk_attn ax = { m->att_scale, (float)m->cfg.attn_softcap, lw->window };
	int ex = ax.softcap > 0 || ax.window > 0;
	if (kv) {
		QC_TRY(qk_rope_apply(kc, m->s_q, T, m->nh, m->hd, kv->past, m->inv_freq));
		QC_TRY(qk_rope_apply(kc, ck, T, m->nkv, m->hd, kv->past, m->inv_freq));
		if (ex)
			QC_TRY(qk_attention_ex(kc, a, m->s_q, kv->k, kv->v, T, kv->past, m->nh, m->nkv, m->hd,
			                       &ax));
		else
			QC_TRY(qk_attention_kv(kc, a, m->s_q, kv->k, kv->v, T, kv->past, m->nh, m->nkv, m->hd,
			                       m->att_scale));
		kv->past += T;
		return 0;
	}
	int64_t off = 0;
	for (int64_t s = 0; s < nseq; s++) {
		int64_t n = lens[s];
		float *qs = m->s_q + off * m->qd, *ks = m->s_k + off * m->kvd, *vs = m->s_v + off * m->kvd;
		QC_TRY(qk_rope_apply(kc, qs, n, m->nh, m->hd, 0, m->inv_freq));
		QC_TRY(qk_rope_apply(kc, ks, n, m->nkv, m->hd, 0, m->inv_freq));
		if (ex)
			QC_TRY(qk_attention_ex(kc, a + off * m->qd, qs, ks, vs, n, 0, m->nh, m->nkv, m->hd, &ax));
		else
			QC_TRY(qk_attention(kc, a + off * m->qd, qs, ks, vs, n, m->nh, m->nkv, m->hd,
			                    m->att_scale));
		off += n;
	}
	return 0;
}

int qc_layer_attention(qc_model *m, const qc_layer *lw, const float *h, float *a,
                       const int64_t *lens, int64_t nseq)
{
	return attention(m, lw, h, a, lens, nseq, NULL);
}

int qc_layer_o_proj(qc_model *m, const qc_layer *lw, const float *a, float *x, int64_t T)
{
	if (T == 0)
		return 0;
	QC_TRY(ensure_scratch(m, T));
	const qk_actq *have = NULL;
	const float *in;
	QC_TRY(lin_input(m, &lw->act[QC_LIN_O], a, T, m->qd, m->s_t, &have, &in));
	if (!lw->attn_out_norm)
		return lin_apply(m, lw, QC_LIN_O, x, in, T, 1);
	/* Gemma 2: x += RMSNorm(a Wo^T; post_attention_layernorm) */
	QC_TRY(lin_apply(m, lw, QC_LIN_O, m->s_o, in, T, 0));
	QC_TRY(qk_rmsnorm(m->kc, m->s_o, m->s_o, lw->attn_out_norm, T, m->H, m->eps));
	return qk_add(m->kc, x, x, m->s_o, (size_t)(T * m->H));
}

/* x[rows, H] += down(act), act [rows, I] the down_proj input, quantized in
 * place first: it is not needed after (Gemma 2: x += RMSNorm(down(act);
 * post_feedforward_layernorm)) */
static int down_block(qc_model *m, const qc_layer *lw, float *act, float *x, int64_t rows)
{
	QC_TRY(qk_actq_apply(m->kc, act, rows, m->I, &lw->act[QC_LIN_DOWN]));
	if (!lw->mlp_out_norm)
		return lin_apply(m, lw, QC_LIN_DOWN, x, act, rows, 1);
	QC_TRY(ensure_mlp(m));
	QC_TRY(lin_apply(m, lw, QC_LIN_DOWN, m->m_o, act, rows, 0));
	QC_TRY(qk_rmsnorm(m->kc, m->m_o, m->m_o, lw->mlp_out_norm, rows, m->H, m->eps));
	return qk_add(m->kc, x, x, m->m_o, (size_t)(rows * m->H));
}

int qc_model_glu(qc_model *m, float *out, const float *gate, const float *up, size_t n)
{
	if (strcmp(m->cfg.hidden_act, "gelu_pytorch_tanh") == 0)
		return qk_geglu(m->kc, out, gate, up, n);
	return qk_swiglu(m->kc, out, gate, up, n);
}

int qc_layer_mlp(qc_model *m, const qc_layer *lw, const float *h, float *x, int64_t T,
                 qc_mlp_observe observe, void *ctx)
{
	QC_TRY(ensure_mlp(m));
	for (int64_t r0 = 0; r0 < T; r0 += m->o.mlp_rows) {
		int64_t rows = T - r0 < m->o.mlp_rows ? T - r0 : m->o.mlp_rows;
		const float *hr = h + r0 * m->H;
		const qk_actq *have = NULL;
		const float *in;
		/* g, u [rows, I] */
		QC_TRY(lin_input(m, &lw->act[QC_LIN_GATE], hr, rows, m->H, m->m_x, &have, &in));
		QC_TRY(lin_apply(m, lw, QC_LIN_GATE, m->m_g, in, rows, 0));
		QC_TRY(lin_input(m, &lw->act[QC_LIN_UP], hr, rows, m->H, m->m_x, &have, &in));
		QC_TRY(lin_apply(m, lw, QC_LIN_UP, m->m_u, in, rows, 0));
		QC_TRY(qc_model_glu(m, m->m_g, m->m_g, m->m_u, (size_t)(rows * m->I)));
		if (observe)
			QC_TRY(observe(ctx, m->m_g, r0, rows, m->I));
		if (x)
			QC_TRY(down_block(m, lw, m->m_g, x + r0 * m->H, rows));
	}
	return 0;
}

int qc_layer_down(qc_model *m, const qc_layer *lw, float *act, float *x, int64_t T)
{
	for (int64_t r0 = 0; r0 < T; r0 += m->o.mlp_rows) {
		int64_t rows = T - r0 < m->o.mlp_rows ? T - r0 : m->o.mlp_rows;
		QC_TRY(down_block(m, lw, act + r0 * m->I, x + r0 * m->H, rows));
	}
	return 0;
}

static int layer_forward(qc_model *m, const qc_layer *lw, float *x, const int64_t *lens,
                         int64_t nseq, qc_kv *kv)
{
	int64_t T = sum_lens(lens, nseq);
	if (T == 0)
		return 0;
	QC_TRY(ensure_scratch(m, T));
	/* s_h and s_a are this function's; the steps use the other buffers */
	QC_TRY(qc_layer_attn_norm(m, lw, x, m->s_h, T));
	QC_TRY(attention(m, lw, m->s_h, m->s_a, lens, nseq, kv));
	QC_TRY(qc_layer_o_proj(m, lw, m->s_a, x, T));
	QC_TRY(qc_layer_mlp_norm(m, lw, x, m->s_h, T));
	return qc_layer_mlp(m, lw, m->s_h, x, T, NULL, NULL);
}

int qc_layer_forward(qc_model *m, const qc_layer *lw, float *x, const int64_t *lens, int64_t nseq)
{
	return layer_forward(m, lw, x, lens, nseq, NULL);
}

int qc_layer_forward_kv(qc_model *m, const qc_layer *lw, float *x, int64_t T, qc_kv *kv)
{
	if (T < 0)
		return qc_seterr(QC_EINVAL, "negative token count");
	return layer_forward(m, lw, x, &T, 1, kv);
}

/* ---------------------------------------------------------------- embedding, head */

static int get_embed(qc_model *m)
{
	if (m->have_embed)
		return 0;
	int rc = qc_ctq_linear_get(&m->embed, NULL, &m->src, "model.embed_tokens", m->V, m->H);
	if (rc) {
		qc_ctq_linear_release(&m->embed);
		return rc;
	}
	m->have_embed = 1;
	return 0;
}

void qc_model_drop_embed(qc_model *m)
{
	if (m->have_embed && !m->cfg.tie_word_embeddings) {
		qc_ctq_linear_release(&m->embed);
		m->have_embed = 0;
	}
}

int qc_model_embed(qc_model *m, const int32_t *ids, int64_t n, float *x)
{
	QC_TRY(get_embed(m));
	for (int64_t i = 0; i < n; i++) {
		if (ids[i] < 0 || ids[i] >= m->V)
			return qc_seterr(QC_EFORMAT, "token id %d at position %lld is outside the vocabulary "
			                 "of %lld", (int)ids[i], (long long)i, (long long)m->V);
		QC_TRY(qc_ctq_linear_rows(m->kc, &m->embed, ids[i], ids[i] + 1, x + i * m->H));
	}
	QC_TRY(check_finite(m, x, n * m->H, "tensor 'model.embed_tokens.weight'"));
	if (m->embed_mult && n > 0)
		QC_TRY(qk_scale_cols(m->kc, x, n, m->H, m->embed_mult, 0));
	return 0;
}

static int get_head(qc_model *m)
{
	if (m->have_head)
		return 0;
	int rc;
	if ((rc = load_norm(m, "model.norm.weight", &m->final_norm)))
		return rc;
	if (m->cfg.tie_word_embeddings) {
		/* tied: the lm_head is the embedding matrix */
		QC_TRY(get_embed(m));
		m->have_head = 1;
		return 0;
	}
	rc = qc_ctq_linear_get(&m->head, m->q, &m->src, "lm_head", m->V, m->H);
	if (rc) {
		qc_ctq_linear_release(&m->head);
		return rc;
	}
	m->have_head = 1;
	return 0;
}

static const qc_ctq_linear *head_of(const qc_model *m)
{
	return m->cfg.tie_word_embeddings ? &m->embed : &m->head;
}

int qc_model_head_input(qc_model *m, const float *x, int64_t T, float *h)
{
	QC_TRY(get_head(m));
	QC_TRY(qk_rmsnorm(m->kc, h, x, m->final_norm, T, m->H, m->eps));
	return qk_actq_apply(m->kc, h, T, m->H, &head_of(m)->act);
}

int qc_model_head_rows(qc_model *m, int64_t v0, int64_t v1, float *buf, const float **rows)
{
	QC_TRY(get_head(m));
	const qc_ctq_linear *W = head_of(m);
	if (v0 < 0 || v1 > m->V || v0 > v1)
		return qc_seterr(QC_EINVAL, "lm_head rows [%lld, %lld) outside the vocabulary",
		                 (long long)v0, (long long)v1);
	/* the stored rows (host memory, FP32 or not) become device rows in buf,
	 * scanned for NaN/Inf block by block */
	QC_TRY(qc_ctq_linear_rows(m->kc, W, v0, v1, buf));
	*rows = buf;
	return check_finite(m, *rows, (v1 - v0) * m->H, "lm_head weight");
}

/* Gemma 2's final soft-capping, logits = cap * tanh(logits / cap), on n
 * columns of T rows (row stride ld); nothing without a cap. Every path to
 * logits ends here. */
static int final_softcap(qc_model *m, float *logits, int64_t T, int64_t n, int64_t ld)
{
	if (!(m->cfg.final_softcap > 0))
		return 0;
	float cap = (float)m->cfg.final_softcap;
	if (ld == n)
		return qk_softcap(m->kc, logits, (size_t)(T * n), cap);
	for (int64_t t = 0; t < T; t++)
		QC_TRY(qk_softcap(m->kc, logits + t * ld, (size_t)n, cap));
	return 0;
}

int qc_model_logits(qc_model *m, const float *x, int64_t T, float *logits)
{
	if (T == 0)
		return 0;
	QC_TRY(ensure_scratch(m, T));
	float *h = m->s_h;
	QC_TRY(qc_model_head_input(m, x, T, h));
	const qc_ctq_linear *W = head_of(m);
	if (T <= HEAD_DIRECT_ROWS && !W->quantized && W->weight->dtype == QC_DT_BF16 &&
	    qk_ctx_device(m->kc) == QK_DEVICE_CPU) {
		/* a decoding step: the stored BF16 rows [V, H] straight into the
		 * product, read once (converting them to FP32 block by block
		 * would write and read them again at twice the size) */
		if (!m->head_bf16_checked) {
			QC_TRY(check_finite_bf16(W->weight->data, m->V * m->H, "lm_head weight"));
			m->head_bf16_checked = 1;
		}
		QC_TRY(qk_linear_bf16(m->kc, logits, h, W->weight->data, NULL, T, m->H, m->V, 0));
		return final_softcap(m, logits, T, m->V, m->V);
	}
	if (!m->head_w && !(m->head_w = dalloc(m, m->o.head_rows * m->H)))
		return qc_seterr(QC_ENOMEM, "cannot allocate lm_head rows");
	for (int64_t v0 = 0; v0 < m->V; v0 += m->o.head_rows) {
		int64_t v1 = v0 + m->o.head_rows < m->V ? v0 + m->o.head_rows : m->V;
		QC_TRY(qc_model_head_logits(m, h, T, v0, v1, m->head_w, logits + v0, m->V));
	}
	return 0;
}

int qc_model_head_logits(qc_model *m, const float *h, int64_t T, int64_t v0, int64_t v1,
                         float *buf, float *logits, int64_t ld)
{
	const float *w;
	QC_TRY(qc_model_head_rows(m, v0, v1, buf, &w));
	/* logits[:, 0 : v1 - v0] = h W[v0:v1]^T */
	QC_TRY(qk_gemm(m->kc, 0, 1, T, v1 - v0, m->H, 1.0f, h, m->H, w, m->H, 0.0f, logits, ld));
	return final_softcap(m, logits, T, v1 - v0, ld);
}

/* ---------------------------------------------------------------- whole model */

int qc_model_forward(qc_model *m, const int32_t *ids, const int64_t *lens, int64_t nseq,
                     float *out, qc_out_kind kind)
{
	int64_t T = sum_lens(lens, nseq);
	for (int64_t s = 0; s < nseq; s++)
		if (lens[s] < 0)
			return qc_seterr(QC_EINVAL, "sequence %lld has negative length", (long long)s);
	if (T == 0)
		return 0;
	float *x = dalloc(m, T * m->H);
	if (!x)
		return qc_seterr(QC_ENOMEM, "cannot allocate activations for %lld tokens", (long long)T);
	int rc = qc_model_embed(m, ids, T, x);
	qc_model_drop_embed(m);
	for (int l = 0; !rc && l < m->cfg.num_hidden_layers; l++) {
		qc_layer lw;
		if ((rc = qc_model_load_layer(m, l, &lw)))
			break;
		/* chunks of whole sequences, about chunk_tokens each */
		int64_t s0 = 0, off = 0;
		while (!rc && s0 < nseq) {
			int64_t s1 = s0, n = 0;
			while (s1 < nseq && (s1 == s0 || n + lens[s1] <= m->o.chunk_tokens))
				n += lens[s1++];
			rc = qc_layer_forward(m, &lw, x + off * m->H, lens + s0, s1 - s0);
			off += n;
			s0 = s1;
		}
		qc_layer_release(m, &lw);
	}
	for (int64_t r0 = 0; !rc && r0 < T; r0 += m->o.chunk_tokens) {
		int64_t r = T - r0 < m->o.chunk_tokens ? T - r0 : m->o.chunk_tokens;
		rc = qc_model_logits(m, x + r0 * m->H, r, out + r0 * m->V);
		if (!rc && kind == QC_OUT_LOGPROBS)
			rc = qk_log_softmax(m->kc, out + r0 * m->V, out + r0 * m->V, r, m->V);
	}
	qk_free(m->kc, x);
	return rc;
}

/* ---------------------------------------------------------------- checkpoints */

static int ck_get(void *ctx, const char *name, const qc_tensor **t)
{
	return qc_ckpt_get(ctx, name, t);
}

static void ck_release(void *ctx, const char *name)
{
	qc_ckpt_release(ctx, name);
}

void qc_wsrc_ckpt(qc_wsrc *src, qc_ckpt *ck)
{
	*src = (qc_wsrc){ ck, ck_get, ck_release };
}

int qc_model_open(qc_model **out, qc_ckpt *ck, qk_ctx *kc, const qc_model_opts *opts)
{
	*out = NULL;
	const void *data;
	size_t len;
	int rc = qc_ckpt_file(ck, "config.json", &data, &len);
	if (rc == QC_ENOTFOUND)
		return qc_seterr(QC_EFORMAT, "checkpoint '%s' has no config.json", qc_ckpt_name(ck));
	if (rc)
		return rc;
	char name[4200];
	snprintf(name, sizeof name, "%s/config.json", qc_ckpt_name(ck));
	qc_config cfg;
	QC_TRY(qc_config_parse(&cfg, data, len, name));
	/* GPTQ and AWQ artifacts are read through a view that unpacks each
	 * Linear into the naive-quantized layout the runtime reads (qc_pack.h) */
	qc_wsrc src;
	qc_wsrc_ckpt(&src, ck);
	qc_pack_view *view = NULL;
	if ((rc = qc_pack_view_open(&view, cfg.raw, &src))) {
		qc_config_free(&cfg);
		return qc_errctx(rc, "reading '%s'", name);
	}
	qc_ctq *q = NULL;
	if ((rc = qc_ctq_from_config(&q, view ? qc_pack_view_config(view) : cfg.raw))) {
		qc_pack_view_free(view);
		qc_config_free(&cfg);
		return qc_errctx(rc, "reading '%s'", name);
	}
	if ((rc = qc_model_new(out, &cfg, view ? qc_pack_view_wsrc(view) : &src, q, kc, opts))) {
		qc_ctq_free(q);
		qc_pack_view_free(view);
		qc_config_free(&cfg);
		return rc;
	}
	(*out)->cfg.raw = cfg.raw;
	(*out)->own_cfg = 1;
	(*out)->own_q = q;
	(*out)->own_view = view;
	return 0;
}
