/* qc_synth.c - synthetic Llama weights (see qc_synth.h for the statistics). */
#include "qc_synth.h"

#include <math.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qc_err.h"
#include "qc_num.h"
#include "qc_pool.h"
#include "qc_rng.h"

/* ---------------------------------------------------------------- presets */

static const char *const preset_names[] = {
	"tiny", "llama-3.2-1b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b",
	"llama-2-7b", "llama-2-13b", "vicuna-7b", "vicuna-13b", "gemma-2b", "gemma-7b", "gemma-2-2b",
	"gemma-2-9b", "gemma-2-27b", "gemma2-tiny", "qwen2-0.5b", "qwen2-7b", NULL,
};

const char *const *qc_synth_preset_names(void) { return preset_names; }

void qc_synth_opts_default(qc_synth_opts *o)
{
	memset(o, 0, sizeof *o);
	o->seed = 0;
	o->dtype = QC_DT_BF16;
	o->outlier_channels = -1;
	o->outlier_min = 20.0;
	o->outlier_max = 100.0;
	o->threads = 0;
}

/* Shapes and hyper-parameters of the real models (their config.json files). */
static void llama3_common(qc_config *c)
{
	snprintf(c->architecture, sizeof c->architecture, "LlamaForCausalLM");
	snprintf(c->model_type, sizeof c->model_type, "llama");
	snprintf(c->hidden_act, sizeof c->hidden_act, "silu");
	c->vocab_size = 128256;
	c->max_position_embeddings = 131072;
	c->rms_norm_eps = 1e-5;
	c->rope_theta = 500000.0;
	c->rope_type = QC_ROPE_LLAMA3;
	c->rope_factor = 8.0;
	c->rope_low_freq_factor = 1.0;
	c->rope_high_freq_factor = 4.0;
	c->rope_original_max_position_embeddings = 8192;
	c->bos_token_id = 128000;
	c->eos_token_ids[0] = 128001;
	c->n_eos = 1;
	c->torch_dtype = QC_DT_BF16;
	c->num_key_value_heads = 8;
	c->head_dim = 128;
}

/* Llama-2 and Vicuna v1.5 (fine-tuned from it, the same config.json
 * values): 32000 SentencePiece vocabulary, no rope scaling (theta 10000),
 * 4096 positions, full multi-head attention, float16. */
static void llama2(qc_config *c, int64_t hidden, int64_t inter, int64_t layers, int64_t heads)
{
	c->vocab_size = 32000;
	c->max_position_embeddings = 4096;
	c->rope_theta = 10000.0;
	c->rope_type = QC_ROPE_DEFAULT;
	c->rope_factor = 0;
	c->rope_low_freq_factor = 0;
	c->rope_high_freq_factor = 0;
	c->rope_original_max_position_embeddings = 0;
	c->bos_token_id = 1;
	c->eos_token_ids[0] = 2;
	c->torch_dtype = QC_DT_F16;
	c->hidden_size = hidden;
	c->intermediate_size = inter;
	c->num_hidden_layers = layers;
	c->num_attention_heads = heads;
	c->num_key_value_heads = heads;
	c->head_dim = hidden / heads;
}

/* Gemma (google/gemma-2b, -7b) and Gemma 2 (google/gemma-2-2b, -9b, -27b):
 * 256000 vocabulary, tied embeddings, 8192 positions, eps 1e-6, bos 2,
 * eos 1; Gemma 2 adds soft-capping (50 on attention logits, 30 on the
 * final ones), a 4096-token window on the even layers and
 * query_pre_attn_scalar (head_dim, except 27B's hidden / heads = 144). */
