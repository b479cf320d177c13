/* tmodel.c - in-memory test models and the double-precision reference
 * forward pass (see tmodel.h). */
#include "tmodel.h"

#include "tutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_rng.h"

static const char *const paths[7] = {
	"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
	"mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

void tm_config(qc_config *c, int64_t hidden, int64_t inter, int64_t layers, int64_t heads,
               int64_t kv_heads, int64_t head_dim, int64_t vocab, int tied)
{
	memset(c, 0, sizeof *c);
	snprintf(c->architecture, sizeof c->architecture, "LlamaForCausalLM");
	snprintf(c->model_type, sizeof c->model_type, "llama");
	snprintf(c->hidden_act, sizeof c->hidden_act, "silu");
	c->hidden_size = hidden;
	c->intermediate_size = inter;
	c->num_hidden_layers = layers;
	c->num_attention_heads = heads;
	c->num_key_value_heads = kv_heads;
	c->head_dim = head_dim;
	c->vocab_size = vocab;
	c->max_position_embeddings = 4096;
	c->rms_norm_eps = 1e-5;
	c->rope_theta = 10000.0;
	c->rope_type = QC_ROPE_DEFAULT;
	c->tie_word_embeddings = tied;
	c->torch_dtype = QC_DT_F32;
	c->bos_token_id = -1;
}

void tm_config_gemma(qc_config *c, int v2, double qpas, int64_t window)
{
	snprintf(c->architecture, sizeof c->architecture, v2 ? "Gemma2ForCausalLM" : "GemmaForCausalLM");
	snprintf(c->model_type, sizeof c->model_type, v2 ? "gemma2" : "gemma");
	snprintf(c->hidden_act, sizeof c->hidden_act, "gelu_pytorch_tanh");
	c->family = v2 ? QC_FAMILY_GEMMA2 : QC_FAMILY_GEMMA;
	c->norm_offset = 1;
	c->embed_scale = 1;
	c->rms_norm_eps = 1e-6;
	if (v2) {
		c->sandwich_norms = 1;
		c->query_pre_attn_scalar = qpas;
		c->attn_softcap = 50;
		c->final_softcap = 30;
		c->sliding_window = window;
		c->sliding_layers = window > 0 ? QC_SLIDE_EVEN : QC_SLIDE_NONE;
	}
}

/* ---------------------------------------------------------------- the table */

static int src_get(void *ctx, const char *name, const qc_tensor **t)
{
	tm_model *m = ctx;
	*t = tm_find(m, name);
	if (!*t)
		return qc_seterr(QC_ENOTFOUND, "no tensor '%s'", name);
	m->gets++;
	return 0;
}

static void src_release(void *ctx, const char *name)
{
	tm_model *m = ctx;
	if (tm_find(m, name))
		m->releases++;
}

const qc_tensor *tm_find(const tm_model *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->t[i].name, name) == 0)
			return &m->t[i];
	return NULL;
}

void tm_remove(tm_model *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->t[i].name, name) == 0) {
			free((void *)m->t[i].name);
			free((void *)m->t[i].data);
			m->t[i] = m->t[--m->n];
			return;
		}
}

void tm_put(tm_model *m, const char *name, qc_dtype dt, int ndim, const int64_t *shape,
            const void *data)
{
	tm_remove(m, name);
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->t = realloc(m->t, m->cap * sizeof *m->t);
		assert_non_null(m->t);
	}
	qc_tensor *t = &m->t[m->n++];
	memset(t, 0, sizeof *t);
	t->name = strdup(name);
	t->dtype = dt;
	t->ndim = ndim;
	memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
	t->nbytes = (size_t)qc_nbytes(dt, qc_numel(ndim, shape));
	void *d = malloc(t->nbytes ? t->nbytes : 1);
	assert_non_null(d);
	memcpy(d, data, t->nbytes);
	t->data = d;
}

/* ---------------------------------------------------------------- values */

static uint16_t to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u += 0x7fff + ((u >> 16) & 1);   /* round to nearest even (finite inputs) */
	return (uint16_t)(u >> 16);
}

static double from_half(uint16_t h)
{
	int e = (h >> 10) & 31, f = h & 1023;
	double v = e ? ldexp(1024 + f, e - 25) : ldexp(f, -24);
	return h & 0x8000 ? -v : v;
}

