/*
 * bench_read - is reading a checkpoint I/O-bound? Reads and hashes a
 * checkpoint directory the way `qcat --verify` does (every file's XXH3-128
 * and every tensor's XXH3-64, one pass over mapped shards) and compares the
 * rate with cat(1) of the same files to /dev/null, in the same run:
 * cat first, then ours (repeated), then cat again, so that both see the same
 * page-cache state and load.
 *
 *   bench_read [-c] [-r N] DIR
 *
 * Prints GB/s (1e9 bytes per second) for each run and the ratio of our best
 * to cat's best. With a manifest the pass is qc_ckpt_verify (and must pass);
 * without one it is qc_ckpt_hash. -c evicts the checkpoint's files from the
 * page cache before every run (posix_fadvise DONTNEED, no root needed, other
 * files untouched), so that both read from the disk; without it the second
 * and later runs read from memory, where hashing rather than I/O is measured.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bfiles.h"
#include "qc_ckpt.h"
#include "qc_err.h"
#include "qc_io.h"
#include "qc_log.h"
#include "qc_manifest.h"

/* Open, hash everything, close: what `qcat --verify DIR` does. */
/* -c: evict the files before every run */
static int cold;

static double run_ours(const bfiles *f, const char *dir, int *verified)
{
	if (cold)
		bf_evict(f);
	double t0 = qc_now();
	qc_ckpt *ck;
	int rc = qc_ckpt_open(&ck, dir, NULL);
	if (rc)
		return -1;
	const qc_manifest *m = NULL;
	rc = qc_ckpt_manifest(ck, &m);
	if (rc == 0 && m) {
		rc = qc_ckpt_verify(ck);
		*verified = 1;
	} else if (rc == 0) {
		qc_manifest *h = qc_manifest_new();
		rc = h ? qc_ckpt_hash(ck, h) : QC_ENOMEM;
		qc_manifest_free(h);
		*verified = 0;
	}
	qc_ckpt_close(ck);
	return rc ? -1 : qc_now() - t0;
}

int main(int argc, char **argv)
{
	int reps = 3, c;
	while ((c = getopt(argc, argv, "cr:")) != -1) {
		if (c == 'r' && atoi(optarg) > 0)
			reps = atoi(optarg);
		else if (c == 'c')
			cold = 1;
		else {
			fprintf(stderr, "usage: bench_read [-c] [-r N] DIR\n");
			return 2;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "usage: bench_read [-c] [-r N] DIR\n");
		return 2;
	}
	const char *dir = argv[optind];
	if (!qc_is_dir(dir)) {
		fprintf(stderr, "bench_read: '%s' is not a checkpoint directory\n", dir);
		return 2;
	}
	bfiles f = { .dir = dir, .cold = cold };
	qc_ckpt *ck;
	int rc = qc_ckpt_open(&ck, dir, NULL);
	if (rc == 0) {
		rc = qc_ckpt_list(ck, bf_add_member, &f);
		qc_ckpt_close(ck);
	}
	if (rc) {
		fprintf(stderr, "bench_read: %s\n", qc_errmsg());
		return 2;
	}
	double gb = (double)f.bytes / 1e9;
	printf("checkpoint %s: %zu files, %.3f GB, %s page cache\n", dir, f.n, gb,
	       cold ? "cold (evicted before each run)" : "warm after the first run");

	double cat1 = bf_cat(&f);
	double best = 1e30;
	int verified = 0;
	for (int i = 0; i < reps; i++) {
		double t = run_ours(&f, dir, &verified);
		if (t < 0) {
			fprintf(stderr, "bench_read: %s\n", qc_errmsg());
			return 2;
		}
		printf("  ours  run %d: %7.3f s  %6.2f GB/s\n", i + 1, t, gb / t);
		best = t < best ? t : best;
	}
	double cat2 = bf_cat(&f);
	if (cat1 < 0 || cat2 < 0) {
		fprintf(stderr, "bench_read: cat failed\n");
		return 2;
	}
	double catbest = cat1 < cat2 ? cat1 : cat2;
	printf("  cat (before): %7.3f s  %6.2f GB/s\n", cat1, gb / cat1);
	printf("  cat (after):  %7.3f s  %6.2f GB/s\n", cat2, gb / cat2);
	printf("read+hash (%s) %.2f GB/s vs cat %.2f GB/s: %.2fx of cat\n",
	       verified ? "verify against the manifest" : "hash, no manifest", gb / best, gb / catbest,
	       catbest / best);
	for (size_t i = 0; i < f.n; i++)
		free(f.path[i]);
	free(f.path);
	return 0;
}
