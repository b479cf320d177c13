/*
 * bench_gptq.c - one decoder layer quantized with GPTQ the way qgptq does it
 * (the calibration walker in true-sequential order, one Hessian per point,
 * qc_gptq_run with the weights replaced in place), on a synthetic layer of
 * Llama-3.1-8B shape (hidden 4096, intermediate 14336, 32 heads, 8 KV heads,
 * head_dim 128; qc_synth statistics: heavy tails, outlier input channels)
 * over 8192 calibration tokens (4 sequences of 2048).
 *
 *   bench_gptq [-p preset] [-n sequences] [-s seq_len] [-j threads] [-c mse|minmax]
 *              [-a static|none] [-g group] [-K] [-E]
 *
 * -K: the walker keeps no down_proj inputs between the passes at DOWN (it
 * recomputes gate/up instead); by default it keeps as many as qgptq does
 * (at most the layer's FP32 weights in bytes).
 * -E: the error products on every row (qgptq --exact-errors), not on the
 * sample of rows qgptq measures by default.
 *
 * Prints the seconds of each phase (forward, Hessian accumulation,
 * factorization, errors of W and RTN, parameters and sweep), the layer's
 * time against its FLOP floor at the sgemm rate measured in the same run,
 * the peak RSS against the sum of what must be resident, and the layer's
 * err_out / err_rtn. Not a timed test: run it by hand (make bench) on a
 * quiet machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kernels.h"
#include "qc_config.h"
#include "qc_err.h"
#include "qc_gptq.h"
#include "qc_log.h"
#include "qc_model.h"
#include "qc_synth.h"
#include "qc_walk.h"

// ---------------------------------------------------------------- synthetic tensors by name

typedef struct table {
	qc_tensor *t;
	size_t n, cap;
	const qc_config *cfg;
	qc_synth_opts so;
	size_t bytes;
} table;

static void die(int rc)
{
	fprintf(stderr, "bench_gptq: %s\n", *qc_errmsg() ? qc_errmsg() : qc_strerror(rc));
	exit(1);
}

static int add(void *ctx, const char *name, int ndim, const int64_t *shape)
{
	table *tb = ctx;
	if (tb->n == tb->cap) {
		tb->cap = tb->cap ? 2 * tb->cap : 32;
		if (!(tb->t = realloc(tb->t, tb->cap * sizeof *tb->t)))
			return QC_ENOMEM;
	}
	qc_tensor *t = &tb->t[tb->n];
	memset(t, 0, sizeof *t);
	void *data;
	size_t nb;
	int rc = qc_synth_tensor(tb->cfg, &tb->so, name, ndim, shape, &data, &nb);
	if (rc)
		return rc;
	t->name = strdup(name);
	t->dtype = tb->so.dtype;
	t->ndim = ndim;
	memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
	t->data = data;
	t->nbytes = nb;
	tb->bytes += nb;
	tb->n++;
	return 0;
}

static int tb_get(void *ctx, const char *name, const qc_tensor **t)
{
	table *tb = ctx;
	for (size_t i = 0; i < tb->n; i++)
		if (strcmp(tb->t[i].name, name) == 0) {
			*t = &tb->t[i];
			return 0;
		}
	return qc_seterr(QC_ENOTFOUND, "no tensor '%s'", name);
}

// ---------------------------------------------------------------- the hooks (as in qgptq)

#define STAGE_ROWS 1024

typedef struct bench {
	qk_ctx *kc;
	qc_gptq *g;
	qc_qargs a;
	int64_t T;
	float *H, *stage;
	int64_t Hn, staged;
	void *codes[QC_LIN_COUNT];
	float *scales[QC_LIN_COUNT];
	double t_hess, t_update, t_factor, t_params, t_errors, t_sweep;
	double c_hess, c_update;      /* CPU seconds (every thread) of the same */
	double c_factor, c_params, c_errors, c_sweep;
	double ratio_sum, flops_sweep, flops_err;
	int exact_errors;           /* -E: every row's error products */
	int n_ratio;
	size_t codes_bytes;
} bench;

/* CPU seconds of the process so far, every thread */
static double cpu_now(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec * 1e-6;
}