double *tm_values(const qc_tensor *t)
{
	int64_t n = qc_numel(t->ndim, t->shape);
	double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
	assert_non_null(v);
	for (int64_t i = 0; i < n; i++) {
		if (t->dtype == QC_DT_F32) {
			float f;
			memcpy(&f, (const char *)t->data + 4 * i, 4);
			v[i] = f;
		} else if (t->dtype == QC_DT_BF16) {
			uint16_t h;
			memcpy(&h, (const char *)t->data + 2 * i, 2);
			uint32_t u = (uint32_t)h << 16;
			float f;
			memcpy(&f, &u, 4);
			v[i] = f;
		} else if (t->dtype == QC_DT_F16) {
			uint16_t h;
			memcpy(&h, (const char *)t->data + 2 * i, 2);
			v[i] = from_half(h);
		} else {
			fail_msg("tm_values: dtype %s", qc_dtype_name(t->dtype));
		}
	}
	return v;
}

static void put_random(tm_model *m, qc_rng *r, const char *name, qc_dtype dt, int ndim,
                       const int64_t *shape, double mean, double sd)
{
	int64_t n = qc_numel(ndim, shape);
	void *d = malloc((size_t)n * 4);
	assert_non_null(d);
	for (int64_t i = 0; i < n; i++) {
		float f = (float)(mean + sd * qc_rng_normal(r));
		if (dt == QC_DT_F32) {
			((float *)d)[i] = f;
		} else if (dt == QC_DT_BF16) {
			((uint16_t *)d)[i] = to_bf16(f);
		} else {
			/* F16 by rounding through a double search of the nearest half;
			 * values here are well inside the normal range */
			int e;
			double fr = frexp(f, &e);              /* f = fr * 2^e, 0.5 <= |fr| < 1 */
			double mant = nearbyint(fabs(fr) * 2048.0);   /* 11 significant bits */
			uint16_t h;
			if (fabsf(f) < 0x1p-14f) {
				/* subnormal: multiples of 2^-24 */
				h = (uint16_t)nearbyint(fabs(f) * 0x1p24);
				if (f < 0)
					h |= 0x8000;
			} else {
				if (mant == 2048.0) {
					mant = 1024.0;
					e++;
				}
				h = (uint16_t)(((e + 14) << 10) | ((int)mant - 1024));
				if (f < 0)
					h |= 0x8000;
			}
			((uint16_t *)d)[i] = h;
		}
	}
	tm_put(m, name, dt, ndim, shape, d);
	free(d);
}

void tm_make(tm_model *m, const qc_config *c, qc_dtype dt, uint64_t seed)
{
	memset(m, 0, sizeof *m);
	m->cfg = *c;
	m->src = (qc_wsrc){ m, src_get, src_release };
	qc_rng r;
	qc_rng_seed(&r, seed);
	int64_t H = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
	int64_t qd = c->num_attention_heads * c->head_dim, kvd = c->num_key_value_heads * c->head_dim;
	int64_t sh[2] = { V, H };
	/* logits (tied or not) spread with a standard deviation of a few units,
	 * as in trained models */
	put_random(m, &r, "model.embed_tokens.weight", dt, 2, sh, 0, 2.5 / sqrt((double)H));
	char name[256];
	/* norms apply (offset + w): gains near 1 stored less the offset;
	 * Gemma 2's output norms gains near 0.3 */
	double off = c->norm_offset;
	for (int l = 0; l < c->num_hidden_layers; l++) {
		snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
		put_random(m, &r, name, dt, 1, &H, 1 - off, 0.1);
		snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
		put_random(m, &r, name, dt, 1, &H, (c->sandwich_norms ? 0.3 : 1) - off, 0.1);
		if (c->sandwich_norms) {
			snprintf(name, sizeof name, "model.layers.%d.pre_feedforward_layernorm.weight", l);
			put_random(m, &r, name, dt, 1, &H, 1 - off, 0.1);
			snprintf(name, sizeof name, "model.layers.%d.post_feedforward_layernorm.weight", l);
			put_random(m, &r, name, dt, 1, &H, 0.3 - off, 0.03);
		}
		int64_t shapes[7][2] = { { qd, H }, { kvd, H }, { kvd, H }, { H, qd },
		                         { I, H },  { I, H },   { H, I } };
		for (int k = 0; k < 7; k++) {
			snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, paths[k]);
			put_random(m, &r, name, dt, 2, shapes[k], 0, 1 / sqrt((double)shapes[k][1]));
			if (qc_linear_has_bias(c, (qc_linear)k)) {
				snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, paths[k]);
				put_random(m, &r, name, dt, 1, shapes[k], 0, 0.1);
			}
		}
	}
	put_random(m, &r, "model.norm.weight", dt, 1, &H, 1 - off, 0.1);
	if (!c->tie_word_embeddings)
		put_random(m, &r, "lm_head.weight", dt, 2, sh, 0, 2.5 / sqrt((double)H));
}