static void gemma(qc_config *c, int v2, int64_t hidden, int64_t inter, int64_t layers,
                  int64_t heads, int64_t kv, int64_t head_dim, double qpas)
{
	memset(c, 0, sizeof *c);
	snprintf(c->architecture, sizeof c->architecture, v2 ? "Gemma2ForCausalLM" : "GemmaForCausalLM");
	snprintf(c->model_type, sizeof c->model_type, v2 ? "gemma2" : "gemma");
	snprintf(c->hidden_act, sizeof c->hidden_act, "gelu_pytorch_tanh");
	c->family = v2 ? QC_FAMILY_GEMMA2 : QC_FAMILY_GEMMA;
	c->vocab_size = 256000;
	c->max_position_embeddings = 8192;
	c->rms_norm_eps = 1e-6;
	c->rope_theta = 10000.0;
	c->tie_word_embeddings = 1;
	c->bos_token_id = 2;
	c->eos_token_ids[0] = 1;
	c->n_eos = 1;
	c->torch_dtype = v2 ? QC_DT_F32 : QC_DT_BF16;
	c->hidden_size = hidden;
	c->intermediate_size = inter;
	c->num_hidden_layers = layers;
	c->num_attention_heads = heads;
	c->num_key_value_heads = kv;
	c->head_dim = head_dim;
	c->norm_offset = 1;
	c->embed_scale = 1;
	if (v2) {
		c->sandwich_norms = 1;
		c->query_pre_attn_scalar = qpas;
		c->attn_softcap = 50.0;
		c->final_softcap = 30.0;
		c->sliding_window = 4096;
		c->sliding_layers = QC_SLIDE_EVEN;
	}
}

int qc_synth_preset(const char *name, qc_config *c)
{
	memset(c, 0, sizeof *c);
	static const struct {
		const char *name;
		int v2;
		int64_t hidden, inter, layers, heads, kv, head_dim;
		double qpas;
	} gemmas[] = {
		{ "gemma-2b", 0, 2048, 16384, 18, 8, 1, 256, 0 },
		{ "gemma-7b", 0, 3072, 24576, 28, 16, 16, 256, 0 },
		{ "gemma-2-2b", 1, 2304, 9216, 26, 8, 4, 256, 256 },
		{ "gemma-2-9b", 1, 3584, 14336, 42, 16, 8, 256, 256 },
		{ "gemma-2-27b", 1, 4608, 36864, 46, 32, 16, 128, 144 },
		/* for tests: Gemma 2's features at the tiny preset's size, with a
		 * window (16) that test sequences outgrow */
		{ "gemma2-tiny", 1, 128, 384, 2, 4, 2, 64, 64 },
	};
	for (size_t i = 0; i < sizeof gemmas / sizeof gemmas[0]; i++)
		if (strcmp(name, gemmas[i].name) == 0) {
			gemma(c, gemmas[i].v2, gemmas[i].hidden, gemmas[i].inter, gemmas[i].layers,
			      gemmas[i].heads, gemmas[i].kv, gemmas[i].head_dim, gemmas[i].qpas);
			if (strcmp(name, "gemma2-tiny") == 0) {
				c->vocab_size = 512;
				c->sliding_window = 16;
				c->bos_token_id = 510;
				c->eos_token_ids[0] = 511;
			}
			return 0;
		}
	llama3_common(c);
	/* Qwen/Qwen2-0.5B and Qwen2-7B: q/k/v biases, rope theta 1e6, 131072
	 * positions, eps 1e-6, bos = eos = 151643 */
	if (strcmp(name, "qwen2-0.5b") == 0 || strcmp(name, "qwen2-7b") == 0) {
		int small = name[6] == '0';
		snprintf(c->architecture, sizeof c->architecture, "Qwen2ForCausalLM");
		snprintf(c->model_type, sizeof c->model_type, "qwen2");
		c->family = QC_FAMILY_QWEN2;
		c->qkv_bias = 1;
		c->rope_type = QC_ROPE_DEFAULT;
		c->rope_factor = c->rope_low_freq_factor = c->rope_high_freq_factor = 0;
		c->rope_original_max_position_embeddings = 0;
		c->rope_theta = 1000000.0;
		c->rms_norm_eps = 1e-6;
		c->bos_token_id = 151643;
		c->eos_token_ids[0] = 151643;
		c->hidden_size = small ? 896 : 3584;
		c->intermediate_size = small ? 4864 : 18944;
		c->num_hidden_layers = small ? 24 : 28;
		c->num_attention_heads = small ? 14 : 28;
		c->num_key_value_heads = small ? 2 : 4;
		c->head_dim = 64 + 64 * !small;
		c->vocab_size = small ? 151936 : 152064;
		c->tie_word_embeddings = small;
		return 0;
	}
	if (strcmp(name, "llama-2-7b") == 0 || strcmp(name, "vicuna-7b") == 0) {
		llama2(c, 4096, 11008, 32, 32);
		return 0;
	}
	if (strcmp(name, "llama-2-13b") == 0 || strcmp(name, "vicuna-13b") == 0) {
		llama2(c, 5120, 13824, 40, 40);
		return 0;
	}
	if (strcmp(name, "tiny") == 0) {
		/* Small enough for unit tests, yet with GQA, a partial int4 group
		 * (in 384 = 3 groups of 128) and llama3 rope scaling. */
		c->hidden_size = 128;
		c->intermediate_size = 384;
		c->num_hidden_layers = 2;
		c->num_attention_heads = 4;
		c->num_key_value_heads = 2;
		c->head_dim = 32;
		c->vocab_size = 512;
		c->max_position_embeddings = 2048;
		c->rope_factor = 8.0;
		c->rope_original_max_position_embeddings = 256;
		c->tie_word_embeddings = 1;
		c->bos_token_id = 510;
		c->eos_token_ids[0] = 511;
	} else if (strcmp(name, "llama-3.2-1b") == 0) {
		c->hidden_size = 2048;
		c->intermediate_size = 8192;
		c->num_hidden_layers = 16;
		c->num_attention_heads = 32;
		c->head_dim = 64;
		c->rope_factor = 32.0;
		c->tie_word_embeddings = 1;
	} else if (strcmp(name, "llama-3.1-8b") == 0) {
		c->hidden_size = 4096;
		c->intermediate_size = 14336;
		c->num_hidden_layers = 32;
		c->num_attention_heads = 32;
	} else if (strcmp(name, "llama-3.1-70b") == 0) {
		c->hidden_size = 8192;
		c->intermediate_size = 28672;
		c->num_hidden_layers = 80;
		c->num_attention_heads = 64;
	} else if (strcmp(name, "llama-3.1-405b") == 0) {
		c->hidden_size = 16384;
		c->intermediate_size = 53248;
		c->num_hidden_layers = 126;
		c->num_attention_heads = 128;
	} else {
		return qc_seterr(QC_EINVAL, "unknown preset '%s' (tiny, llama-3.2-1b, llama-3.1-8b, "
		                 "llama-3.1-70b, llama-3.1-405b, llama-2-7b, llama-2-13b, vicuna-7b, "
		                 "vicuna-13b, gemma-2b, gemma-7b, gemma-2-2b, gemma-2-9b, gemma-2-27b, "
		                 "gemma2-tiny, qwen2-0.5b, qwen2-7b)", name);
	}
	return 0;
}

