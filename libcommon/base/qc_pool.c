/* qc_pool.c - fork-join over numbered parts (see qc_pool.h). */
#include "qc_pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"

void qc_pool_range(int64_t n, int part, int nparts, int64_t *lo, int64_t *hi)
{
	/* floor(n * i / nparts) without forming n * i: with n = q nparts + r it
	 * is q i + floor(r i / nparts), and r i < nparts^2 cannot overflow */
	int64_t q = n / nparts, r = n % nparts;
	*lo = q * part + r * part / nparts;
	*hi = q * (part + 1) + r * (part + 1) / nparts;
}

typedef struct part {
	qc_pool_fn fn;
	void *ctx;
	int i, n;
	int rc;
	char *msg;        /* a failed part's message (malloc'd; NULL if that failed too) */
	pthread_t tid;
	int started;
} part;

static void run_part(part *p)
{
	p->rc = p->fn(p->ctx, p->i, p->n);
	if (p->rc)
		p->msg = strdup(qc_errmsg());
}

static void *thread_main(void *arg)
{
	run_part(arg);
	return NULL;
}

/* parts held on the stack up to this many; more are allocated */
#define STACK_PARTS 64

int qc_pool_run(int nparts, qc_pool_fn fn, void *ctx)
{
	if (nparts < 1)
		return 0;
	if (nparts == 1)
		return fn(ctx, 0, 1);
	part stack[STACK_PARTS], *ps = stack;
	if (nparts > STACK_PARTS && !(ps = malloc((size_t)nparts * sizeof *ps))) {
		/* no memory to track threads: every part here, in order, stopping
		 * at the first failure so that its message is the one kept */
		for (int i = 0; i < nparts; i++) {
			int rc = fn(ctx, i, nparts);
			if (rc)
				return rc;
		}
		return 0;
	}
	for (int i = 0; i < nparts; i++)
		ps[i] = (part){ fn, ctx, i, nparts, 0, NULL, 0, 0 };
	for (int i = 1; i < nparts; i++)
		ps[i].started = pthread_create(&ps[i].tid, NULL, thread_main, &ps[i]) == 0;
	run_part(&ps[0]);
	/* a part whose thread could not be started runs here instead */
	for (int i = 1; i < nparts; i++)
		if (!ps[i].started)
			run_part(&ps[i]);
	for (int i = 1; i < nparts; i++)
		if (ps[i].started)
			pthread_join(ps[i].tid, NULL);
	int rc = 0;
	for (int i = 0; i < nparts; i++)
		if (ps[i].rc && !rc) {
			rc = ps[i].rc;
			if (ps[i].msg)
				qc_seterr(rc, "%s", ps[i].msg);
			else
				qc_seterr(rc, "%s", qc_strerror(rc));
		}
	for (int i = 0; i < nparts; i++)
		free(ps[i].msg);
	if (ps != stack)
		free(ps);
	return rc;
}
