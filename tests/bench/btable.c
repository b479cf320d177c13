/* btable.c - in-memory tensors and random numbers for the benchmarks (btable.h). */
#include "btable.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_synth.h"

static uint64_t rs = 0x9E3779B97F4A7C15ull;

uint64_t bt_rand(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

qc_tensor *bt_put(btable *tb, const char *name, qc_dtype dt, int ndim, const int64_t *shape)
{
	if (tb->n == tb->cap) {
		tb->cap = tb->cap ? 2 * tb->cap : 256;
		tb->t = realloc(tb->t, tb->cap * sizeof *tb->t);
		if (!tb->t)
			abort();
	}
	qc_tensor *t = &tb->t[tb->n++];
	memset(t, 0, sizeof *t);
	t->name = strdup(name);
	t->dtype = dt;
	t->ndim = ndim;
	memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
	t->nbytes = (size_t)qc_numel(ndim, shape) * qc_dtype_size(dt);
	if (!t->name || !(t->data = malloc(t->nbytes ? t->nbytes : 1)))
		abort();
	return t;
}

void bt_put_bf16(btable *tb, const char *name, int ndim, const int64_t *shape, float a, float c)
{
	qc_tensor *t = bt_put(tb, name, QC_DT_BF16, ndim, shape);
	uint16_t *d = (uint16_t *)t->data;
	for (size_t i = 0; i < t->nbytes / 2; i++) {
		float f = c + a * ((float)(bt_rand() >> 40) / (float)(1 << 24) * 2.0f - 1.0f);
		uint32_t u;
		memcpy(&u, &f, 4);
		d[i] = (uint16_t)(u >> 16);   /* truncation: any BF16 value will do */
	}
}

int bt_get(void *ctx, const char *name, const qc_tensor **t)
{
	btable *tb = ctx;
	for (size_t i = 0; i < tb->n; i++)
		if (strcmp(tb->t[i].name, name) == 0) {
			*t = &tb->t[i];
			return 0;
		}
	return qc_seterr(QC_ENOTFOUND, "no tensor '%s'", name);
}

void bt_llama_1b(qc_config *cfg, int layers, int64_t vocab, int64_t shapes[7][2])
{
	if (qc_synth_preset("llama-3.2-1b", cfg))
		abort();
	cfg->num_hidden_layers = layers;
	cfg->vocab_size = vocab;
	cfg->tie_word_embeddings = 1;
	for (int l = 0; l < QC_LIN_COUNT; l++)
		qc_linear_shape(cfg, (qc_linear)l, shapes[l]);
}

void bt_put_norms(btable *tb, const qc_config *cfg, int layer, float a, float c)
{
	char name[128];
	const int64_t h = cfg->hidden_size;
	snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", layer);
	bt_put_bf16(tb, name, 1, &h, a, c);
	snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", layer);
	bt_put_bf16(tb, name, 1, &h, a, c);
}

void bt_die(const char *prog, int rc)
{
	fprintf(stderr, "%s: %s\n", prog, *qc_errmsg() ? qc_errmsg() : qc_strerror(rc));
	exit(1);
}
