/*
 * bench_smooth.c - qsmooth against the calibration walker's bare forward
 * pass over the same checkpoint and tokens, in the same run: smoothing is a
 * forward pass plus per-channel maxima, folding and the reported W8A8
 * errors on a sample, so its wall time should stay within 1.3x of the bare
 * pass.
 *
 *   bench_smooth [-p preset] [-l layers] [-n sequences] [-s seq_len] [-j threads]
 *                [-a alpha|search] [-d dir] [-r reps]
 *
 * Defaults: Llama-3.1-8B shape cut to 4 layers, 4 x 2048 random tokens,
 * alpha 0.5. The checkpoint (qc_synth statistics, outlier channels) is
 * written to DIR (default $TMPDIR/qbench-smooth) once and reused; the
 * smoothed output goes to DIR/out and is removed. Times, wall and CPU
 * (user + system, every thread), best of -r runs each (default 1), taken
 * alternately, the bare pass first (it also warms the page cache):
 *   bare     open, embed, every layer through the walker without hooks
 *   qsmooth  the whole tool's run: statistics, scales, folding, errors,
 *            writing the smoothed checkpoint
 * Not a timed test: run it by hand (make bench) on a quiet machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels.h"
#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_err.h"
#include "qc_io.h"
#include "qc_log.h"
#include "qc_model.h"
#include "qc_smooth.h"
#include "qc_synth.h"
#include "qc_tokset.h"
#include "qc_walk.h"

/* user + system seconds of this process, every thread */
static double cpu_now(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec * 1e-6;
}

static void die(int rc)
{
	fprintf(stderr, "bench_smooth: %s\n", *qc_errmsg() ? qc_errmsg() : qc_strerror(rc));
	exit(1);
}
#define TRY(x) do { int rc_ = (x); if (rc_) die(rc_); } while (0)

static void make_model(const char *dir, const char *preset, int layers)
{
	qc_config cfg;
	TRY(qc_synth_preset(preset, &cfg));
	cfg.num_hidden_layers = layers;
	TRY(qc_config_build(&cfg));
	qc_synth_opts so;
	qc_synth_opts_default(&so);
	qc_ckw_opts wo = { 0 };
	wo.n_shards = layers;
	qc_ckpt_writer *w;
	TRY(qc_ckw_open(&w, dir, &wo));
	char *js;
	size_t jl;
	TRY(qc_config_dump(&cfg, &js, &jl));
	TRY(qc_ckw_add_file(w, "config.json", js, jl));
	free(js);
	TRY(qc_synth_write(&cfg, &so, w, NULL, NULL));
	TRY(qc_ckw_close(w));
	qc_config_free(&cfg);
}

