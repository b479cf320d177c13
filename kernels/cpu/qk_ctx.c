/*
 * qk_ctx.c - CPU context, device memory, the row-parallel helper and dtype
 * conversion (kernels.h).
 *
 * A CUDA build (kernels/cuda) would accept QK_DEVICE_CUDA here and route
 * each public function to its qk_cuda_* twin when ctx->dev says so; this
 * build has no such twin and refuses the device.
 */
#include "qk_cpu.h"

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qc_err.h"
#include "qc_num.h"

/* ---------------------------------------------------------------- context */

int qk_ctx_new(qk_ctx **out, qk_device dev, int n_threads)
{
	*out = NULL;
	if (dev != QK_DEVICE_CPU)
		return qc_seterr(QC_EUNSUPPORTED, "cannot use device '%s': this build has no %s kernels",
		                 qk_device_name(dev), qk_device_name(dev));
	if (n_threads < 0)
		return qc_seterr(QC_EINVAL, "invalid thread count %d", n_threads);
	qk_ctx *c = calloc(1, sizeof *c);
	if (!c)
		return qc_seterr(QC_ENOMEM, "cannot allocate a kernel context");
	if (n_threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		n_threads = n > 0 ? (int)(n < 256 ? n : 256) : 1;
	}
	c->dev = dev;
	c->threads = n_threads;
	openblas_set_num_threads(n_threads);
	*out = c;
	return 0;
}

void qk_ctx_free(qk_ctx *ctx)
{
	free(ctx);
}

qk_device qk_ctx_device(const qk_ctx *ctx) { return ctx->dev; }
int qk_ctx_threads(const qk_ctx *ctx) { return ctx->threads; }

const char *qk_device_name(qk_device dev)
{
	switch (dev) {
	case QK_DEVICE_CPU: return "cpu";
	case QK_DEVICE_CUDA: return "cuda";
	}
	return "unknown";
}

int qk_device_parse(const char *name, qk_device *dev)
{
	if (strcmp(name, "cpu") == 0)
		*dev = QK_DEVICE_CPU;
	else if (strcmp(name, "cuda") == 0)
		*dev = QK_DEVICE_CUDA;
	else
		return qc_seterr(QC_EINVAL, "unknown device '%s' (use cpu or cuda)", name);
	return 0;
}

int qk_cpu_check(const qk_ctx *ctx, const char *op)
{
	if (!ctx || ctx->dev != QK_DEVICE_CPU)
		return qc_seterr(QC_EINVAL, "%s: no CPU context given", op);
	return 0;
}

/* ---------------------------------------------------------------- memory */

void *qk_alloc(qk_ctx *ctx, size_t bytes)
{
	(void)ctx;
	void *p = NULL;
	/* 64-byte alignment: whole cache lines, and what AVX-512 loads like */
	size_t n = (bytes + 63) & ~(size_t)63;
	if (n < bytes || posix_memalign(&p, 64, n ? n : 64) != 0) {
		qc_seterr(QC_ENOMEM, "cannot allocate %zu bytes", bytes);
		return NULL;
	}
	return p;
}

void qk_free(qk_ctx *ctx, void *p)
{
	(void)ctx;
	free(p);
}

int qk_upload(qk_ctx *ctx, void *dev_dst, const void *host_src, size_t bytes)
{
	QC_TRY(qk_cpu_check(ctx, "upload"));
	if (bytes)
		memmove(dev_dst, host_src, bytes);
	return 0;
}

int qk_download(qk_ctx *ctx, void *host_dst, const void *dev_src, size_t bytes)
{
	QC_TRY(qk_cpu_check(ctx, "download"));
	if (bytes)
		memmove(host_dst, dev_src, bytes);
	return 0;
}

/* ---------------------------------------------------------------- parallel rows */

typedef struct {
	qk_range_fn fn;
	void *arg;
	int64_t begin, end;
} job;

static void *run_job(void *p)
{
	job *j = p;
	j->fn(j->arg, j->begin, j->end);
	return NULL;
}

void qk_cpu_parallel(const qk_ctx *ctx, int64_t n, int64_t min_per_thread, qk_range_fn fn,
                     void *arg)
{
	if (n <= 0)
		return;
	int64_t nt = ctx->threads;
	if (min_per_thread < 1)
		min_per_thread = 1;
	if (nt > n / min_per_thread)
		nt = n / min_per_thread;
	if (nt > 64)
		nt = 64;
	if (nt <= 1) {
		fn(arg, 0, n);
		return;
	}
	job jobs[64];
	pthread_t tid[64];
	int started[64] = { 0 };
	for (int64_t i = 0; i < nt; i++)
		jobs[i] = (job){ fn, arg, n * i / nt, n * (i + 1) / nt };
	/* thread 0's block runs here; a thread that cannot be started has its
	 * block run here too, so the result is the same either way */
	for (int64_t i = 1; i < nt; i++)
		started[i] = pthread_create(&tid[i], NULL, run_job, &jobs[i]) == 0;
	run_job(&jobs[0]);
	for (int64_t i = 1; i < nt; i++) {
		if (started[i])
			pthread_join(tid[i], NULL);
		else
			run_job(&jobs[i]);
	}
}

/* ---------------------------------------------------------------- conversion */

typedef struct {
	float *dst;
	const unsigned char *src;
	qc_dtype dt;
	size_t esize;
} conv_job;

static void conv_range(void *p, int64_t b, int64_t e)
{
	conv_job *j = p;
	/* cannot fail: the dtype was checked before the threads started */
	(void)qc_to_f32(j->dst + b, j->src + (size_t)b * j->esize, j->dt, (size_t)(e - b));
}

int qk_to_f32(qk_ctx *ctx, float *dst, const void *src, qc_dtype dt, size_t n)
{
	QC_TRY(qk_cpu_check(ctx, "convert"));
	size_t es = qc_dtype_size(dt);
	if (!qc_dtype_is_float(dt) || es == 0 || qc_to_f32(dst, src, dt, 0) < 0)
		return qc_seterr(QC_EUNSUPPORTED, "cannot convert %s to F32", qc_dtype_name(dt));
	conv_job j = { dst, src, dt, es };
	qk_cpu_parallel(ctx, (int64_t)n, 1 << 16, conv_range, &j);
	return 0;
}