void tm_free(tm_model *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free((void *)m->t[i].name);
		free((void *)m->t[i].data);
	}
	free(m->t);
	memset(m, 0, sizeof *m);
}

double tm_relerr(const float *a, const double *b, size_t n)
{
	double mx = 0, d = 0;
	for (size_t i = 0; i < n; i++) {
		mx = fmax(mx, fabs(b[i]));
		d = fmax(d, fabs(a[i] - b[i]));
	}
	return mx > 0 ? d / mx : d;
}

/* ---------------------------------------------------------------- reference */

static double *get(const tm_model *m, const char *name)
{
	const qc_tensor *t = tm_find(m, name);
	if (!t)
		fail_msg("reference: no tensor '%s'", name);
	return tm_values(t);
}

/* LlamaRMSNorm: w * x / rms(x); GemmaRMSNorm: (1 + w) * x / rms(x)
 * (off = config's norm_offset) */
static void rmsnorm_off(double *y, const double *x, const double *w, double off, int64_t T,
                        int64_t D, double eps)
{
	for (int64_t t = 0; t < T; t++) {
		double s = 0;
		for (int64_t i = 0; i < D; i++)
			s += x[t * D + i] * x[t * D + i];
		double r = 1 / sqrt(s / D + eps);
		for (int64_t i = 0; i < D; i++)
			y[t * D + i] = (off + w[i]) * x[t * D + i] * r;
	}
}


/* y[T, out] (+)= x[T, in] W[out, in]^T + b */
static void linear(double *y, const double *x, const double *W, const double *b, int64_t T,
                   int64_t in, int64_t out, int acc)
{
	for (int64_t t = 0; t < T; t++)
		for (int64_t o = 0; o < out; o++) {
			double s = b ? b[o] : 0;
			for (int64_t i = 0; i < in; i++)
				s += x[t * in + i] * W[o * in + i];
			y[t * out + o] = acc ? y[t * out + o] + s : s;
		}
}

/* x[T, out] += a W^T + b, or with an output norm n (Gemma 2's
 * post_attention_layernorm / post_feedforward_layernorm)
 * x += RMSNorm(a W^T + b; n); tmp [T, out] scratch */
static void residual_add(double *x, double *tmp, const double *a, const double *W, const double *b,
                         const double *n, double noff, int64_t T, int64_t in, int64_t out,
                         double eps)
{
	if (!n) {
		linear(x, a, W, b, T, in, out, 1);
		return;
	}
	linear(tmp, a, W, b, T, in, out, 0);
	rmsnorm_off(tmp, tmp, n, noff, T, out, eps);
	for (int64_t i = 0; i < T * out; i++)
		x[i] += tmp[i];
}

/* nearest even of v; values here are small integers plus fractions */
static float rne(float v)
{
	float f = floorf(v), d = v - f;
	if (d > 0.5f || (d == 0.5f && fmodf(f, 2.0f) != 0))
		f += 1;
	return f;
}

/* E4M3 nearest-even rounding of a float in [-448, 448], found by search
 * over the 127 non-negative finite codes' values */
static float e4m3_round(float v)
{
	float a = fabsf(v), best = 0, bd = INFINITY;
	int bm = 0;
	for (int c = 0; c < 127; c++) {
		int e = c >> 3, mt = c & 7;
		float val = e ? ldexpf(1.0f + mt / 8.0f, e - 7) : ldexpf(mt / 8.0f, -6);
		float d = fabsf(val - a);
		if (d < bd || (d == bd && (mt & 1) == 0 && (bm & 1))) {
			bd = d;
			best = val;
			bm = mt;
		}
	}
	return v < 0 ? -best : best;
}

/* the activation quantization spec of kernels.h, re-derived from vLLM's
 * kernels: float arithmetic where they use float */
