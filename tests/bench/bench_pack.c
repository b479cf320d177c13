/*
 * bench_pack - is packing I/O-bound? Times qpack's work (qc_pack_checkpoint:
 * read a naive-quantized checkpoint, pack every Linear, write and hash the
 * artifact) against cat(1) of the input to /dev/null, in the same run: cat
 * first, then packing (repeated), then cat again, so both see the same
 * page-cache state and load.
 *
 *   bench_pack [-c] [-r N] [-l LAYERS] [-f FORMAT] [-j THREADS] DIR
 *
 * The input is an 8B-shaped (Llama-3.1-8B: hidden 4096, intermediate 14336,
 * 32/8 heads, vocab 128256) W4A16 checkpoint with LAYERS decoder layers
 * (default 4): qc_synth's BF16 weights, quantized by round-to-nearest
 * (qc_quant_rtn, int4, group 128, symmetric) and written by qc_qout, as
 * `qgptq --method rtn` would. It is made once in DIR/naive (a dense model is
 * written to DIR/dense on the way and removed) and reused while its
 * parameters match (DIR/naive.params). The artifact goes to DIR/out,
 * removed before each run. -c evicts the input's files from the page cache
 * before every run (posix_fadvise DONTNEED), so both read from the device.
 *
 * Printed: GB/s of input (1e9 bytes per second) for each run and packing's
 * wall time as a multiple of cat's (best of each), and of `cp -r` of the
 * input timed after them: packing writes about as many bytes as it reads
 * (the embeddings and lm_head are copied), which cat does not.
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bfiles.h"
#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_err.h"
#include "qc_io.h"
#include "qc_log.h"
#include "qc_num.h"
#include "qc_pack.h"
#include "qc_qout.h"
#include "qc_quant.h"
#include "qc_synth.h"

/* -c: evict the files before every run */
static int cold;

static void die(const char *what)
{
	fprintf(stderr, "bench_pack: %s: %s\n", what, qc_errmsg());
	exit(2);
}

// ---------------------------------------------------------------- the input

static void make_dense(const char *dir, const qc_config *cfg)
{
	qc_ckw_opts wo = { .n_shards = (int)cfg->num_hidden_layers, .force = 1, .tool = "bench_pack" };
	qc_ckpt_writer *w;
	if (qc_ckw_open(&w, dir, &wo))
		die("dense model");
	char *cj;
	size_t cn;
	if (qc_config_dump(cfg, &cj, &cn) || qc_ckw_add_file(w, "config.json", cj, cn))
		die("dense model");
	free(cj);
	qc_synth_opts so;
	qc_synth_opts_default(&so);
	if (qc_synth_write(cfg, &so, w, NULL, NULL) || qc_ckw_close(w))
		die("dense model");
}