static int flush(bench *B)
{
	int rc = B->staged ? qk_hessian_accum(B->kc, B->H, B->stage, B->staged, B->Hn,
	                                      2.0f / (float)B->T) : 0;
	B->staged = 0;
	return rc;
}

static int on_input(void *ctx, int layer, qc_walk_point p, const float *x, int64_t row0,
                    int64_t rows, int64_t cols)
{
	bench *B = ctx;
	double t0 = qc_now(), c0 = cpu_now();
	int rc = 0;
	if (row0 == 0) {
		/* kernel memory, as qgptq holds it (qc_gptqm) */
		qk_free(B->kc, B->H);
		if (!(B->H = qk_alloc(B->kc, (size_t)(cols * cols) * sizeof *B->H)))
			return QC_ENOMEM;
		if ((rc = qk_zero(B->kc, B->H, (size_t)(cols * cols) * sizeof *B->H)))
			return rc;
		B->Hn = cols;
		B->staged = 0;
	}
	if (p != QC_WALK_DOWN) {
		rc = qk_hessian_accum(B->kc, B->H, x, rows, cols, 2.0f / (float)B->T);
	} else {
		while (rc == 0 && rows > 0) {
			int64_t k = STAGE_ROWS - B->staged < rows ? STAGE_ROWS - B->staged : rows;
			rc = qk_copy(B->kc, B->stage + B->staged * cols, x, (size_t)(k * cols) * sizeof *x);
			B->staged += k;
			x += k * cols;
			rows -= k;
			if (rc == 0 && B->staged == STAGE_ROWS)
				rc = flush(B);
		}
	}
	B->t_hess += qc_now() - t0;
	B->c_hess += cpu_now() - c0;
	return rc;
}

static int on_update(void *ctx, int layer, qc_walk_point p, qc_layer *lw)
{
	bench *B = ctx;
	double t0 = qc_now(), c0 = cpu_now();
	int rc = p == QC_WALK_DOWN ? flush(B) : 0;
	B->t_hess += qc_now() - t0;
	B->c_hess += cpu_now() - c0;
	t0 = qc_now();
	c0 = cpu_now();
	qc_linear first;
	int count;
	qc_walk_point_linears(p, &first, &count);
	qc_gptq_part parts[3];
	int64_t R = 0, n = lw->in[first];
	for (int k = 0; rc == 0 && k < count; k++) {
		int l = first + k;
		int64_t rows = lw->out[l], ng = qc_qgroups(&B->a, n);
		B->codes[l] = malloc((size_t)(rows * n));
		B->scales[l] = malloc((size_t)(rows * ng) * sizeof(float));
		if (!B->codes[l] || !B->scales[l])
			return qc_seterr(QC_ENOMEM, "out of memory");
		B->codes_bytes += (size_t)(rows * n) + (size_t)(rows * ng) * 2;
		parts[k] = (qc_gptq_part){ .name = qc_linear_path(l), .W = lw->w[l], .rows = rows,
		                           .codes = B->codes[l], .scales = B->scales[l], .deq = lw->w[l] };
		R += rows;
	}
	qc_gptq_info info;
	if (rc == 0)
		rc = qc_gptq_run(B->g, &B->a, B->H, n, parts, count, &info);
	qk_free(B->kc, B->H);
	B->H = NULL;
	if (rc)
		return rc;
	B->t_factor += info.t_factor;
	B->t_params += info.t_params;
	B->t_errors += info.t_errors;
	B->t_sweep += info.t_sweep;
	B->c_factor += info.c_factor;
	B->c_params += info.c_params;
	B->c_errors += info.c_errors;
	B->c_sweep += info.c_sweep;
	for (int k = 0; k < count; k++) {
		B->ratio_sum += parts[k].err_out / parts[k].err_rtn;
		B->n_ratio++;
		printf("  %-18s [%5lld, %5lld]  err_out %.5f  err_rtn %.5f  ratio %.3f  err_w %.5f\n",
		       parts[k].name, (long long)parts[k].rows, (long long)n, parts[k].err_out,
		       parts[k].err_rtn, parts[k].err_out / parts[k].err_rtn, parts[k].err_w);
	}
	printf("  %-18s factor %.2f s, parameters %.2f s, errors %.2f s, sweep %.2f s, damp %g\n",
	       qc_walk_point_name(p), info.t_factor, info.t_params, info.t_errors, info.t_sweep,
	       info.damp);
	/* the lazy updates: 2 R b (n - end of block) per block of 128 */
	for (int64_t i1 = 0; i1 < n; i1 += 128) {
		int64_t i2 = i1 + 128 < n ? i1 + 128 : n;
		B->flops_sweep += 2.0 * (double)R * (double)(i2 - i1) * (double)(n - i2);
	}
	/* W V and (W - Q_rtn) V on the rows measured */
	for (int k = 0; k < count; k++)
		B->flops_err += 2.0 * (double)qc_gptq_err_rows(parts[k].rows, n, B->exact_errors) *
		                (double)n * (double)n;
	B->t_update += qc_now() - t0;
	B->c_update += cpu_now() - c0;
	return 0;
}