static void fake_quant(double *x, int64_t T, int64_t D, const tm_actq *q)
{
	if (!q || q->kind == 0)
		return;
	for (int64_t t = 0; t < T; t++) {
		double *r = x + t * D;
		float amax = 0;
		for (int64_t i = 0; i < D; i++)
			amax = fmaxf(amax, fabsf((float)r[i]));
		for (int64_t i = 0; i < D; i++) {
			float v = (float)r[i], out;
			switch (q->kind) {
			case 1: {   /* int8 token */
				float k = amax == 0 ? 0 : rne(v * (127.0f / amax));
				k = fminf(127, fmaxf(-128, k));
				out = k * (amax / 127.0f);
				break;
			}
			case 2: {   /* fp8 token */
				float s = fmaxf(amax / 448.0f, 1.0f / (448.0f * 512.0f));
				out = e4m3_round(fminf(448, fmaxf(-448, v / s))) * s;
				break;
			}
			case 3: {   /* int8 tensor, zero point */
				float k = rne(v / q->scale) + (float)q->zp;
				k = fminf(127, fmaxf(-128, k));
				out = (k - (float)q->zp) * q->scale;
				break;
			}
			default: {  /* fp8 tensor */
				out = e4m3_round(fminf(448, fmaxf(-448, v * (1.0f / q->scale)))) * q->scale;
				break;
			}
			}
			r[i] = out;
		}
	}
}

static void ref_inv_freq(const qc_config *c, double *f)
{
	int64_t d = c->head_dim;
	for (int64_t i = 0; i < d / 2; i++) {
		double base = 1.0 / pow(c->rope_theta, 2.0 * i / d);
		if (c->rope_type == QC_ROPE_LINEAR) {
			base /= c->rope_factor;
		} else if (c->rope_type == QC_ROPE_LLAMA3) {
			/* transformers _compute_llama3_parameters, restated */
			double wl = 2 * M_PI / base, orig = (double)c->rope_original_max_position_embeddings;
			double lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor, fac = c->rope_factor;
			if (wl < orig / hi) {
				/* high frequency: unchanged */
			} else if (wl > orig / lo) {
				base /= fac;
			} else {
				double sm = (orig / wl - lo) / (hi - lo);
				base = (1 - sm) * base / fac + sm * base;
			}
		}
		f[i] = base;
	}
}