static void make_naive(const char *dense, const char *dir)
{
	qc_ckpt *in;
	const void *data;
	size_t len;
	qc_config cfg;
	if (qc_ckpt_open(&in, dense, NULL) || qc_ckpt_file(in, "config.json", &data, &len) ||
	    qc_config_parse(&cfg, data, len, NULL))
		die("naive model");
	qc_qscheme s;
	qc_qscheme_preset(&s, "w4a16");
	char *argv[] = { "bench_pack", NULL };
	qc_qout_opts qo = { .path = dir, .force = 1, .tool = "bench_pack", .argc = 1, .argv = argv };
	qc_qout *q;
	if (qc_qout_open(&q, in, &cfg, &s, &qo))
		die("naive model");
	qc_clip_opts co;
	qc_clip_opts_default(&co, QC_CLIP_MINMAX);
	int L = (int)cfg.num_hidden_layers;
	for (int l = 0; l < L; l++) {
		int groups[3] = { l == 0 ? QC_GROUP_PRE : l, l, l == L - 1 ? QC_GROUP_POST : l };
		for (int g = 0; g < 3; g++) {
			if (g > 0 && groups[g] == groups[g - 1])
				continue;
			const char *const *names;
			size_t n;
			if (qc_ckpt_group_names(in, groups[g], &names, &n))
				die("naive model");
			for (size_t i = 0; i < n; i++) {
				const qc_tensor *t;
				if (qc_ckpt_get(in, names[i], &t))
					die("naive model");
				size_t nl = strlen(names[i]);
				char module[256];
				snprintf(module, sizeof module, "%.*s", (int)(nl > 7 ? nl - 7 : 0), names[i]);
				int lin = groups[g] == l && nl > 7 && strcmp(names[i] + nl - 7, ".weight") == 0 &&
				          strstr(module, "_proj") != NULL;
				if (!lin) {
					if (qc_qout_copy(q, t))
						die("naive model");
					continue;
				}
				int64_t rows = t->shape[0], cols = t->shape[1], ns = rows * qc_qgroups(&s.weights, cols);
				float *W = malloc((size_t)(rows * cols) * sizeof *W), *sc = malloc((size_t)ns * sizeof *sc);
				uint8_t *codes = malloc((size_t)(rows * cols));
				if (!W || !sc || !codes) {
					fprintf(stderr, "bench_pack: out of memory\n");
					exit(2);
				}
				qc_to_f32(W, t->data, t->dtype, (size_t)(rows * cols));
				if (qc_quant_rtn(&s.weights, &co, W, rows, cols, NULL, codes, sc, NULL, NULL) ||
				    qc_qout_linear(q, module, rows, cols, codes, sc, NULL, NULL))
					die("naive model");
				free(W);
				free(sc);
				free(codes);
			}
		}
		if (qc_qout_end_layer(q, l))
			die("naive model");
		fprintf(stderr, "bench_pack: quantized layer %d/%d\n", l + 1, L);
	}
	if (qc_qout_close(q, NULL))
		die("naive model");
	qc_qscheme_free(&s);
	qc_config_free(&cfg);
	qc_ckpt_close(in);
}

// ---------------------------------------------------------------- timing

/* cp -r INPUT COPY: reading and writing the same bytes; seconds, or -1 */
static double run_cp(const bfiles *f, const char *copy)
{
	if (qc_rmtree(copy))
		die("removing the last copy");
	sync();
	if (cold)
		bf_evict(f);
	double t0 = qc_now();
	pid_t pid = fork();
	if (pid == 0) {
		execlp("cp", "cp", "-r", f->dir, copy, (char *)NULL);
		_exit(127);
	}
	int st = 0;
	int ok = pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
	double t = qc_now() - t0;
	qc_rmtree(copy);
	return ok ? t : -1;
}

static double run_pack(const bfiles *f, const qc_pack_opts *o, qc_pack_result *res)
{
	if (qc_rmtree(o->output))
		die("removing the last output");
	sync();
	if (cold)
		bf_evict(f);
	double t0 = qc_now();
	if (qc_pack_checkpoint(o, res))
		die("packing");
	return qc_now() - t0;
}