// ---------------------------------------------------------------- main

/* flop/s of the fastest of three runs; *cpu_rate: its flops per CPU second
 * (every thread), the rate that time shared with other processes leaves
 * nearly unchanged */
static double sgemm_rate(qk_ctx *kc, int64_t M, int64_t N, int64_t K, double *cpu_rate)
{
	float *a = malloc((size_t)(M * K) * 4), *b = malloc((size_t)(K * N) * 4);
	float *c = malloc((size_t)(M * N) * 4);
	if (!a || !b || !c)
		die(QC_ENOMEM);
	for (int64_t i = 0; i < M * K; i++)
		a[i] = (float)(i % 97) * 0.01f;
	for (int64_t i = 0; i < K * N; i++)
		b[i] = (float)(i % 89) * 0.01f;
	double best = 1e30, best_cpu = 1e30;
	for (int r = 0; r < 3; r++) {
		double t0 = qc_now(), c0 = cpu_now();
		if (qk_gemm(kc, 0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N))
			die(QC_EINTERNAL);
		if (qc_now() - t0 < best)
			best = qc_now() - t0;
		if (cpu_now() - c0 < best_cpu)
			best_cpu = cpu_now() - c0;
	}
	*cpu_rate = 2.0 * (double)M * (double)N * (double)K / best_cpu;
	free(a);
	free(b);
	free(c);
	return 2.0 * (double)M * (double)N * (double)K / best;
}

/* peak resident set so far, bytes */
static double peak_rss(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss * 1024.0;
}