void tm_ref_logits(const tm_model *m, const int32_t *ids, const int64_t *lens, int64_t nseq,
                   const tm_actq *act, tm_weight_fn wdeq, void *wctx, double *logits)
{
	const qc_config *c = &m->cfg;
	int64_t H = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, hd = c->head_dim;
	int64_t nh = c->num_attention_heads, nkv = c->num_key_value_heads;
	int64_t qd = nh * hd, kvd = nkv * hd, T = 0;
	for (int64_t s = 0; s < nseq; s++)
		T += lens[s];
	double *x = calloc((size_t)(T * H), 8), *h = calloc((size_t)(T * H), 8);
	double *q = calloc((size_t)(T * qd), 8), *k = calloc((size_t)(T * kvd), 8);
	double *v = calloc((size_t)(T * kvd), 8), *a = calloc((size_t)(T * qd), 8);
	double *g = calloc((size_t)(T * I), 8), *u = calloc((size_t)(T * I), 8);
	double *hq = calloc((size_t)(T * (H > I ? (H > qd ? H : qd) : (I > qd ? I : qd))), 8);
	double *inv = calloc((size_t)hd, 8), *sc = calloc((size_t)T, 8);
	ref_inv_freq(c, inv);
	double *E = get(m, "model.embed_tokens.weight");
	for (int64_t t = 0; t < T; t++)
		memcpy(x + t * H, E + (int64_t)ids[t] * H, sizeof(double) * (size_t)H);
	/* Gemma: hidden * torch.tensor(hidden_size ** 0.5, dtype=hidden.dtype) */
	if (c->embed_scale) {
		double mult = sqrt((double)H);
		if (c->torch_dtype == QC_DT_BF16) {
			uint32_t bits = (uint32_t)to_bf16((float)mult) << 16;
			float f;
			memcpy(&f, &bits, 4);
			mult = f;
		} else if (c->torch_dtype == QC_DT_F32) {
			mult = (float)mult;
		} else {
			fail_msg("reference: embedding scale in %s", qc_dtype_name(c->torch_dtype));
		}
		for (int64_t i = 0; i < T * H; i++)
			x[i] *= mult;
	}
	double noff = c->norm_offset;
	/* Gemma 2: query_pre_attn_scalar ** -0.5 */
	double scale = 1 / sqrt(c->query_pre_attn_scalar > 0 ? c->query_pre_attn_scalar : (double)hd);
	int gelu = strcmp(c->hidden_act, "gelu_pytorch_tanh") == 0;
	double *tmp = calloc((size_t)(T * H), 8);
	char name[256];
	for (int l = 0; l < c->num_hidden_layers; l++) {
		double *W[7], *B[7] = { 0 };
		for (int j = 0; j < 7; j++) {
			snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, paths[j]);
			W[j] = wdeq ? wdeq(wctx, l, j) : NULL;
			if (!W[j])
				W[j] = get(m, name);
			/* a bias when the table has one (the config's flags are the
			 * runtime's business; tests check them on their own) */
			snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, paths[j]);
			if (tm_find(m, name))
				B[j] = get(m, name);
		}
		snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
		double *n1 = get(m, name);
		snprintf(name, sizeof name, "model.layers.%d.%s.weight", l,
		         c->sandwich_norms ? "pre_feedforward_layernorm" : "post_attention_layernorm");
		double *n2 = get(m, name);
		double *no = NULL, *nm = NULL;   /* Gemma 2's output norms */
		if (c->sandwich_norms) {
			snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
			no = get(m, name);
			snprintf(name, sizeof name, "model.layers.%d.post_feedforward_layernorm.weight", l);
			nm = get(m, name);
		}
		/* sliding window: Mistral every layer, Gemma 2 the even ones
		 * (transformers' layer_types: sliding when (i + 1) % 2) */
		int64_t win = c->sliding_layers == QC_SLIDE_ALL ||
		              (c->sliding_layers == QC_SLIDE_EVEN && (l + 1) % 2 == 1) ? c->sliding_window : 0;
		/* attention */
		rmsnorm_off(h, x, n1, noff, T, H, c->rms_norm_eps);
		double *outs[3] = { q, k, v };
		int64_t dims[3] = { qd, kvd, kvd };
		for (int j = 0; j < 3; j++) {
			memcpy(hq, h, sizeof(double) * (size_t)(T * H));
			fake_quant(hq, T, H, act ? &act[j] : NULL);
			linear(outs[j], hq, W[j], B[j], T, H, dims[j], 0);
		}
		int64_t off = 0;
		for (int64_t s = 0; s < nseq; s++) {
			int64_t n = lens[s];
			/* rotary: rotate_half pairs (i, i + hd/2) */
			for (int64_t t = 0; t < n; t++)
				for (int pass = 0; pass < 2; pass++) {
					double *base = pass ? k + (off + t) * kvd : q + (off + t) * qd;
					int64_t heads = pass ? nkv : nh;
					for (int64_t hh = 0; hh < heads; hh++)
						for (int64_t i = 0; i < hd / 2; i++) {
							double *p = base + hh * hd;
							double ang = (double)t * inv[i];
							double x1 = p[i], x2 = p[i + hd / 2];
							p[i] = x1 * cos(ang) - x2 * sin(ang);
							p[i + hd / 2] = x2 * cos(ang) + x1 * sin(ang);
						}
				}
			for (int64_t hh = 0; hh < nh; hh++) {
				int64_t gk = hh / (nh / nkv);
				for (int64_t i = 0; i < n; i++) {
					double mx = -INFINITY, z = 0;
					/* the mask keeps keys j > i - window */
					int64_t j0 = win > 0 && i - win + 1 > 0 ? i - win + 1 : 0;
					for (int64_t j = j0; j <= i; j++) {
						double d = 0;
						for (int64_t e = 0; e < hd; e++)
							d += q[(off + i) * qd + hh * hd + e] * k[(off + j) * kvd + gk * hd + e];
						sc[j] = d * scale;
						/* Gemma 2: tanh(s / cap) * cap before the mask */
						if (c->attn_softcap > 0)
							sc[j] = tanh(sc[j] / c->attn_softcap) * c->attn_softcap;
						mx = fmax(mx, sc[j]);
					}
					for (int64_t j = j0; j <= i; j++)
						z += sc[j] = exp(sc[j] - mx);
					for (int64_t e = 0; e < hd; e++) {
						double o = 0;
						for (int64_t j = j0; j <= i; j++)
							o += sc[j] / z * v[(off + j) * kvd + gk * hd + e];
						a[(off + i) * qd + hh * hd + e] = o;
					}
				}
			}
			off += n;
		}
		fake_quant(a, T, qd, act ? &act[3] : NULL);
		/* Gemma 2: residual + post_attention_layernorm(o_proj(a)) */
		residual_add(x, tmp, a, W[3], B[3], no, noff, T, qd, H, c->rms_norm_eps);
		/* MLP */
		rmsnorm_off(h, x, n2, noff, T, H, c->rms_norm_eps);
		memcpy(hq, h, sizeof(double) * (size_t)(T * H));
		fake_quant(hq, T, H, act ? &act[4] : NULL);
		linear(g, hq, W[4], B[4], T, H, I, 0);
		memcpy(hq, h, sizeof(double) * (size_t)(T * H));
		fake_quant(hq, T, H, act ? &act[5] : NULL);
		linear(u, hq, W[5], B[5], T, H, I, 0);
		for (int64_t i = 0; i < T * I; i++) {
			double y = g[i];
			/* SiLU, or gelu_pytorch_tanh: 0.5 y (1 + tanh(sqrt(2/pi) (y + 0.044715 y^3))) */
			g[i] = (gelu ? 0.5 * y * (1 + tanh(sqrt(2 / M_PI) * (y + 0.044715 * y * y * y)))
			             : y / (1 + exp(-y))) * u[i];
		}
		fake_quant(g, T, I, act ? &act[6] : NULL);
		/* Gemma 2: residual + post_feedforward_layernorm(down_proj(...)) */
		residual_add(x, tmp, g, W[6], B[6], nm, noff, T, I, H, c->rms_norm_eps);
		for (int j = 0; j < 7; j++) {
			free(W[j]);
			free(B[j]);
		}
		free(n1);
		free(n2);
		free(no);
		free(nm);
	}
	double *nf = get(m, "model.norm.weight");
	rmsnorm_off(h, x, nf, noff, T, H, c->rms_norm_eps);
	double *LM = c->tie_word_embeddings ? E : get(m, "lm_head.weight");
	linear(logits, h, LM, NULL, T, H, V, 0);
	/* Gemma 2: logits / cap, tanh, * cap */
	if (c->final_softcap > 0)
		for (int64_t i = 0; i < T * V; i++)
			logits[i] = tanh(logits[i] / c->final_softcap) * c->final_softcap;
	free(tmp);
	if (LM != E)
		free(LM);
	free(E); free(nf); free(x); free(h); free(q); free(k); free(v); free(a);
	free(g); free(u); free(hq); free(inv); free(sc);
}