/* ------------------------------------------------------------ sampling */

/* Unit-variance Student-t(5) by table lookup: 65536 quantiles of 2^20 exact
 * draws (made once, deterministically), linearly interpolated with 16 more
 * random bits. Exact sampling costs ~100 ns a value; this ~2 ns, which makes
 * a 1B-shaped checkpoint a matter of seconds. */
#define T_TABLE_BITS 16
#define T_TABLE_N (1 << T_TABLE_BITS)
static float t_table[T_TABLE_N + 1];
static pthread_once_t t_once = PTHREAD_ONCE_INIT;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void t_table_init(void)
{
	size_t n = (size_t)1 << 20;
	double *s = malloc(n * sizeof *s);
	qc_rng r;
	qc_rng_seed(&r, 0x5eed7ab1eull);
	if (!s) {
		/* fall back to exact quantile-free draws: still deterministic */
		for (int i = 0; i <= T_TABLE_N; i++)
			t_table[i] = (float)qc_rng_student_t(&r, 5.0);
		return;
	}
	for (size_t i = 0; i < n; i++)
		s[i] = qc_rng_student_t(&r, 5.0);
	qsort(s, n, sizeof *s, cmp_double);
	for (int i = 0; i <= T_TABLE_N; i++) {
		size_t k = (size_t)(((double)i + 0.5) / (T_TABLE_N + 1) * n);
		t_table[i] = (float)s[k < n ? k : n - 1];
	}
	free(s);
}

static inline float t_draw(qc_rng *r)
{
	uint64_t u = qc_rng_u64(r);
	uint32_t i = (uint32_t)(u >> (64 - T_TABLE_BITS));
	float f = (float)((u >> (64 - 2 * T_TABLE_BITS)) & 0xffff) * (1.0f / 65536.0f);
	return t_table[i] + f * (t_table[i + 1] - t_table[i]);
}

static uint64_t name_hash(uint64_t seed, const char *name)
{
	uint64_t h = 0xcbf29ce484222325ull ^ seed;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 0x100000001b3ull;
	return h;
}

static void row_rng(qc_rng *r, uint64_t tensor_hash, int64_t row)
{
	qc_rng_seed(r, tensor_hash ^ ((uint64_t)row * 0x9e3779b97f4a7c15ull));
}

