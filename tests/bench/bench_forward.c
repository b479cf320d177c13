/*
 * bench_forward.c - the runtime's forward pass on a Llama-3.2-1B-shaped
 * model (hidden 2048, intermediate 8192, 32 heads, 8 KV heads, head_dim
 * 64) with a few layers of random BF16 weights held in memory, over
 * sequences of 512 tokens, against the rate an OpenBLAS sgemm of the same
 * Linear shapes reaches in the same run (the bound: the Linears are
 * essentially all of a layer's FLOPs).
 *
 *   bench_forward [-l layers] [-s seq_len] [-n sequences] [-j threads] [-v vocab] [-r reps]
 *
 * Prints tokens/s for the decoder layers (weights already FP32, and with
 * the per-layer BF16 -> FP32 conversion included), the sgemm-implied
 * tokens/s, their ratio, and, when -v is not 0, the same for the lm_head.
 * Ours and the bound are timed alternately, reps times, best of each.
 * Not a timed test: run it by hand (make bench) on a quiet machine.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "btable.h"
#include "kernels.h"
#include "qc_err.h"
#include "qc_log.h"
#include "qc_model.h"

static void die(int rc)
{
	bt_die("bench_forward", rc);
}

/* seconds for the Linear GEMMs of one layer over T tokens (y = x W^T) */
static double gemm_layer(const int64_t shapes[7][2], int64_t T, float *x, float *y, float **w)
{
	double t0 = qc_now();
	for (int l = 0; l < 7; l++)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)shapes[l][0],
		            (int)shapes[l][1], 1.0f, x, (int)shapes[l][1], w[l], (int)shapes[l][1], 0.0f,
		            y, (int)shapes[l][0]);
	return qc_now() - t0;
}