/* ---------------------------------------------------------------- RTN writer */

float tm_e4m3_value(uint8_t b)
{
	int e = (b >> 3) & 15, mt = b & 7;
	float v = e ? ldexpf(1.0f + mt / 8.0f, e - 7) : ldexpf(mt / 8.0f, -6);
	return b & 0x80 ? -v : v;
}

uint8_t tm_e4m3(float v)
{
	float r = e4m3_round(v), a = fabsf(r);
	for (int c = 0; c < 127; c++)
		if (tm_e4m3_value((uint8_t)c) == a)
			return (uint8_t)(c | (r < 0 || (r == 0 && signbit(v)) ? 0x80 : 0));
	fail_msg("tm_e4m3: %g", (double)v);
	return 0;
}

/* a scale as stored (rounded to dt) */
static float store_round(float s, qc_dtype dt)
{
	if (dt == QC_DT_BF16) {
		uint32_t u = (uint32_t)to_bf16(s) << 16;
		memcpy(&s, &u, 4);
	}
	return s;
}

static void put_scalar_dt(void *buf, size_t i, float v, qc_dtype dt)
{
	if (dt == QC_DT_BF16)
		((uint16_t *)buf)[i] = to_bf16(v);
	else
		((float *)buf)[i] = v;
}

static double get_scalar(const qc_tensor *t, int64_t i)
{
	if (t->dtype == QC_DT_F32) {
		float f;
		memcpy(&f, (const char *)t->data + 4 * i, 4);
		return f;
	}
	uint16_t h;
	memcpy(&h, (const char *)t->data + 2 * i, 2);
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

void tm_quantize(tm_model *m, const tm_qspec *q)
{
	const qc_config *c = &m->cfg;
	int qmin = -(1 << (q->bits - 1)), qmax = (1 << (q->bits - 1)) - 1;
	for (int l = 0; l < c->num_hidden_layers; l++)
		for (int k = 0; k < 7; k++) {
			char name[256], base[200];
			snprintf(base, sizeof base, "model.layers.%d.%s", l, paths[k]);
			snprintf(name, sizeof name, "%s.weight", base);
			const qc_tensor *t = tm_find(m, name);
			assert_non_null(t);
			assert_int_equal(t->dtype, QC_DT_F32);
			int64_t out = t->shape[0], in = t->shape[1];
			const float *w = t->data;
			int64_t g = q->strategy == 2 ? q->group : in;
			int64_t ng = (in + g - 1) / g, srows = q->strategy == 0 ? 1 : out;
			float *sc = malloc(sizeof(float) * (size_t)(srows * ng));
			float *zp = calloc((size_t)(srows * ng), sizeof(float));
			uint8_t *codes = malloc((size_t)(out * in));
			/* parameters per (row or whole, group) */
			for (int64_t r = 0; r < srows; r++)
				for (int64_t gi = 0; gi < ng; gi++) {
					float mn = 0, mx = 0;
					int64_t r0 = q->strategy == 0 ? 0 : r, r1 = q->strategy == 0 ? out : r + 1;
					for (int64_t rr = r0; rr < r1; rr++)
						for (int64_t cc = gi * g; cc < (gi + 1) * g && cc < in; cc++) {
							mn = fminf(mn, w[rr * in + cc]);
							mx = fmaxf(mx, w[rr * in + cc]);
						}
					float s, z = 0;
					if (q->is_float) {
						s = fmaxf(fabsf(mn), mx) / 448.0f;
					} else if (q->symmetric) {
						s = fmaxf(fabsf(mn), mx) / ((float)(qmax - qmin) / 2.0f);
					} else {
						s = (mx - mn) / (float)(qmax - qmin);
					}
					s = store_round(fmaxf(s, 1.1920929e-07f), q->scale_dt);
					if (!q->is_float && !q->symmetric)
						z = fminf((float)qmax, fmaxf((float)qmin, rne((float)qmin - mn / s)));
					sc[r * ng + gi] = s;
					zp[r * ng + gi] = z;
				}
			for (int64_t r = 0; r < out; r++)
				for (int64_t cc = 0; cc < in; cc++) {
					int64_t si = (q->strategy == 0 ? 0 : r) * ng + cc / g;
					float v = w[r * in + cc] / sc[si];
					if (q->is_float) {
						codes[r * in + cc] = tm_e4m3(fminf(448, fmaxf(-448, v)));
					} else {
						float k2 = fminf((float)qmax, fmaxf((float)qmin, rne(v + zp[si])));
						codes[r * in + cc] = (uint8_t)(int8_t)k2;
					}
				}
			tm_remove(m, name);
			int64_t ss[2] = { srows, ng }, one = 1;
			void *sbuf = malloc(4 * (size_t)(srows * ng));
			for (int64_t i = 0; i < srows * ng; i++)
				put_scalar_dt(sbuf, (size_t)i, sc[i], q->scale_dt);
			snprintf(name, sizeof name, "%s.weight_scale", base);
			if (q->strategy == 0)
				tm_put(m, name, q->scale_dt, 1, &one, sbuf);
			else
				tm_put(m, name, q->scale_dt, 2, ss, sbuf);
			if (!q->packed) {
				int64_t ws[2] = { out, in };
				snprintf(name, sizeof name, "%s.weight", base);
				tm_put(m, name, q->is_float ? QC_DT_F8_E4M3 : QC_DT_I8, 2, ws, codes);
				if (!q->is_float && !q->symmetric) {
					int8_t *z8 = malloc((size_t)(srows * ng));
					for (int64_t i = 0; i < srows * ng; i++)
						z8[i] = (int8_t)zp[i];
					snprintf(name, sizeof name, "%s.weight_zero_point", base);
					if (q->strategy == 0)
						tm_put(m, name, QC_DT_I8, 1, &one, z8);
					else
						tm_put(m, name, QC_DT_I8, 2, ss, z8);
					free(z8);
				}
			} else {
				/* value c of a row in word c / pf at bits b * (c % pf), as q + 2^(b-1) */
				int b = q->bits, pf = 32 / b;
				int64_t nw = (in + pf - 1) / pf, ps[2] = { out, nw };
				uint32_t *pk = calloc((size_t)(out * nw), 4);
				for (int64_t r = 0; r < out; r++)
					for (int64_t cc = 0; cc < in; cc++) {
						uint32_t u = (uint32_t)((int8_t)codes[r * in + cc] + (1 << (b - 1)));
						pk[r * nw + cc / pf] |= u << (b * (cc % pf));
					}
				snprintf(name, sizeof name, "%s.weight_packed", base);
				tm_put(m, name, QC_DT_I32, 2, ps, pk);
				int64_t shp[2] = { out, in }, two = 2;
				snprintf(name, sizeof name, "%s.weight_shape", base);
				tm_put(m, name, QC_DT_I64, 1, &two, shp);
				if (!q->symmetric) {
					int64_t zr = (out + pf - 1) / pf, zs[2] = { zr, ng };
					uint32_t *zpk = calloc((size_t)(zr * ng), 4);
					for (int64_t r = 0; r < out; r++)
						for (int64_t gi = 0; gi < ng; gi++) {
							uint32_t u = (uint32_t)((int)zp[r * ng + gi] + (1 << (b - 1)));
							zpk[(r / pf) * ng + gi] |= u << (b * (r % pf));
						}
					snprintf(name, sizeof name, "%s.weight_zero_point", base);
					tm_put(m, name, QC_DT_I32, 2, zs, zpk);
					free(zpk);
				}
				free(pk);
			}
			free(sbuf);
			free(sc);
			free(zp);
			free(codes);
		}
}

double *tm_dequant(void *ctx, int layer, int lin)
{
	const tm_qref *qr = ctx;
	const tm_model *m = qr->m;
	const tm_qspec *q = qr->q;
	char base[200], name[256];
	snprintf(base, sizeof base, "model.layers.%d.%s", layer, paths[lin]);
	snprintf(name, sizeof name, "%s.weight_scale", base);
	const qc_tensor *st = tm_find(m, name);
	if (!st)
		return NULL;   /* not quantized: the reference reads the dense weight */
	snprintf(name, sizeof name, "%s.%s", base, q->packed ? "weight_packed" : "weight");
	const qc_tensor *wt = tm_find(m, name);
	snprintf(name, sizeof name, "%s.weight_zero_point", base);
	const qc_tensor *zt = tm_find(m, name);
	int64_t out, in;
	if (q->packed) {
		int64_t shp[2];
		snprintf(name, sizeof name, "%s.weight_shape", base);
		memcpy(shp, tm_find(m, name)->data, 16);
		out = shp[0];
		in = shp[1];
	} else {
		out = wt->shape[0];
		in = wt->shape[1];
	}
	int b = q->bits, pf = 32 / b;
	int64_t g = q->strategy == 2 ? q->group : in, ng = (in + g - 1) / g, nw = (in + pf - 1) / pf;
	double *w = malloc(sizeof(double) * (size_t)(out * in));
	for (int64_t r = 0; r < out; r++)
		for (int64_t c = 0; c < in; c++) {
			int64_t si = (q->strategy == 0 ? 0 : r) * ng + c / g;
			double code, z = 0;
			if (q->packed) {
				uint32_t wd;
				memcpy(&wd, (const char *)wt->data + 4 * (r * nw + c / pf), 4);
				code = (double)((int)((wd >> (b * (c % pf))) & ((1u << b) - 1)) - (1 << (b - 1)));
				if (zt) {
					uint32_t zw;
					memcpy(&zw, (const char *)zt->data + 4 * ((r / pf) * ng + c / g), 4);
					z = (double)((int)((zw >> (b * (r % pf))) & ((1u << b) - 1)) - (1 << (b - 1)));
				}
			} else if (q->is_float) {
				code = tm_e4m3_value(((const uint8_t *)wt->data)[r * in + c]);
			} else {
				code = ((const int8_t *)wt->data)[r * in + c];
				if (zt)
					z = ((const int8_t *)zt->data)[si];
			}
			w[r * in + c] = (code - z) * get_scalar(st, si);
		}
	return w;
}