/* ------------------------------------------------------------ outliers */

int qc_synth_outliers(const qc_config *cfg, const qc_synth_opts *o, int64_t *out)
{
	int64_t h = cfg->hidden_size;
	int64_t k = o->outlier_channels >= 0 ? o->outlier_channels : (h / 256 > 2 ? h / 256 : 2);
	if (k > h)
		k = h;
	/* partial Fisher-Yates over channel indices, then sort */
	int64_t *idx = malloc((size_t)h * sizeof *idx);
	if (!idx)
		return 0;
	for (int64_t i = 0; i < h; i++)
		idx[i] = i;
	qc_rng r;
	qc_rng_derive(&r, o->seed, "outlier-channels");
	for (int64_t i = 0; i < k; i++) {
		int64_t j = i + (int64_t)qc_rng_below(&r, (uint64_t)(h - i));
		int64_t t = idx[i];
		idx[i] = idx[j];
		idx[j] = t;
	}
	for (int64_t i = 0; i < k; i++)
		out[i] = idx[i];
	free(idx);
	/* insertion sort: k is small */
	for (int64_t i = 1; i < k; i++)
		for (int64_t j = i; j > 0 && out[j - 1] > out[j]; j--) {
			int64_t t = out[j];
			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	return (int)k;
}

/* Gain multiple of outlier channel c: log-uniform in [min, max], from the
 * seed and the channel alone, so every layer shares it. */
static double outlier_gain(const qc_synth_opts *o, int64_t c)
{
	qc_rng r;
	qc_rng_seed(&r, name_hash(o->seed, "outlier-gain") ^ (uint64_t)c * 0x2545f4914f6cdd1dull);
	double u = qc_rng_uniform(&r);
	return o->outlier_min * pow(o->outlier_max / o->outlier_min, u);
}

/* ------------------------------------------------------------ tensors */

enum kind { K_EMBED, K_NORM, K_LINEAR, K_LM_HEAD, K_BIAS };

typedef struct job {
	const qc_config *cfg;
	const qc_synth_opts *o;
	enum kind kind;
	uint64_t hash;
	int64_t rows, cols;
	double sigma;            /* entry std before row scale */
	const float *col_scale;  /* per input column multiplier or NULL */
	const float *gain;       /* K_NORM: per channel outlier gain (0 = normal) */
	double norm_scale;       /* K_NORM: the effective gains' scale (1, or Gemma 2's output norms') */
	float norm_offset;       /* K_NORM: subtracted from the gain (1 for (1 + w) norms) */
	void *out;
	int64_t row_begin, row_end;
	int rc;
} job;

static void fill_rows(job *j)
{
	float *row = malloc((size_t)j->cols * sizeof *row);
	if (!row) {
		j->rc = QC_ENOMEM;
		return;
	}
	size_t esz = qc_dtype_size(j->o->dtype);
	for (int64_t r = j->row_begin; r < j->row_end; r++) {
		qc_rng g;
		row_rng(&g, j->hash, r);
		if (j->kind == K_NORM) {
			/* a 1-D tensor is one "row" of cols entries */
			for (int64_t c = 0; c < j->cols; c++) {
				double v = 1.0 + 0.1 * qc_rng_normal(&g);
				if (j->gain && j->gain[c] > 0)
					v = j->gain[c];
				/* the gain the norm applies is |v| scaled; a (1 + w)
				 * norm stores it less one */
				row[c] = (float)(fabs(v) * j->norm_scale) - j->norm_offset;
			}
		} else {
			double s = j->sigma;
			if (j->kind == K_LINEAR)
				s *= exp(0.25 * qc_rng_normal(&g));
			for (int64_t c = 0; c < j->cols; c++)
				row[c] = (float)(t_draw(&g) * s);
			if (j->col_scale)
				for (int64_t c = 0; c < j->cols; c++)
					row[c] *= j->col_scale[c];
		}
		qc_from_f32((char *)j->out + (size_t)r * (size_t)j->cols * esz, j->o->dtype, row,
		            (size_t)j->cols);
	}
	free(row);
}

/* part i of the rows: [rows i / n, rows (i + 1) / n) (every row's values
 * depend only on its index, so the split never changes a bit) */
static int fill_part(void *arg, int part, int nparts)
{
	job j = *(const job *)arg;
	qc_pool_range(j.rows, part, nparts, &j.row_begin, &j.row_end);
	j.rc = 0;
	fill_rows(&j);
	return j.rc;
}

static int run_jobs(job *proto, int threads)
{
	if (threads <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n > 0 ? (int)n : 1;
	}
	if (threads > 64)
		threads = 64;
	if (proto->rows < threads * 4)
		threads = 1;
	return qc_pool_run(threads, fill_part, proto);
}

/* Which part of the layout a name is: sets kind and, for Linears, which. */
static int classify(const char *name, enum kind *kind, int *lin, int *is_post_attn_norm)
{
	*lin = -1;
	*is_post_attn_norm = 0;
	if (strcmp(name, "model.embed_tokens.weight") == 0) {
		*kind = K_EMBED;
		return 0;
	}
	if (strcmp(name, "lm_head.weight") == 0) {
		*kind = K_LM_HEAD;
		return 0;
	}
	if (strcmp(name, "model.norm.weight") == 0) {
		*kind = K_NORM;
		return 0;
	}
	const char *p = "model.layers.";
	if (strncmp(name, p, strlen(p)) != 0)
		return QC_EINVAL;
	const char *q = name + strlen(p);
	while (*q >= '0' && *q <= '9')
		q++;
	if (*q != '.' || q == name + strlen(p))
		return QC_EINVAL;
	q++;
	if (strcmp(q, "input_layernorm.weight") == 0 || strcmp(q, "pre_feedforward_layernorm.weight") == 0) {
		*kind = K_NORM;
		return 0;
	}
	if (strcmp(q, "post_attention_layernorm.weight") == 0) {
		*kind = K_NORM;
		*is_post_attn_norm = 1;
		return 0;
	}
	if (strcmp(q, "post_feedforward_layernorm.weight") == 0) {
		*kind = K_NORM;
		*is_post_attn_norm = 2;
		return 0;
	}
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		const char *lp = qc_linear_path((qc_linear)l);
		size_t n = strlen(lp);
		if (strncmp(q, lp, n) == 0 && strcmp(q + n, ".weight") == 0) {
			*kind = K_LINEAR;
			*lin = l;
			return 0;
		}
		if (strncmp(q, lp, n) == 0 && strcmp(q + n, ".bias") == 0) {
			*kind = K_BIAS;
			*lin = l;
			return 0;
		}
	}
	return QC_EINVAL;
}

