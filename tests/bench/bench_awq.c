/*
 * bench_awq.c - one decoder layer quantized with AWQ the way qawq does it
 * (the run driver over a checkpoint, the calibration walker in
 * true-sequential order, the scale search at every smoothing point, the
 * clipping search, the codes written), on a synthetic layer of
 * Llama-3.1-8B shape (hidden 4096, intermediate 14336, 32 heads, 8 KV heads,
 * head_dim 128; qc_synth statistics: heavy tails, outlier input channels)
 * over 8192 calibration tokens (4 sequences of 2048), W4A16, groups of 128.
 *
 *   bench_awq [-p preset] [-n sequences] [-s seq_len] [-j threads]
 *             [-L loss_tokens] [-g group] [-d dir]
 *
 * The one-layer checkpoint (vocabulary cut to 4096: the embedding is not the
 * layer's work) and the token set are written to DIR (default
 * $TMPDIR/qbench-awq) once and reused; the output goes to DIR/out. Each
 * step runs in its own process, so that the run's peak RSS is its own.
 * Printed:
 *  - each Linear's err_out, err_rtn and their ratio, each point's ratio;
 *  - the run's wall time, the method's share (the report's seconds) and
 *    the rest (the walker's forward passes, reading and writing);
 *  - the FLOP floor: the grid's forward passes of the loss blocks over the
 *    loss sample (q/k/v/o and attention, o alone when v -> o is searched,
 *    the MLP, down alone: 2 N params per block, 2 L^2 q_dim per sampled
 *    sequence) and the clipping search (2 n rows cols per step, 10 steps,
 *    every Linear but q and k), at the sgemm rate measured in the same run
 *    (best of the rates before and after);
 *  - peak RSS (the child's) against what must be resident at the peak: the
 *    FP32 layer and the codes written so far, the walker's activations,
 *    attention outputs and chunk scratch, the model's scratch for a chunk,
 *    and the method's samples, candidate q/k/v, loss block outputs and
 *    block buffers.
 * Not a timed test: run it by hand (make bench) on a quiet machine.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels.h"
#include "qc_awq.h"
#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_err.h"
#include "qc_io.h"
#include "qc_log.h"
#include "qc_synth.h"
#include "qc_tokset.h"

static void die(int rc)
{
	fprintf(stderr, "bench_awq: %s\n", *qc_errmsg() ? qc_errmsg() : qc_strerror(rc));
	exit(1);
}
#define TRY(x) do { int rc_ = (x); if (rc_) die(rc_); } while (0)

typedef struct bench {
	const char *preset;
	int64_t nseq, len, loss, group;
	int threads;
	char dir[1024], model[1100], tokens[1100], out[1100], report[1100];
	qc_config cfg;
} bench;

static void make_model(bench *B)
{
	qc_config cfg;
	TRY(qc_synth_preset(B->preset, &cfg));
	cfg.num_hidden_layers = 1;
	cfg.vocab_size = 4096;
	cfg.bos_token_id = 1;
	cfg.eos_token_ids[0] = 2;
	cfg.n_eos = 1;
	TRY(qc_config_build(&cfg));
	qc_synth_opts so;
	qc_synth_opts_default(&so);
	so.seed = 8;
	qc_ckw_opts wo = { 0 };
	wo.n_shards = 1;
	qc_ckpt_writer *w;
	TRY(qc_ckw_open(&w, B->model, &wo));
	char *js;
	size_t jl;
	TRY(qc_config_dump(&cfg, &js, &jl));
	TRY(qc_ckw_add_file(w, "config.json", js, jl));
	free(js);
	TRY(qc_synth_write(&cfg, &so, w, NULL, NULL));
	TRY(qc_ckw_close(w));
	int32_t *ids = malloc(sizeof *ids * (size_t)(B->nseq * B->len));
	int32_t *lens = malloc(sizeof *lens * (size_t)B->nseq);
	for (int64_t i = 0; i < B->nseq * B->len; i++)
		ids[i] = (int32_t)((i * 2654435761u) % (uint64_t)cfg.vocab_size);
	for (int64_t i = 0; i < B->nseq; i++)
		lens[i] = (int32_t)B->len;
	qc_tokset_spec sp = { 0 };
	sp.n = B->nseq;
	sp.l = B->len;
	sp.ids = ids;
	sp.lengths = lens;
	sp.vocab_size = cfg.vocab_size;
	sp.bos_id = -1;
	sp.eos_id = -1;
	sp.sources = "[]";
	sp.options = "{}";
	TRY(qc_tokset_save(&sp, B->tokens));
	free(ids);
	free(lens);
	qc_config_free(&cfg);
}

static double sgemm_rate(int threads, int64_t M, int64_t N, int64_t K)
{
	qk_ctx *kc;
	TRY(qk_ctx_new(&kc, QK_DEVICE_CPU, threads));
	float *a = malloc((size_t)(M * K) * 4), *b = malloc((size_t)(K * N) * 4);
	float *c = malloc((size_t)(M * N) * 4);
	if (!a || !b || !c)
		die(QC_ENOMEM);
	for (int64_t i = 0; i < M * K; i++)
		a[i] = (float)(i % 97) * 0.01f;
	for (int64_t i = 0; i < K * N; i++)
		b[i] = (float)(i % 89) * 0.01f;
	double best = 1e30;
	for (int r = 0; r < 3; r++) {
		double t0 = qc_now();
		TRY(qk_gemm(kc, 0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N));
		if (qc_now() - t0 < best)
			best = qc_now() - t0;
	}
	free(a);
	free(b);
	free(c);
	qk_ctx_free(kc);
	return 2.0 * (double)M * (double)N * (double)K / best;
}

static void run_awq(bench *B)
{
	qc_log_set_level(QC_LOG_QUIET);
	qc_rmtree(B->out);
	qc_awq_opts o = { .scheme = "w4a16", .group = B->group, .pow2 = -1, .loss_tokens = B->loss };
	qc_gptq_opts_default(&o.go);
	qc_awq *st;
	qc_qmethod m;
	TRY(qc_awq_method(&st, &m, &o));
	qc_qrun_opts ro = { .model = B->model, .out = B->out, .calib = B->tokens,
	                    .report = B->report, .threads = B->threads, .force = 1 };
	TRY(qc_qrun_run(&ro, &m));
	qc_awq_free(st);
}

/* Run fn in a child process; its wall time, and its rusage into ru. */
static double in_child(void (*fn)(bench *), bench *B, struct rusage *ru)
{
	fflush(stdout);
	double t0 = qc_now();
	pid_t pid = fork();
	if (pid < 0) {
		perror("bench_awq: fork");
		exit(1);
	}
	if (pid == 0) {
		fn(B);
		_exit(0);
	}
	int status;
	struct rusage r;
	if (wait4(pid, &status, 0, &r) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "bench_awq: the child failed\n");
		exit(1);
	}
	if (ru)
		*ru = r;
	return qc_now() - t0;
}