int main(int argc, char **argv)
{
	const char *preset = "llama-3.1-8b", *alpha = "0.5";
	int layers = 4, threads = 0, c, reps = 1;
	int64_t nseq = 4, len = 2048;
	char dir[1024];
	snprintf(dir, sizeof dir, "%s/qbench-smooth", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	while ((c = getopt(argc, argv, "p:l:n:s:j:a:d:r:")) != -1) {
		switch (c) {
		case 'p': preset = optarg; break;
		case 'l': layers = atoi(optarg); break;
		case 'n': nseq = atoll(optarg); break;
		case 's': len = atoll(optarg); break;
		case 'j': threads = atoi(optarg); break;
		case 'a': alpha = optarg; break;
		case 'd': snprintf(dir, sizeof dir, "%s", optarg); break;
		case 'r': reps = atoi(optarg) > 0 ? atoi(optarg) : 1; break;
		default:
			fprintf(stderr, "usage: bench_smooth [-p preset] [-l layers] [-n seqs] [-s len] "
			        "[-j threads] [-a alpha|search] [-d dir] [-r reps]\n");
			return 2;
		}
	}
	qc_log_init("bench_smooth", QC_LOG_QUIET);
	char model[1100], tokens[1100], out[1100];
	snprintf(model, sizeof model, "%s/%s-%d", dir, preset, layers);
	snprintf(tokens, sizeof tokens, "%s/tokens-%lldx%lld.st", dir, (long long)nseq,
	         (long long)len);
	snprintf(out, sizeof out, "%s/out", dir);
	mkdir(dir, 0777);
	struct stat st;
	if (stat(model, &st) != 0) {
		fprintf(stderr, "bench_smooth: making %s\n", model);
		make_model(model, preset, layers);
	}
	qc_ckpt *ck;
	TRY(qc_ckpt_open(&ck, model, NULL));
	const void *cj;
	size_t cl;
	qc_config cfg;
	TRY(qc_ckpt_file(ck, "config.json", &cj, &cl));
	TRY(qc_config_parse(&cfg, cj, cl, "config.json"));
	int32_t *ids = malloc(sizeof *ids * (size_t)(nseq * len));
	int32_t *lens = malloc(sizeof *lens * (size_t)nseq);
	for (int64_t i = 0; i < nseq * len; i++)
		ids[i] = (int32_t)((i * 2654435761u) % (uint64_t)cfg.vocab_size);
	for (int64_t i = 0; i < nseq; i++)
		lens[i] = (int32_t)len;
	qc_tokset_spec sp = { 0 };
	sp.n = nseq;
	sp.l = len;
	sp.ids = ids;
	sp.lengths = lens;
	sp.vocab_size = cfg.vocab_size;
	sp.pad_id = 0;
	sp.bos_id = -1;
	sp.eos_id = -1;
	sp.sources = "[]";
	sp.options = "{}";
	TRY(qc_tokset_save(&sp, tokens));

	qc_ckpt_close(ck);
	double la[2][3] = { { 0 } };
	FILE *lf = fopen("/proc/loadavg", "r");
	if (lf) {
		if (fscanf(lf, "%lf %lf %lf", &la[0][0], &la[0][1], &la[0][2]) != 3)
			la[0][0] = -1;
		fclose(lf);
	}
	/* alternately, best of reps each: another process on the cores then
	 * stretches both alike */
	double bare = 1e30, smooth = 1e30, bare_cpu = 1e30, smooth_cpu = 1e30;
	for (int r = 0; r < reps; r++) {
		/* the bare forward pass */
		double t0 = qc_now(), c0 = cpu_now();
		TRY(qc_ckpt_open(&ck, model, NULL));
		qk_ctx *kc;
		TRY(qk_ctx_new(&kc, QK_DEVICE_CPU, threads));
		qc_model *m;
		TRY(qc_model_open(&m, ck, kc, NULL));
		qc_walk *w;
		TRY(qc_walk_new(&w, m, ids, len, lens, nseq, NULL));
		TRY(qc_walk_run(w, NULL));
		qc_walk_free(w);
		qc_model_free(m);
		qk_ctx_free(kc);
		qc_ckpt_close(ck);
		double t = qc_now() - t0, cs = cpu_now() - c0;
		bare = t < bare ? t : bare;
		bare_cpu = cs < bare_cpu ? cs : bare_cpu;

		/* qsmooth as the tool runs it */
		qc_rmtree(out);
		qc_smooth_opts so = { .alpha = strcmp(alpha, "search") == 0 ? -1 : atof(alpha) };
		qc_smooth *sm;
		qc_qmethod meth;
		TRY(qc_smooth_method(&sm, &meth, &so));
		qc_qrun_opts ro = { .model = model, .out = out, .calib = tokens, .threads = threads };
		t0 = qc_now();
		c0 = cpu_now();
		TRY(qc_qrun_run(&ro, &meth));
		t = qc_now() - t0;
		cs = cpu_now() - c0;
		smooth = t < smooth ? t : smooth;
		smooth_cpu = cs < smooth_cpu ? cs : smooth_cpu;
		qc_smooth_free(sm);
		qc_rmtree(out);
	}
	lf = fopen("/proc/loadavg", "r");
	if (lf) {
		if (fscanf(lf, "%lf %lf %lf", &la[1][0], &la[1][1], &la[1][2]) != 3)
			la[1][0] = -1;
		fclose(lf);
	}

	printf("bench_smooth: %s, %d layers, %lld x %lld tokens, alpha %s, best of %d; load %.2f "
	       "before, %.2f after\n", preset, layers, (long long)nseq, (long long)len, alpha, reps,
	       la[0][0], la[1][0]);
	printf("  bare forward pass  %8.2f s  %8.2f CPU s\n", bare, bare_cpu);
	printf("  qsmooth            %8.2f s  %8.2f CPU s   %.2fx the bare pass (target 1.3x), "
	       "%.2fx in CPU seconds\n", smooth, smooth_cpu, smooth / bare, smooth_cpu / bare_cpu);
	qc_config_free(&cfg);
	free(ids);
	free(lens);
	return 0;
}
