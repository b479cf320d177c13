/*
 * qk_guard.c - QK_DEBUG_MEMORY=1: device memory that faults when the host
 * touches it outside a kernel call (see qk_backend.h, kernels.h).
 *
 * Each guarded allocation is its own anonymous mapping, rounded up to whole
 * pages, registered in one process-wide table. `depth` counts the
 * operations running (on every thread): the 0 -> 1 step opens every
 * registered mapping (PROT_READ | PROT_WRITE), the 1 -> 0 step closes them
 * (PROT_NONE). Both steps and the table are under one mutex, so an
 * operation starting on one thread while another ends never sees a closed
 * mapping; the operation itself runs outside the lock.
 */
#include "qk_backend.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qc_err.h"

_Atomic int qk_guard_active;

typedef struct {
	void *p;
	size_t len;       /* mapped bytes (whole pages) */
} region;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static region *regs;
static size_t nregs, capregs;
static long depth;

int qk_guard_requested(void)
{
	const char *e = getenv("QK_DEBUG_MEMORY");
	return e && strcmp(e, "1") == 0;
}

static size_t page_round(size_t n, int *overflow)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t r = (n + pg - 1) / pg * pg;
	*overflow = r < n;
	return r ? r : pg;
}

void *qk_guard_alloc(qk_ctx *ctx, size_t bytes)
{
	(void)ctx;
	int ovf;
	size_t len = page_round(bytes, &ovf);
	if (ovf) {
		qc_seterr(QC_ENOMEM, "cannot allocate %zu bytes", bytes);
		return NULL;
	}
	pthread_mutex_lock(&lock);
	void *p = MAP_FAILED;
	if (nregs == capregs) {
		size_t nc = capregs ? 2 * capregs : 64;
		region *nr = realloc(regs, nc * sizeof *nr);
		if (!nr)
			goto out;
		regs = nr;
		capregs = nc;
	}
	/* closed unless an operation is running now (one may allocate scratch) */
	p = mmap(NULL, len, depth ? PROT_READ | PROT_WRITE : PROT_NONE,
	         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		regs[nregs++] = (region){ p, len };
		atomic_store(&qk_guard_active, 1);
	}
out:
	pthread_mutex_unlock(&lock);
	if (p == MAP_FAILED) {
		qc_seterr(QC_ENOMEM, "cannot allocate %zu bytes", bytes);
		return NULL;
	}
	return p;
}

int qk_guard_free(void *p)
{
	int found = 0;
	pthread_mutex_lock(&lock);
	for (size_t i = nregs; i-- > 0;)
		if (regs[i].p == p) {
			munmap(p, regs[i].len);
			regs[i] = regs[--nregs];
			found = 1;
			break;
		}
	pthread_mutex_unlock(&lock);
	return found;
}

static void protect_all(int prot)
{
	/* cannot fail on our own whole-page mappings; if it did, the mode
	 * would silently stop checking: a broken invariant */
	for (size_t i = 0; i < nregs; i++)
		QC_ASSERT(mprotect(regs[i].p, regs[i].len, prot) == 0);
}

void qk_guard_enter(void)
{
	pthread_mutex_lock(&lock);
	if (depth++ == 0)
		protect_all(PROT_READ | PROT_WRITE);
	pthread_mutex_unlock(&lock);
}

void qk_guard_leave(void)
{
	pthread_mutex_lock(&lock);
	if (--depth == 0)
		protect_all(PROT_NONE);
	pthread_mutex_unlock(&lock);
}