int main(int argc, char **argv)
{
	int layers = 4, threads = 0, reps = 3;
	int64_t seq = 512, nseq = 4, vocab = 128256;
	int c;
	while ((c = getopt(argc, argv, "l:s:n:j:v:r:")) != -1) {
		switch (c) {
		case 'l': layers = atoi(optarg); break;
		case 's': seq = atoll(optarg); break;
		case 'n': nseq = atoll(optarg); break;
		case 'j': threads = atoi(optarg); break;
		case 'v': vocab = atoll(optarg); break;
		case 'r': reps = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: bench_forward [-l layers] [-s seq_len] [-n sequences] "
			                "[-j threads] [-v vocab] [-r reps]\n");
			return 2;
		}
	}
	if (layers < 1 || seq < 1 || nseq < 1 || threads < 0 || vocab < 0 || reps < 1) {
		fprintf(stderr, "bench_forward: invalid arguments\n");
		return 2;
	}
	const int64_t T = seq * nseq;
	qc_config cfg;
	int64_t shapes[7][2];
	bt_llama_1b(&cfg, layers, vocab ? vocab : 1, shapes);
	const int64_t H = cfg.hidden_size, IM = cfg.intermediate_size;
	const int64_t nh = cfg.num_attention_heads, nkv = cfg.num_key_value_heads, hd = cfg.head_dim;
	btable tb = { 0 };
	char name[256];
	for (int l = 0; l < layers; l++) {
		bt_put_norms(&tb, &cfg, l, 1.0f, 0.0f);
		for (int k = 0; k < 7; k++) {
			qc_linear_name(name, sizeof name, l, (qc_linear)k, "weight");
			bt_put_bf16(&tb, name, 2, shapes[k], 0.03f, 0.0f);
		}
	}
	bt_put_bf16(&tb, "model.norm.weight", 1, &H, 1.0f, 0.0f);
	int64_t es[2] = { cfg.vocab_size, H };
	if (vocab)
		bt_put_bf16(&tb, "model.embed_tokens.weight", 2, es, 0.03f, 0.0f);
	qc_wsrc src = { &tb, bt_get, NULL };

	qk_ctx *kc;
	int rc;
	if ((rc = qk_ctx_new(&kc, QK_DEVICE_CPU, threads)))
		die(rc);
	qc_model *m;
	qc_model_opts o;
	qc_model_opts_default(&o);
	if ((rc = qc_model_new(&m, &cfg, &src, NULL, kc, &o)))
		die(rc);
	float *x = qk_alloc(kc, (size_t)(T * H) * 4);
	if (!x)
		die(QC_ENOMEM);
	for (int64_t i = 0; i < T * H; i++)
		x[i] = (float)((int64_t)(bt_rand() >> 40) - (1 << 23)) / (float)(1 << 23);
	int64_t *lens = malloc(sizeof(int64_t) * (size_t)nseq);
	for (int64_t i = 0; i < nseq; i++)
		lens[i] = seq;

	double loadavg[3] = { 0 };
	FILE *la = fopen("/proc/loadavg", "r");
	if (la) {
		if (fscanf(la, "%lf %lf %lf", &loadavg[0], &loadavg[1], &loadavg[2]) != 3)
			loadavg[0] = -1;
		fclose(la);
	}
	printf("model: hidden %lld, intermediate %lld, heads %lld/%lld, head_dim %lld, %d layers\n",
	       (long long)H, (long long)IM, (long long)nh, (long long)nkv, (long long)hd, layers);
	printf("tokens: %lld sequences x %lld = %lld per layer call; threads %d; load before: %.2f %.2f %.2f\n",
	       (long long)nseq, (long long)seq, (long long)T, qk_ctx_threads(kc), loadavg[0],
	       loadavg[1], loadavg[2]);

	/* the bound's operands: the same Linear shapes, FP32 */
	float *w[7], *y = qk_alloc(kc, (size_t)(T * IM) * 4), *xb = qk_alloc(kc, (size_t)(T * IM) * 4);
	if (!y || !xb)
		die(QC_ENOMEM);
	for (int k = 0; k < 7; k++) {
		w[k] = qk_alloc(kc, (size_t)(shapes[k][0] * shapes[k][1]) * 4);
		if (!w[k])
			die(QC_ENOMEM);
		for (int64_t i = 0; i < shapes[k][0] * shapes[k][1]; i++)
			w[k][i] = (float)((int64_t)(bt_rand() >> 40) - (1 << 23)) / (float)(1 << 28);
	}
	for (int64_t i = 0; i < T * IM; i++)
		xb[i] = (float)((int64_t)(bt_rand() >> 40) - (1 << 23)) / (float)(1 << 23);

	/* load every layer once (timed: BF16 -> FP32 conversion and checks) */
	qc_layer *lw = calloc((size_t)layers, sizeof *lw);
	double t_load = 0;
	for (int l = 0; l < layers; l++) {
		double t0 = qc_now();
		if ((rc = qc_model_load_layer(m, l, &lw[l])))
			die(rc);
		t_load += qc_now() - t0;
	}
	/* warm-up of both (page faults, OpenBLAS threads) */
	if ((rc = qc_layer_forward(m, &lw[0], x, lens, nseq)))
		die(rc);
	gemm_layer(shapes, T, xb, y, w);
	/* reps alternate ours and the bound and keep each one's best time, so
	 * that another process sharing the cores skews both alike */
	double t_fwd = 1e30, t_gemm = 1e30;
	for (int r = 0; r < reps; r++) {
		double t0 = qc_now();
		for (int l = 0; l < layers; l++)
			if ((rc = qc_layer_forward(m, &lw[l], x, lens, nseq)))
				die(rc);
		double t1 = qc_now(), tg = 0;
		for (int l = 0; l < layers; l++)
			tg += gemm_layer(shapes, T, xb, y, w);
		if (t1 - t0 < t_fwd)
			t_fwd = t1 - t0;
		if (tg < t_gemm)
			t_gemm = tg;
	}
	for (int l = 0; l < layers; l++)
		qc_layer_release(m, &lw[l]);
	free(lw);
	/* as the walker runs: load, forward, release one layer at a time (the
	 * model reuses the released layer's buffers for the next) */
	double t_stack = 1e30;
	for (int r = 0; r < reps; r++) {
		double t0 = qc_now();
		for (int l = 0; l < layers; l++) {
			qc_layer one;
			if ((rc = qc_model_load_layer(m, l, &one)) ||
			    (rc = qc_layer_forward(m, &one, x, lens, nseq)))
				die(rc);
			qc_layer_release(m, &one);
		}
		if (qc_now() - t0 < t_stack)
			t_stack = qc_now() - t0;
	}
	double flops = 0;
	for (int k = 0; k < 7; k++)
		flops += 2.0 * (double)T * (double)(shapes[k][0] * shapes[k][1]);
	flops *= layers;

	/* tokens/s through the whole stack of layers */
	printf("layers, FP32 weights:        %9.1f tokens/s  (%6.1f GFLOP/s of Linear work)\n",
	       (double)T / t_fwd, flops / t_fwd / 1e9);
	printf("layers incl. BF16 loading:   %9.1f tokens/s  (first loads: %.3f s per layer)\n",
	       (double)T / t_stack, t_load / layers);
	printf("OpenBLAS sgemm, same shapes: %9.1f tokens/s  (%6.1f GFLOP/s)\n", (double)T / t_gemm,
	       flops / t_gemm / 1e9);
	printf("ratio (ours / sgemm bound):  %9.1f %%   (%.1f %% incl. loading)\n",
	       100.0 * t_gemm / t_fwd, 100.0 * t_gemm / t_stack);

	if (vocab) {
		/* lm_head over one sequence: final norm + blocked BF16 -> FP32 rows + GEMM */
		float *logits = qk_alloc(kc, (size_t)(seq * vocab) * 4);
		float *wh = qk_alloc(kc, (size_t)(vocab * H) * 4);
		if (!logits || !wh)
			die(QC_ENOMEM);
		if ((rc = qc_model_logits(m, x, seq, logits)))   /* warm-up, fetches the head */
			die(rc);
		double t0 = qc_now();
		if ((rc = qc_model_logits(m, x, seq, logits)))
			die(rc);
		double th = qc_now() - t0;
		memset(wh, 0, (size_t)(vocab * H) * 4);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)seq, (int)vocab, (int)H, 1.0f, x,
		            (int)H, wh, (int)H, 0.0f, logits, (int)vocab);
		t0 = qc_now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)seq, (int)vocab, (int)H, 1.0f, x,
		            (int)H, wh, (int)H, 0.0f, logits, (int)vocab);
		double tg = qc_now() - t0;
		printf("lm_head (vocab %lld, BF16):  %9.1f tokens/s vs sgemm %9.1f tokens/s: %.1f %%\n",
		       (long long)vocab, (double)seq / th, (double)seq / tg, 100.0 * tg / th);
		qk_free(kc, logits);
		qk_free(kc, wh);
	}
	la = fopen("/proc/loadavg", "r");
	if (la) {
		if (fscanf(la, "%lf %lf %lf", &loadavg[0], &loadavg[1], &loadavg[2]) == 3)
			printf("load after: %.2f %.2f %.2f\n", loadavg[0], loadavg[1], loadavg[2]);
		fclose(la);
	}
	for (int k = 0; k < 7; k++)
		qk_free(kc, w[k]);
	qk_free(kc, y);
	qk_free(kc, xb);
	qk_free(kc, x);
	free(lens);
	qc_model_free(m);
	qk_ctx_free(kc);
	for (size_t i = 0; i < tb.n; i++) {
		free((void *)tb.t[i].name);
		free((void *)tb.t[i].data);
	}
	free(tb.t);
	return 0;
}