int main(int argc, char **argv)
{
	const char *preset = "llama-3.1-8b", *clip = "mse", *actorder = "static";
	int64_t nseq = 4, seq = 2048, group = 128;
	int threads = 0, c, no_keep = 0, exact_errors = 0;
	while ((c = getopt(argc, argv, "p:n:s:j:c:a:g:KE")) != -1) {
		switch (c) {
		case 'p': preset = optarg; break;
		case 'n': nseq = atoll(optarg); break;
		case 's': seq = atoll(optarg); break;
		case 'j': threads = atoi(optarg); break;
		case 'c': clip = optarg; break;
		case 'a': actorder = optarg; break;
		case 'g': group = atoll(optarg); break;
		case 'K': no_keep = 1; break;
		case 'E': exact_errors = 1; break;
		default:
			fprintf(stderr, "usage: bench_gptq [-p preset] [-n sequences] [-s seq_len] "
			                "[-j threads] [-c mse|minmax] [-a static|none] [-g group] [-K] [-E]\n");
			return 2;
		}
	}
	if (nseq < 1 || seq < 1 || threads < 0 || (group != -1 && group < 1)) {
		fprintf(stderr, "bench_gptq: invalid arguments\n");
		return 2;
	}
	qc_config cfg;
	int rc;
	if ((rc = qc_synth_preset(preset, &cfg)))
		die(rc);
	cfg.num_hidden_layers = 1;
	cfg.vocab_size = 4096;     /* the embedding is not part of the layer's work */
	cfg.bos_token_id = -1;
	cfg.n_eos = 0;
	cfg.tie_word_embeddings = 1;
	if ((rc = qc_config_build(&cfg)))
		die(rc);
	const int64_t T = nseq * seq, h = cfg.hidden_size, im = cfg.intermediate_size;
	const int64_t qd = cfg.num_attention_heads * cfg.head_dim;
	const int64_t kvd = cfg.num_key_value_heads * cfg.head_dim;

	/* the layer's weights, made by qc_synth, in memory */
	table tb = { 0 };
	tb.cfg = &cfg;
	qc_synth_opts_default(&tb.so);
	tb.so.seed = 7;
	tb.so.threads = threads;
	double t0 = qc_now();
	if ((rc = qc_config_each_tensor(&cfg, add, &tb)))
		die(rc);
	printf("model: %s layer (hidden %lld, intermediate %lld, heads %lld/%lld, head_dim %lld), "
	       "BF16 weights made in %.1f s\n", preset, (long long)h, (long long)im,
	       (long long)cfg.num_attention_heads, (long long)cfg.num_key_value_heads,
	       (long long)cfg.head_dim, qc_now() - t0);
	qc_wsrc src = { &tb, tb_get, NULL };

	qk_ctx *kc;
	if ((rc = qk_ctx_new(&kc, QK_DEVICE_CPU, threads)))
		die(rc);
	qc_model *m;
	if ((rc = qc_model_new(&m, &cfg, &src, NULL, kc, NULL)))
		die(rc);
	bench B = { 0 };
	B.kc = kc;
	B.exact_errors = exact_errors;
	B.T = T;
	B.a = (qc_qargs){ 0, 4, 1, group > 0 ? QC_QS_GROUP : QC_QS_CHANNEL, group > 0 ? group : 0,
	                  QC_DT_BF16, QC_DT_F32 };
	qc_gptq_opts go;
	qc_gptq_opts_default(&go);
	go.exact_errors = exact_errors;
	qc_clip_opts_default(&go.clip, strcmp(clip, "minmax") == 0 ? QC_CLIP_MINMAX : QC_CLIP_MSE);
	if (qc_gptq_actorder_parse(actorder, &go.actorder))
		die(QC_EINVAL);
	if ((rc = qc_gptq_new(&B.g, kc, &go)))
		die(rc);
	if (!(B.stage = qk_alloc(kc, (size_t)(STAGE_ROWS * im) * sizeof *B.stage)))
		die(QC_ENOMEM);

	/* calibration tokens: uniform random ids */
	int32_t *ids = malloc((size_t)T * sizeof *ids), *lens = malloc((size_t)nseq * sizeof *lens);
	uint64_t s = 0x9E3779B97F4A7C15ull;
	for (int64_t i = 0; i < T; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		ids[i] = (int32_t)(s % (uint64_t)cfg.vocab_size);
	}
	for (int64_t i = 0; i < nseq; i++)
		lens[i] = (int32_t)seq;
	double loadavg[3] = { 0 };
	FILE *la = fopen("/proc/loadavg", "r");
	if (la) {
		if (fscanf(la, "%lf %lf %lf", &loadavg[0], &loadavg[1], &loadavg[2]) != 3)
			loadavg[0] = -1;
		fclose(la);
	}
	printf("tokens: %lld sequences x %lld = %lld; W4 %s, actorder %s, clip %s; threads %d; "
	       "load before %.2f %.2f %.2f\n", (long long)nseq, (long long)seq, (long long)T,
	       group > 0 ? "groups of 128" : "per channel", actorder, clip, qk_ctx_threads(kc),
	       loadavg[0], loadavg[1], loadavg[2]);

	/* the sgemm rate on the shape of the layer's largest Linear over one
	 * walker chunk (2048 tokens), best of three, before the layer */
	double cpu_rate;
	double rate = sgemm_rate(kc, 2048, im, h, &cpu_rate);
	double rss0 = peak_rss();

	/* the DOWN inputs kept as qgptq keeps them (qc_qrun's memory plan): at
	 * most the layer's FP32 weights in bytes, whole chunks of 2048 tokens */
	double params = (double)h * (qd + 2 * kvd) + (double)qd * h + 3.0 * h * im;
	double keep = no_keep ? 0 : (double)T * im * 4 < params * 4 ? (double)T * im * 4 : params * 4;
	int64_t kept_tokens = 0;
	for (int64_t r = 0; r < T; r += 2048) {
		int64_t n = T - r < 2048 ? T - r : 2048;
		if ((double)(kept_tokens + n) * im * 4 > keep)
			break;
		kept_tokens += n;
	}
	qc_walk *w;
	qc_walk_opts wo = { .act_dtype = QC_DT_F32, .keep_down = (uint64_t)keep };
	if ((rc = qc_walk_new(&w, m, ids, seq, lens, nseq, &wo)))
		die(rc);
	unsigned all = QC_WALK_BIT(QC_WALK_QKV) | QC_WALK_BIT(QC_WALK_O) |
	               QC_WALK_BIT(QC_WALK_GATE_UP) | QC_WALK_BIT(QC_WALK_DOWN);
	qc_walk_hooks hk = { .ctx = &B, .observe = all, .update = all, .on_input = on_input,
	                     .on_update = on_update, .same_inputs = QC_WALK_BIT(QC_WALK_DOWN) };
	t0 = qc_now();
	double c0 = cpu_now();
	if ((rc = qc_walk_layer(w, &hk)))
		die(rc);
	double t_layer = qc_now() - t0, c_layer = cpu_now() - c0;
	double rss1 = peak_rss();

	/* the FLOP floor: what the job cannot do without */
	double f_fwd = 2.0 * (double)T * params + 2.0 * (double)nseq * (double)seq * seq * qd;
	/* syrk: T n (n + 1) for the inputs of q/k/v, o, gate/up and down */
	double f_hess = (double)T * (2.0 * h * (h + 1) + (double)qd * (qd + 1) + (double)im * (im + 1));
	double f_fact = 3.0 * h * (double)h * h / 3 + (double)im * im * im / 3;
	double f_core = f_fact + f_hess + f_fwd + B.flops_sweep, f_all = f_core + B.flops_err;
	/* what the walker computes on top: true-sequential order runs gate/up
	 * twice (once to observe down_proj's inputs, once more with down_proj
	 * quantized) for the tokens whose down_proj inputs it does not keep */
	double f_again = 2.0 * (double)(T - kept_tokens) * 2.0 * h * im;
	printf("down_proj inputs kept for %lld of %lld tokens (%.0f MB)\n", (long long)kept_tokens,
	       (long long)T, (double)kept_tokens * im * 4 / 1e6);
	double t_fwd = t_layer - B.t_hess - B.t_update;
	double t_other = B.t_update - B.t_factor - B.t_params - B.t_errors - B.t_sweep;
	printf("\nphase                      seconds    GFLOP    GFLOP/s\n");
	printf("forward (walker)          %8.2f %8.0f %9.1f   (each Linear once + attention; the walker\n"
	       "                                                 recomputes gate/up once more)\n",
	       t_fwd, f_fwd / 1e9, f_fwd / t_fwd / 1e9);
	printf("Hessian accumulation      %8.2f %8.0f %9.1f\n", B.t_hess, f_hess / 1e9,
	       f_hess / B.t_hess / 1e9);
	printf("factorization             %8.2f %8.0f %9.1f   (dead inputs, order, damping, Cholesky)\n",
	       B.t_factor, f_fact / 1e9, f_fact / B.t_factor / 1e9);
	printf("parameters (clip search)  %8.2f\n", B.t_params);
	printf("GPTQ sweep                %8.2f %8.0f %9.1f   (lazy updates and the rest)\n",
	       B.t_sweep, B.flops_sweep / 1e9, B.flops_sweep / B.t_sweep / 1e9);
	printf("errors of W and RTN       %8.2f %8.0f %9.1f   (err_out's denominator, err_rtn)\n",
	       B.t_errors, B.flops_err / 1e9, B.flops_err / B.t_errors / 1e9);
	printf("other (allocation, codes) %8.2f\n", t_other);
	printf("whole layer               %8.2f %8.0f %9.1f\n", t_layer, f_all / 1e9,
	       f_all / t_layer / 1e9);
	printf("\nsgemm rate measured in this run ([2048 x %lld] x [%lld x %lld]): %.1f GFLOP/s\n",
	       (long long)h, (long long)h, (long long)im, rate / 1e9);
	printf("FLOP floor at that rate: %.2f s (forward, Hessian, factorization, sweep), "
	       "%.2f s with the error terms\n", f_core / rate, f_all / rate);
	printf("layer time / floor:      %.2f x; %.2f x counting the walker's second gate/up; "
	       "%.2f x counting both that and the error terms\n", t_layer / (f_core / rate),
	       t_layer / ((f_core + f_again) / rate), t_layer / ((f_all + f_again) / rate));
	/* the same in CPU seconds (every thread), against sgemm's flops per CPU
	 * second: what another process's share of the cores changes least */
	printf("\nCPU seconds: forward %.1f, Hessian %.1f, solver %.1f (factorization %.1f, clip "
	       "search %.1f, sweep %.1f, errors %.1f), layer %.1f; sgemm %.1f GFLOP per CPU second\n",
	       c_layer - B.c_hess - B.c_update, B.c_hess, B.c_update, B.c_factor, B.c_params,
	       B.c_sweep, B.c_errors, c_layer, cpu_rate / 1e9);
	printf("CPU / floor CPU by phase: forward %.2f x (%.2f x of what the walker computes), "
	       "Hessian %.2f x, factorization %.2f x, sweep %.2f x, errors %.2f x\n",
	       (c_layer - B.c_hess - B.c_update) / (f_fwd / cpu_rate),
	       (c_layer - B.c_hess - B.c_update) / ((f_fwd + f_again) / cpu_rate),
	       B.c_hess / (f_hess / cpu_rate), B.c_factor / (f_fact / cpu_rate),
	       B.c_sweep / (B.flops_sweep / cpu_rate), B.c_errors / (B.flops_err / cpu_rate));
	printf("layer CPU / floor CPU:   %.2f x; %.2f x counting the walker's second gate/up; "
	       "%.2f x counting both that and the error terms\n", c_layer / (f_core / cpu_rate),
	       c_layer / ((f_core + f_again) / cpu_rate), c_layer / ((f_all + f_again) / cpu_rate));

	/* memory: what the job must hold at its peak (down_proj's solve) */
	double mb = 1e6;
	double src_w = (double)tb.bytes;
	double fp32 = params * 4;
	double acts = (double)T * (h + qd) * 4;          /* x and the attention output (FP32) */
	qc_model_opts mo;
	qc_model_opts_default(&mo);
	int64_t ct = T < 2048 ? T : 2048;
	double scratch = (double)ct * (3 * h + 3 * qd) * 4 + (double)mo.mlp_rows * 2 * im * 4;
	double hs_down = (double)im * im * 4 + (double)h * im * 4;
	double hs_gu = (double)h * h * 4 + 2.0 * im * h * 4;
	double solve = hs_down > hs_gu ? hs_down : hs_gu;
	double kept = (double)kept_tokens * im * 4;
	double need = src_w + fp32 + acts + kept + scratch + solve + (double)B.codes_bytes;
	printf("\npeak RSS %.0f MB (%.0f MB before the layer); must be resident %.0f MB:\n"
	       "  BF16 source weights %.0f, FP32 layer %.0f, activations %.0f, kept down_proj inputs "
	       "%.0f,\n  chunk scratch %.0f, largest Hessian with its solve %.0f, codes and scales %.0f\n",
	       rss1 / mb, rss0 / mb, need / mb, src_w / mb, fp32 / mb, acts / mb, kept / mb, scratch / mb,
	       solve / mb, B.codes_bytes / mb);
	printf("peak RSS / must be resident: %.2f\n", rss1 / need);
	printf("\nmean err_out / err_rtn over the layer's %d Linears: %.4f\n", B.n_ratio,
	       B.ratio_sum / B.n_ratio);
	la = fopen("/proc/loadavg", "r");
	if (la) {
		if (fscanf(la, "%lf %lf %lf", &loadavg[0], &loadavg[1], &loadavg[2]) == 3)
			printf("load after: %.2f %.2f %.2f\n", loadavg[0], loadavg[1], loadavg[2]);
		fclose(la);
	}
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		free(B.codes[l]);
		free(B.scales[l]);
	}
	qk_free(kc, B.stage);
	free(ids);
	free(lens);
	qc_walk_free(w);
	qc_gptq_free(B.g);
	qc_model_free(m);
	qk_ctx_free(kc);
	for (size_t i = 0; i < tb.n; i++) {
		free((void *)tb.t[i].name);
		free((void *)tb.t[i].data);
	}
	free(tb.t);
	qc_config_free(&cfg);
	return 0;
}
