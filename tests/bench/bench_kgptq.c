/*
 * bench_kgptq.c - GPTQ on ggml's K-quant grids (qc_kgptq.h): the run's
 * FP32 solver on the kernels (qc_kgptq_run) against the plain double
 * reference (qc_kgptq_ref), on one synthetic Linear of Llama-3.2-1B's
 * q_proj shape (2048 x 2048, qc_synth statistics) with the Hessian of
 * synthetic correlated, heavy-tailed inputs; then the run's solver alone on
 * the whole layer's Linears as qgptq groups them (q/k/v stacked, o,
 * gate/up stacked, down).
 *
 *   bench_kgptq [-t q4_k|q5_k|q6_k] [-j threads] [-R]
 *
 * -R skips the reference (minutes at 2048 columns). Prints seconds, the
 * run's phases and the err_out of both (they agree to FP32 rounding). Not a
 * timed test: run it by hand (make bench) on a quiet machine.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels.h"
#include "qc_config.h"
#include "qc_err.h"
#include "qc_ggml.h"
#include "qc_kgptq.h"
#include "qc_log.h"
#include "qc_synth.h"

static void die(int rc)
{
	fprintf(stderr, "bench_kgptq: %s\n", *qc_errmsg() ? qc_errmsg() : qc_strerror(rc));
	exit(1);
}

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return (double)(rs >> 11) / 9007199254740992.0;
}

/* H [n, n] = 2 X^T X / T for T tokens: heavy tails, neighbours mixed, a
 * few outlier channels (full symmetric, double) */
static double *hessian(int64_t n, int64_t T)
{
	double *H = calloc((size_t)(n * n), sizeof *H), *x = malloc((size_t)n * sizeof *x);
	double *z = malloc((size_t)n * sizeof *z);
	if (!H || !x || !z)
		die(QC_ENOMEM);
	for (int64_t t = 0; t < T; t++) {
		for (int64_t i = 0; i < n; i++)
			z[i] = sqrt(-2 * log(urand() + 1e-12)) * cos(6.283185307179586 * urand()) /
			       sqrt(urand() + 0.05);
		for (int64_t i = 0; i < n; i++)
			x[i] = (z[i] + 0.5 * z[(i + 1) % n]) * (i % 512 == 7 ? 30 : 1);
		for (int64_t i = 0; i < n; i++)
			for (int64_t j = i; j < n; j++)
				H[i * n + j] += 2 * x[i] * x[j] / (double)T;
	}
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < i; j++)
			H[i * n + j] = H[j * n + i];
	free(x);
	free(z);
	return H;
}

static float *weights(const qc_config *c, qc_synth_opts *so, int layer, qc_linear l, int64_t *rows,
                      int64_t *cols)
{
	char name[128];
	int64_t sh[2];
	qc_linear_name(name, sizeof name, layer, l, "weight");
	qc_linear_shape(c, l, sh);
	void *data;
	size_t nb;
	int rc = qc_synth_tensor(c, so, name, 2, sh, &data, &nb);
	if (rc)
		die(rc);
	*rows = sh[0];
	*cols = sh[1];
	return data;
}

/* one run of the kernels' solver on parts sharing H (consumed copy) */
static double run(qk_ctx *kc, const double *Hd, int64_t n, float **W, const int64_t *rows,
                  int np, int type, double *err)
{
	float *H = qk_alloc(kc, (size_t)(n * n) * sizeof *H), *hf = malloc((size_t)(n * n) * 4);
	qc_kgptq_part parts[3];
	if (!H || !hf)
		die(QC_ENOMEM);
	for (int64_t i = 0; i < n * n; i++)
		hf[i] = (float)Hd[i];
	int rc = qk_upload(kc, H, hf, (size_t)(n * n) * sizeof *H);
	for (int p = 0; p < np && !rc; p++) {
		size_t rb;
		qc_ggml_row_bytes(type, n, &rb);
		float *wk = qk_alloc(kc, (size_t)(rows[p] * n) * sizeof *wk);
		parts[p] = (qc_kgptq_part){ .name = "bench", .type = type, .W = wk, .rows = rows[p],
		                            .blocks = malloc(rb * (size_t)rows[p]), .deq = wk };
		if (!wk || !parts[p].blocks)
			die(QC_ENOMEM);
		rc = qk_upload(kc, wk, W[p], (size_t)(rows[p] * n) * sizeof *wk);
	}
	qc_kgptq_info info;
	double t0 = qc_now();
	if (!rc)
		rc = qc_kgptq_run(kc, H, n, 0.01, 1.0, 1, 128, parts, np, &info);
	double t = qc_now() - t0;
	if (rc)
		die(rc);
	printf("    run: %.2f s (factor %.2f, grid %.2f, errors %.2f, sweep %.2f)", t, info.t_factor,
	       info.t_grid, info.t_errors, info.t_sweep);
	for (int p = 0; p < np; p++) {
		printf("%s err_out %.5f (rtn %.5f)", p ? "," : "", parts[p].err_out, parts[p].err_rtn);
		if (err)
			*err = parts[p].err_out;
		qk_free(kc, (void *)parts[p].W);
		free(parts[p].blocks);
	}
	printf("\n");
	qk_free(kc, H);
	free(hf);
	return t;
}