int main(int argc, char **argv)
{
	bench B = { .preset = "llama-3.1-8b", .nseq = 4, .len = 2048, .loss = 0, .group = 128 };
	int c;
	snprintf(B.dir, sizeof B.dir, "%s/qbench-awq", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	while ((c = getopt(argc, argv, "p:n:s:j:L:g:d:")) != -1) {
		switch (c) {
		case 'p': B.preset = optarg; break;
		case 'n': B.nseq = atoll(optarg); break;
		case 's': B.len = atoll(optarg); break;
		case 'j': B.threads = atoi(optarg); break;
		case 'L': B.loss = atoll(optarg); break;
		case 'g': B.group = atoll(optarg); break;
		case 'd': snprintf(B.dir, sizeof B.dir, "%s", optarg); break;
		default:
			fprintf(stderr, "usage: bench_awq [-p preset] [-n sequences] [-s seq_len] "
			        "[-j threads] [-L loss_tokens] [-g group] [-d dir]\n");
			return 2;
		}
	}
	qc_log_init("bench_awq", QC_LOG_QUIET);
	snprintf(B.model, sizeof B.model, "%s/%s-1", B.dir, B.preset);
	snprintf(B.tokens, sizeof B.tokens, "%s/tokens-%lldx%lld.st", B.dir, (long long)B.nseq,
	         (long long)B.len);
	snprintf(B.out, sizeof B.out, "%s/out", B.dir);
	snprintf(B.report, sizeof B.report, "%s/report.jsonl", B.dir);
	mkdir(B.dir, 0777);
	struct stat sb;
	if (stat(B.model, &sb) != 0 || stat(B.tokens, &sb) != 0) {
		fprintf(stderr, "bench_awq: making %s and %s\n", B.model, B.tokens);
		qc_rmtree(B.model);
		in_child(make_model, &B, NULL);
	}
	qc_config *cfg = &B.cfg;
	TRY(qc_synth_preset(B.preset, cfg));
	double H = (double)cfg->hidden_size, I = (double)cfg->intermediate_size;
	double qd = (double)(cfg->num_attention_heads * cfg->head_dim);
	double kvd = (double)(cfg->num_key_value_heads * cfg->head_dim);
	int mha = cfg->num_attention_heads == cfg->num_key_value_heads;

	double rate0 = sgemm_rate(B.threads, 2048, (int64_t)I, (int64_t)H);
	struct rusage ru;
	double wall = in_child(run_awq, &B, &ru);
	double rate1 = sgemm_rate(B.threads, 2048, (int64_t)I, (int64_t)H);
	double rate = rate0 > rate1 ? rate0 : rate1;

	/* the samples as qc_awq takes them */
	double T = (double)(B.nseq * B.len), want = B.loss ? (double)B.loss : 2048;
	double m = B.loss < 0 || want >= T ? (double)B.nseq : ceil(want * (double)B.nseq / T);
	if (m > B.nseq)
		m = (double)B.nseq;
	double N = m * (double)B.len;
	double step = floor(T / 512) > 1 ? floor(T / 512) : 1, Nc = ceil(T / step);

	/* the report: per Linear errors and seconds, per point ratios */
	size_t len;
	char *text;
	TRY(qc_read_file(B.report, 1 << 26, &text, &len));
	double secs = 0, ratio_sum = 0;
	int n = 0;
	printf("bench_awq: %s layer, %lld x %lld tokens, W4A16 g%lld, loss sample %.0f tokens, "
	       "clip sample %.0f, %d threads\n", B.preset, (long long)B.nseq, (long long)B.len,
	       (long long)B.group, N, Nc, B.threads);
	printf("\n%-34s %10s %10s %8s %8s %s\n", "Linear", "err_out", "err_rtn", "ratio", "seconds",
	       "smoothing ratio");
	for (char *ln = strtok(text, "\n"); ln; ln = strtok(NULL, "\n")) {
		json_t *j = json_loads(ln, 0, NULL);
		if (!j)
			die(QC_EFORMAT);
		double eo = json_number_value(json_object_get(j, "err_out"));
		double er = json_number_value(json_object_get(j, "err_rtn"));
		double s = json_number_value(json_object_get(j, "seconds"));
		json_t *sm = json_object_get(j, "smooth");
		printf("%-34s %10.4g %10.4g %8.3f %8.1f %s%.2f\n",
		       json_string_value(json_object_get(j, "layer")) + strlen("model.layers.0."), eo, er,
		       eo / er, s, json_is_object(sm) ? "" : "-", json_is_object(sm)
		       ? json_number_value(json_object_get(sm, "ratio")) : 0.0);
		secs += s;
		ratio_sum += eo / er;
		n++;
		json_decref(j);
	}
	free(text);

	/* the floor: 20 forward passes of every loss block over the sample, the clip search */
	double seq_att = 2.0 * (double)B.len * (double)B.len * qd * m;
	double qkv_blk = 2 * N * (H * (qd + 2 * kvd) + qd * H) + seq_att;
	double o_blk = mha ? 2 * N * qd * H : 0;
	double mlp_blk = 2 * N * 3 * H * I, down_blk = 2 * N * I * H;
	double grid = 20 * (qkv_blk + o_blk + mlp_blk + down_blk);
	double clip_params = H * kvd + qd * H + 3 * H * I;
	double clip = 2 * Nc * clip_params * 10;
	double floor_s = (grid + clip) / rate;
	printf("\nmean err_out / err_rtn %.3f over %d Linears\n", ratio_sum / n, n);
	printf("\nsgemm rate measured in this run ([2048 x %.0f] x [%.0f x %.0f]): %.1f GFLOP/s "
	       "(before %.1f, after %.1f)\n", H, H, I, rate / 1e9, rate0 / 1e9, rate1 / 1e9);
	printf("FLOP floor: grid %.2f TFLOP + clip search %.2f TFLOP = %.1f s at that rate\n",
	       grid / 1e12, clip / 1e12, floor_s);
	printf("run: %.1f s wall (%.1f s user, %.1f s system); the method's report seconds %.1f, "
	       "the rest (walker, reading, writing) %.1f\n", wall,
	       (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, secs, wall - secs);
	printf("run / floor: %.2f x (target 2x)\n", wall / floor_s);

	/* what must be resident at the peak */
	double params = H * (qd + 2 * kvd) + qd * H + 3 * H * I;
	double ct = T < 2048 ? T : 2048;
	/* the FP32 layer; the writer's copy of the codes and parameters of the
	 * shard; down_proj's codes, parameters and clip maxima on the host */
	double layer = params * 4 + params * (1 + 2.0 * 2 / (double)B.group) +
	               I * H * (1 + 4.0 * 4 / (double)B.group);
	/* the walker's stores [T, H] and [T, q_dim] (FP32), its chunk of norm
	 * outputs and attention outputs */
	double walker = T * (H + qd) * 4 + ct * (H + qd) * 4;
	/* the model's q/k/v scratch for a chunk and its MLP rows */
	double model = ct * (qd + 2 * kvd) * 4 + 256.0 * 2 * I * 4;
	/* the samples of the four points (loss and clip), candidate q/k/v, the
	 * loss block's outputs, the five block buffers, the scaled clip sample,
	 * the attention output of a sampled chunk */
	double blk = (double)(1 << 22);
	double method = (N + Nc) * (2 * H + qd + I) * 4 + (qd + 2 * kvd) * H * 4 + 2 * N * H * 4 +
	                5 * blk * 4 + Nc * I * 4 + (N < 2048 ? N : 2048) * qd * 4;
	double need = layer + walker + model + method;
	double rss = (double)ru.ru_maxrss * 1024.0;
	printf("\npeak RSS %.0f MB; resident need %.0f MB (FP32 layer and codes %.0f, walker %.0f, "
	       "model scratch %.0f, AWQ samples and buffers %.0f): %.2f x (target 1.3x)\n",
	       rss / 1e6, need / 1e6, layer / 1e6, walker / 1e6, model / 1e6, method / 1e6,
	       rss / need);
	qc_rmtree(B.out);
	return 0;
}
