/*
 * qk_mem.c - large blocks of the CPU kernels' memory, kept for reuse.
 *
 * A quantizer allocates the same large buffers over and over: each layer's
 * FP32 weights, each point's Hessian, GPTQ's working matrix, the walker's
 * scratch. glibc maps every block over 32 MB afresh and unmaps it on free,
 * so each is first-touched again, and first touches are slow: the kernel
 * zeroes every page, and in a VM each fault also costs the hypervisor
 * (measured on the development VM: about 2.4 CPU seconds per GB, some 10 %
 * of qgptq's CPU time on an 8B layer). So a freed large block (qk_alloc's
 * of QK_BIG_MIN bytes and more, the GPTQ ops' working buffers of 4 MiB and
 * more) is kept, and a later request that fits it (at least half of it)
 * gets it back, pages already present.
 *
 * Memory use never exceeds what the same calls would have used without
 * the cache: with L the bytes of live large blocks and P the most L has
 * been, the cached bytes C stay at most P - L. A fresh block that would
 * break that first releases cached blocks (oldest first) until it holds;
 * at a new peak, every cached block goes. So the blocks that survive are
 * those freed after the run's peak, which in a layer-by-layer run is what
 * the next layer asks for again.
 *
 * Thread-safe (one mutex; large blocks are few and slow to fill anyway).
 * Contents of a reused block are whatever was left in it, as with malloc.
 */
#include "qk_cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)
#define SLOTS 32 /* cached blocks at most */

typedef struct {
	void *p;
	size_t n;
} block;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static block cached[SLOTS]; /* oldest first */
static int n_cached;
static block *live;         /* large blocks handed out */
static size_t n_live, live_cap;
static size_t bytes_live, bytes_cached, bytes_peak;

static void drop_cached(int i)
{
	free(cached[i].p);
	bytes_cached -= cached[i].n;
	for (int k = i + 1; k < n_cached; k++)
		cached[k - 1] = cached[k];
	n_cached--;
}

static int add_live(void *p, size_t n)
{
	if (n_live == live_cap) {
		size_t cap = live_cap ? 2 * live_cap : 64;
		block *b = realloc(live, cap * sizeof *b);
		if (!b)
			return -1;
		live = b;
		live_cap = cap;
	}
	live[n_live++] = (block){ p, n };
	bytes_live += n;
	if (bytes_live > bytes_peak)
		bytes_peak = bytes_live;
	return 0;
}

void *qk_cpu_big_alloc(size_t bytes)
{
	size_t n = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
	if (n < bytes)
		return NULL;
	pthread_mutex_lock(&mu);
	/* the smallest cached block that fits and is at most twice the size */
	int best = -1;
	for (int i = 0; i < n_cached; i++)
		if (cached[i].n >= n && cached[i].n / 2 <= n && (best < 0 || cached[i].n < cached[best].n))
			best = i;
	void *p = NULL;
	if (best >= 0) {
		block b = cached[best];
		for (int k = best + 1; k < n_cached; k++)
			cached[k - 1] = cached[k];
		n_cached--;
		bytes_cached -= b.n;
		if (add_live(b.p, b.n) == 0)
			p = b.p;
		else
			free(b.p);
	} else {
		/* a fresh block: first make room so that live + cached stays
		 * within the peak that the calls alone would reach */
		size_t peak = bytes_live + n > bytes_peak ? bytes_live + n : bytes_peak;
		while (n_cached > 0 && bytes_live + n + bytes_cached > peak)
			drop_cached(0);
		if (posix_memalign(&p, HUGE_PAGE, n) != 0)
			p = NULL;
		if (p && add_live(p, n) != 0) {
			free(p);
			p = NULL;
		}
#ifdef MADV_HUGEPAGE
		if (p)
			(void)madvise(p, n, MADV_HUGEPAGE); /* advice only */
#endif
	}
	pthread_mutex_unlock(&mu);
	return p;
}

int qk_cpu_big_free(void *p)
{
	if (!p)
		return 0;
	pthread_mutex_lock(&mu);
	size_t i = 0;
	while (i < n_live && live[i].p != p)
		i++;
	if (i == n_live) {
		pthread_mutex_unlock(&mu);
		return 0;
	}
	block b = live[i];
	live[i] = live[--n_live];
	bytes_live -= b.n;
	if (n_cached == SLOTS)
		drop_cached(0);
	cached[n_cached++] = b;
	bytes_cached += b.n;
	pthread_mutex_unlock(&mu);
	return 1;
}

void qk_cpu_big_stats(size_t *live_bytes, size_t *cached_bytes, size_t *peak_bytes)
{
	pthread_mutex_lock(&mu);
	*live_bytes = bytes_live;
	*cached_bytes = bytes_cached;
	*peak_bytes = bytes_peak;
	pthread_mutex_unlock(&mu);
}

void qk_cpu_big_release(void)
{
	pthread_mutex_lock(&mu);
	while (n_cached > 0)
		drop_cached(0);
	pthread_mutex_unlock(&mu);
}