int main(int argc, char **argv)
{
	int type = QC_GGML_Q4_K, threads = (int)sysconf(_SC_NPROCESSORS_ONLN), ref = 1, c;
	while ((c = getopt(argc, argv, "t:j:R")) != -1) {
		qc_ggml_type t;
		if (c == 't' && qc_ggml_type_parse(optarg, &t) == 0 && qc_ggml_k_subblocks(t))
			type = t;
		else if (c == 'j')
			threads = atoi(optarg);
		else if (c == 'R')
			ref = 0;
		else {
			fprintf(stderr, "usage: bench_kgptq [-t q4_k|q5_k|q6_k] [-j threads] [-R]\n");
			return 2;
		}
	}
	qc_config cfg;
	memset(&cfg, 0, sizeof cfg);
	int rc = qc_synth_preset("llama-3.2-1b", &cfg);
	if (rc || (rc = qc_config_build(&cfg)))
		die(rc);
	qc_synth_opts so;
	qc_synth_opts_default(&so);
	so.dtype = QC_DT_F32;
	qk_ctx *kc;
	if ((rc = qk_ctx_new(&kc, QK_DEVICE_CPU, threads)))
		die(rc);
	printf("%s, %d threads\n", qc_ggml_type_name(type), threads);
	int64_t h = cfg.hidden_size, in = cfg.intermediate_size;
	double *Hh = hessian(h, 1024);
	int64_t r, n;
	float *Wq = weights(&cfg, &so, 0, QC_LIN_Q, &r, &n);
	printf("q_proj [%lld, %lld]:\n", (long long)r, (long long)n);
	double er = 0, eref = 0;
	double tr = run(kc, Hh, n, &Wq, &r, 1, type, &er);
	if (ref) {
		size_t rb;
		qc_ggml_row_bytes(type, n, &rb);
		void *blk = malloc(rb * (size_t)r);
		double t0 = qc_now();
		if ((rc = qc_kgptq_ref(type, Wq, r, n, Hh, 0.01, 1, blk, NULL, &eref)))
			die(rc);
		double t = qc_now() - t0;
		printf("    ref: %.2f s err_out %.5f; run %.1fx faster, err_out ratio %.6f\n", t, eref,
		       t / tr, er / eref);
		free(blk);
	}
	/* the layer as qgptq groups it */
	double *Hi = hessian(in, 512);
	double total = 0;
	static const struct { const char *name; qc_linear l[3]; int np; } pts[] = {
		{ "qkv", { QC_LIN_Q, QC_LIN_K, QC_LIN_V }, 3 }, { "o", { QC_LIN_O }, 1 },
		{ "gate_up", { QC_LIN_GATE, QC_LIN_UP }, 2 }, { "down", { QC_LIN_DOWN }, 1 },
	};
	for (int p = 0; p < 4; p++) {
		float *W[3];
		int64_t rows[3], cols = 0;
		for (int k = 0; k < pts[p].np; k++)
			W[k] = weights(&cfg, &so, 0, pts[p].l[k], &rows[k], &cols);
		printf("layer 0 %s:\n", pts[p].name);
		total += run(kc, cols == in ? Hi : Hh, cols, W, rows, pts[p].np, type, NULL);
		for (int k = 0; k < pts[p].np; k++)
			free(W[k]);
	}
	printf("a Llama-3.2-1B layer's Linears: %.1f s\n", total);
	free(Wq);
	free(Hh);
	free(Hi);
	qk_ctx_free(kc);
	qc_config_free(&cfg);
	return 0;
}
