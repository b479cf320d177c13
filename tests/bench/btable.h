/*
 * btable.h - what the benchmarks that build a model in memory share: a
 * table of tensors served by name (a qc_wsrc for qc_model_open_src), random
 * numbers from one fixed xorshift stream, and dying with the library's
 * message. Benchmarks are programs run by hand, so failures abort.
 */
#ifndef BTABLE_H
#define BTABLE_H

#include <stdint.h>

#include "qc_config.h"
#include "qc_dtype.h"

typedef struct btable {
	qc_tensor *t;          /* names and data owned (never freed: the process ends) */
	size_t n, cap;
} btable;

/* The next number of the process's xorshift64 stream (fixed seed). */
uint64_t bt_rand(void);

/* A new tensor of that dtype and shape with uninitialized data. */
qc_tensor *bt_put(btable *tb, const char *name, qc_dtype dt, int ndim, const int64_t *shape);

/* A BF16 tensor of values uniform in about [c - a, c + a]. */
void bt_put_bf16(btable *tb, const char *name, int ndim, const int64_t *shape, float a, float c);

/* qc_wsrc's get: the tensor of that name in the table (ctx). */
int bt_get(void *ctx, const char *name, const qc_tensor **t);

/* The Llama-3.2-1B preset (qc_synth_preset: hidden 2048, intermediate
 * 8192, 32 heads, 8 KV heads, head_dim 64, llama3 rope) cut to `layers`
 * layers with `vocab` ids and a tied embedding; shapes[l] is Linear l's
 * [out, in] (qc_linear order). */
void bt_llama_1b(qc_config *cfg, int layers, int64_t vocab, int64_t shapes[7][2]);

/* A layer's two norms, BF16 uniform in about [c - a, c + a]. */
void bt_put_norms(btable *tb, const qc_config *cfg, int layer, float a, float c);

/* Print "prog: <message of rc>" and exit 1. */
void bt_die(const char *prog, int rc) __attribute__((noreturn));

#endif