int main(int argc, char **argv)
{
	int reps = 2, layers = 4, threads = 2, c;
	const char *fmt = "compressed-tensors";
	const char *use = "usage: bench_pack [-c] [-r N] [-l LAYERS] [-f FORMAT] [-j THREADS] DIR\n";
	while ((c = getopt(argc, argv, "cr:l:f:j:")) != -1) {
		switch (c) {
		case 'c': cold = 1; break;
		case 'r': reps = atoi(optarg); break;
		case 'l': layers = atoi(optarg); break;
		case 'f': fmt = optarg; break;
		case 'j': threads = atoi(optarg); break;
		default: fputs(use, stderr); return 2;
		}
	}
	if (optind + 1 != argc || reps < 1 || layers < 1 || layers > 32 || threads < 1) {
		fputs(use, stderr);
		return 2;
	}
	qc_pack_opts o;
	memset(&o, 0, sizeof o);
	if (qc_pack_format_parse(fmt, &o.format))
		die("-f");
	const char *dir = argv[optind];
	if (qc_mkdirs(dir, 0755))
		die(dir);
	char *dense = qc_path_join(dir, "dense"), *naive = qc_path_join(dir, "naive");
	char *out = qc_path_join(dir, "out"), *params = qc_path_join(dir, "naive.params");
	char want[128], *have = NULL;
	size_t hl;
	snprintf(want, sizeof want, "llama-3.1-8b layers %d w4a16 rtn seed 0\n", layers);
	if (qc_read_file(params, 4096, &have, &hl) || strcmp(have, want) != 0 || !qc_is_dir(naive)) {
		qc_config cfg;
		if (qc_synth_preset("llama-3.1-8b", &cfg))
			die("preset");
		cfg.num_hidden_layers = layers;
		if (qc_config_build(&cfg))
			die("config");
		fprintf(stderr, "bench_pack: making the %d-layer input in '%s' (once)\n", layers, naive);
		make_dense(dense, &cfg);
		make_naive(dense, naive);
		qc_rmtree(dense);
		qc_config_free(&cfg);
		if (qc_write_file_atomic(params, want, strlen(want)))
			die(params);
	}
	free(have);

	bfiles f = { .dir = naive, .cold = cold };
	qc_ckpt *ck;
	if (qc_ckpt_open(&ck, naive, NULL) || qc_ckpt_list(ck, bf_add_member, &f))
		die(naive);
	qc_ckpt_close(ck);
	double gb = (double)f.bytes / 1e9;
	printf("input %s: 8B-shaped, %d layers, W4A16 RTN naive, %zu files, %.3f GB; %s page cache\n",
	       naive, layers, f.n, gb, cold ? "cold (evicted before each run)" : "warm after the first run");
	char *pargv[] = { "qpack", "-f", (char *)fmt, "-o", "OUT", naive, NULL };
	o.input = naive;
	o.output = out;
	o.threads = threads;
	o.force = 1;
	o.tool = "qpack";
	o.version = "bench";
	o.argc = 6;
	o.argv = pargv;
	double cat1 = bf_cat(&f), best = 1e30;
	qc_pack_result res;
	for (int i = 0; i < reps; i++) {
		double t = run_pack(&f, &o, &res);
		printf("  qpack -f %s run %d: %7.3f s  %6.2f GB/s of input (%d shard%s, %.3f GB written)\n",
		       fmt, i + 1, t, gb / t, res.n_shards, res.n_shards == 1 ? "" : "s",
		       (double)res.tensor_bytes / 1e9);
		best = t < best ? t : best;
	}
	double cat2 = bf_cat(&f);
	char *copy = qc_path_join(dir, "copy");
	double cp = run_cp(&f, copy);
	free(copy);
	if (cat1 < 0 || cat2 < 0 || cp < 0) {
		fprintf(stderr, "bench_pack: cat or cp failed\n");
		return 2;
	}
	double catbest = cat1 < cat2 ? cat1 : cat2;
	printf("  cat (before): %7.3f s  %6.2f GB/s\n", cat1, gb / cat1);
	printf("  cat (after):  %7.3f s  %6.2f GB/s\n", cat2, gb / cat2);
	printf("  cp -r:        %7.3f s  %6.2f GB/s (reads and writes %.3f GB)\n", cp, gb / cp, gb);
	printf("packing wall time %.2fx cat's, %.2fx cp's (best %.3f s; cat %.3f s, cp %.3f s; "
	       "threads %d)\n", best / catbest, best / cp, best, catbest, cp, threads);
	qc_rmtree(out);
	for (size_t i = 0; i < f.n; i++)
		free(f.path[i]);
	free(f.path);
	free(dense);
	free(naive);
	free(out);
	free(params);
	return 0;
}