int qc_synth_tensor(const qc_config *cfg, const qc_synth_opts *o, const char *name,
                    int ndim, const int64_t *shape, void **data, size_t *nbytes)
{
	enum kind kind;
	int lin, post_attn;
	*data = NULL;
	if (classify(name, &kind, &lin, &post_attn) != 0)
		return qc_seterr(QC_EINVAL, "no synthetic values for tensor '%s'", name);
	if (o->dtype != QC_DT_BF16 && o->dtype != QC_DT_F16 && o->dtype != QC_DT_F32)
		return qc_seterr(QC_EINVAL, "synthetic weights are BF16, F16 or F32, not %s",
		                 qc_dtype_name(o->dtype));
	pthread_once(&t_once, t_table_init);

	int64_t numel = qc_numel(ndim, shape);
	int64_t nb = numel < 0 ? -1 : qc_nbytes(o->dtype, numel);
	if (nb < 0 || ndim < 1 || ndim > 2)
		return qc_seterr(QC_EINVAL, "bad shape for tensor '%s'", name);
	void *buf = malloc(nb ? (size_t)nb : 1);
	if (!buf)
		return qc_seterr(QC_ENOMEM, "out of memory for tensor '%s' (%lld bytes)", name,
		                 (long long)nb);

	job j;
	memset(&j, 0, sizeof j);
	j.cfg = cfg;
	j.o = o;
	j.kind = kind;
	j.hash = name_hash(o->seed, name);
	j.out = buf;
	j.rows = ndim == 2 ? shape[0] : 1;
	j.cols = ndim == 2 ? shape[1] : shape[0];

	int64_t h = cfg->hidden_size;
	int64_t *oidx = NULL;
	float *vec = NULL;
	int rc = 0;
	int64_t k = 0;
	if (kind == K_NORM || (kind == K_LINEAR && (lin == QC_LIN_Q || lin == QC_LIN_K ||
	                                            lin == QC_LIN_V || lin == QC_LIN_GATE ||
	                                            lin == QC_LIN_UP))) {
		oidx = malloc((size_t)h * sizeof *oidx);
		vec = calloc((size_t)j.cols, sizeof *vec);
		if (!oidx || !vec) {
			rc = qc_seterr(QC_ENOMEM, "out of memory for tensor '%s'", name);
			goto out;
		}
		k = qc_synth_outliers(cfg, o, oidx);
	}
	switch (kind) {
	case K_EMBED:
		/* untied: a unit-scale residual stream that each layer changes by a
		 * fraction, which keeps the network from amplifying small errors
		 * the way random deep networks otherwise do; tied: the embedding is
		 * also the output matrix and sets the logit scale */
		j.sigma = cfg->tie_word_embeddings ? 2.5 / sqrt((double)h) : 1.0;
		break;
	case K_LM_HEAD:
		j.sigma = 2.5 / sqrt((double)h);
		break;
	case K_BIAS:
		/* a 1-D tensor is one row; biases of 0.1, a tenth of the outputs */
		j.sigma = 0.1;
		break;
	case K_NORM:
		/* the final norm keeps ordinary gains; the layer norms feed q/k/v
		 * and gate/up and carry the outlier channels. Gemma 2's output
		 * norms (post_attention_layernorm, post_feedforward_layernorm) set
		 * what each block adds to the residual stream: Gemma multiplies the
		 * tied embeddings by sqrt(hidden), so the stream starts at the
		 * logits' scale (2.5 per element); gains of 3 let the blocks move
		 * it as Llama's blocks move theirs, where smaller ones leave every
		 * prediction to the current token's own embedding (and quantization
		 * errors invisible in KL) */
		j.norm_scale = 1.0;
		j.norm_offset = (float)cfg->norm_offset;
		if (cfg->sandwich_norms && post_attn) {
			j.norm_scale = 3.0;
		} else if (strcmp(name, "model.norm.weight") != 0 && j.cols == h) {
			for (int64_t i = 0; i < k; i++)
				vec[oidx[i]] = (float)outlier_gain(o, oidx[i]);
			j.gain = vec;
		}
		break;
	case K_LINEAR:
		j.sigma = (lin == QC_LIN_O || lin == QC_LIN_DOWN ? 0.35 : 1.0) / sqrt((double)j.cols);
		if (vec && j.cols == h) {
			for (int64_t c = 0; c < j.cols; c++)
				vec[c] = 1.0f;
			for (int64_t i = 0; i < k; i++)
				vec[oidx[i]] = (float)(1.0 / sqrt(outlier_gain(o, oidx[i])));
			j.col_scale = vec;
		}
		break;
	}
	rc = run_jobs(&j, o->threads);
	if (rc)
		qc_seterr(rc, "out of memory making tensor '%s'", name);
out:
	free(oidx);
	free(vec);
	if (rc) {
		free(buf);
		return rc;
	}
	*data = buf;
	if (nbytes)
		*nbytes = (size_t)nb;
	return 0;
}

/* ------------------------------------------------------------ checkpoints */

typedef struct write_ctx {
	const qc_config *cfg;
	const qc_synth_opts *o;
	qc_ckpt_writer *w;
	int group;
} write_ctx;

static int write_visit(void *ctx, const char *name, int ndim, const int64_t *shape)
{
	write_ctx *c = ctx;
	if (qc_ckpt_group_of(name) != c->group)
		return 0;
	void *data;
	size_t nb;
	QC_TRY(qc_synth_tensor(c->cfg, c->o, name, ndim, shape, &data, &nb));
	return qc_ckw_add_tensor(c->w, name, c->o->dtype, ndim, shape, data, 1);
}

int qc_synth_write(const qc_config *cfg, const qc_synth_opts *o, qc_ckpt_writer *w,
                   void (*progress)(void *ctx, int done, int total), void *pctx)
{
	write_ctx c = { cfg, o, w, 0 };
	int L = (int)cfg->num_hidden_layers;
	for (int layer = 0; layer < L; layer++) {
		/* the groups of this shard: the embeddings before layer 0, the
		 * final norm and lm_head after the last layer */
		int groups[3] = { QC_GROUP_PRE, layer, QC_GROUP_POST };
		for (int g = 0; g < 3; g++) {
			if ((g == 0 && layer != 0) || (g == 2 && layer != L - 1))
				continue;
			c.group = groups[g];
			QC_TRY(qc_config_each_tensor(cfg, write_visit, &c));
		}
		QC_TRY(qc_ckw_end_shard(w, layer == L - 1 ? QC_GROUP_POST : layer));
		if (progress)
			progress(pctx, layer + 1, L);
	}
	return 0;
}
