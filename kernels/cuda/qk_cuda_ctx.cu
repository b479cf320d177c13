/*
 * qk_cuda_ctx.cu - the CUDA backend: its table, the context (stream,
 * cuBLAS and cuSOLVER handles, scratch memory), device memory, and the
 * conversions (dtype to FP32, dequantization, BF16 storage, FP8
 * quantize-dequantize). kernels.h is the contract, qk_cuda.h the model.
 */
#include "qk_cuda_num.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef QK_CUDA_EMU
#include <dlfcn.h>
#endif

extern "C" {
#include "qc_num.h"
}

/* The table, filled by name: an operation this backend lacks stays NULL,
 * which the dispatch refuses by name (QC_EUNSUPPORTED). */
static qk_backend make_table(void)
{
	qk_backend b;
	memset(&b, 0, sizeof b);
	b.name = "cuda";
	b.ctx_init = qk_cuda_ctx_init;
	b.ctx_fini = qk_cuda_ctx_fini;
	b.alloc = qk_cuda_alloc;
	b.free = qk_cuda_free;
	b.upload = qk_cuda_upload;
	b.download = qk_cuda_download;
	b.copy = qk_cuda_copy;
	b.zero = qk_cuda_zero;
	b.to_f32 = qk_cuda_to_f32;
	b.dequant = qk_cuda_dequant;
	b.bf16_store = qk_cuda_bf16_store;
	b.bf16_load = qk_cuda_bf16_load;
	b.fp8_qdq = qk_cuda_fp8_qdq;
	b.gemm = qk_cuda_gemm;
	b.linear = qk_cuda_linear;
	b.linear_q4 = qk_cuda_linear_q4;
	b.rmsnorm = qk_cuda_rmsnorm;
	b.rope_apply = qk_cuda_rope_apply;
	b.attention = qk_cuda_attention;
	b.attention_kv = qk_cuda_attention_kv;
	b.attention_ex = qk_cuda_attention_ex;
	b.swiglu = qk_cuda_swiglu;
	b.geglu = qk_cuda_geglu;
	b.softcap = qk_cuda_softcap;
	b.log_softmax = qk_cuda_log_softmax;
	b.nll = qk_cuda_nll;
	b.softmax_fold = qk_cuda_softmax_fold;
	b.actq_apply = qk_cuda_actq_apply;
	b.absmax = qk_cuda_absmax;
	b.sumsq = qk_cuda_sumsq;
	b.sub = qk_cuda_sub;
	b.add = qk_cuda_add;
	b.diff_sumsq = qk_cuda_diff_sumsq;
	b.nonfinite = qk_cuda_nonfinite;
	b.col_absmax = qk_cuda_col_absmax;
	b.scale_cols = qk_cuda_scale_cols;
	b.scale_rows = qk_cuda_scale_rows;
	b.q8_rows = qk_cuda_q8_rows;
	b.col_abssum = qk_cuda_col_abssum;
	b.hessian_accum = qk_cuda_hessian_accum;
	b.sym_upper = qk_cuda_sym_upper;
	b.cholesky = qk_cuda_cholesky;
	b.tri_inverse = qk_cuda_tri_inverse;
	b.gptq_hdiag = qk_cuda_gptq_hdiag;
	b.gptq_permute = qk_cuda_gptq_permute;
	b.gptq_factor = qk_cuda_gptq_factor;
	b.gptq_minmax = qk_cuda_gptq_minmax;
	b.gptq_params = qk_cuda_gptq_params;
	b.gptq_rtn = qk_cuda_gptq_rtn;
	b.gptq_errors = qk_cuda_gptq_errors;
	b.gptq_sweep = qk_cuda_gptq_sweep;
	return b;
}

extern "C" const qk_backend qk_cuda_backend = make_table();

/* ---------------------------------------------------------------- the libraries */

#ifdef QK_CUDA_EMU
int qk_cuda_load(void) { return 0; }
#else
qk_culib qk_cl;

#define QK_STR2(x) #x
#define QK_STR(x) QK_STR2(x)

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static int load_state; /* 0 not tried, 1 loaded, -1 failed */
static char load_msg[512];

/* libNAME.so.MAJOR (the major the headers are), or libNAME.so; found
 * through the executable's run path (the toolkit's lib64), then the
 * loader's usual places */
static void *open_lib(const char *base, const char *major)
{
	char name[64];
	snprintf(name, sizeof name, "%s.so.%s", base, major);
	void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		snprintf(name, sizeof name, "%s.so", base);
		h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
		if (!h)
			snprintf(load_msg, sizeof load_msg, "cannot use device 'cuda': cannot load %s.so.%s: %s",
			         base, major, e ? e : "not found");
	}
	return h;
}

int qk_cuda_load(void)
{
	pthread_mutex_lock(&load_lock);
	if (load_state == 0) {
		void *b = open_lib("libcublas", QK_STR(CUBLAS_VER_MAJOR));
		void *s = b ? open_lib("libcusolver", QK_STR(CUSOLVER_VER_MAJOR)) : NULL;
		int ok = b && s;
		/* each symbol by its exported name (the argument is not expanded) */
#define SYM(h, field, name)                                                             \
	do {                                                                            \
		if (ok && !(*(void **)&qk_cl.field = dlsym((h), #name))) {                  \
			snprintf(load_msg, sizeof load_msg,                                     \
			         "cannot use device 'cuda': no %s in the CUDA libraries", #name); \
			ok = 0;                                                                 \
		}                                                                           \
	} while (0)
		SYM(b, blas_create, cublasCreate_v2);
		SYM(b, blas_destroy, cublasDestroy_v2);
		SYM(b, blas_set_stream, cublasSetStream_v2);
		SYM(b, blas_status, cublasGetStatusString);
		SYM(b, gemm, cublasGemmEx_64);
		SYM(b, gemm_batched, cublasGemmStridedBatchedEx_64);
		SYM(b, syrk, cublasSsyrk_v2_64);
		SYM(b, trmm, cublasStrmm_v2_64);
		SYM(s, sv_create, cusolverDnCreate);
		SYM(s, sv_destroy, cusolverDnDestroy);
		SYM(s, sv_set_stream, cusolverDnSetStream);
		SYM(s, sv_params, cusolverDnCreateParams);
		SYM(s, sv_destroy_params, cusolverDnDestroyParams);
		SYM(s, potrf_size, cusolverDnXpotrf_bufferSize);
		SYM(s, potrf, cusolverDnXpotrf);
		SYM(s, trtri_size, cusolverDnXtrtri_bufferSize);
		SYM(s, trtri, cusolverDnXtrtri);
#undef SYM
		load_state = ok ? 1 : -1;
	}
	int st = load_state;
	pthread_mutex_unlock(&load_lock);
	return st == 1 ? 0 : qc_seterr(QC_EUNSUPPORTED, "%s", load_msg);
}
#endif

/* ---------------------------------------------------------------- errors */

int qk_cuda_err(const char *op, cudaError_t e, const char *what)
{
	return qc_seterr(e == cudaErrorMemoryAllocation ? QC_ENOMEM : QC_EDEVICE, "%s: %s failed: %s",
	                 op, what, cudaGetErrorString(e));
}

int qk_cuda_blas_err(const char *op, cublasStatus_t s, const char *what)
{
	return qc_seterr(QC_EDEVICE, "%s: %s failed: %s", op, what, cublasGetStatusString(s));
}

int qk_cuda_solver_err(const char *op, cusolverStatus_t s, const char *what)
{
	return qc_seterr(QC_EDEVICE, "%s: %s failed: cuSOLVER status %d", op, what, (int)s);
}

/* ---------------------------------------------------------------- context */

int qk_cuda_enter(qk_ctx *ctx, const char *op)
{
	if (!ctx || ctx->dev != QK_DEVICE_CUDA || !ctx->impl)
		return qc_seterr(QC_EINVAL, "%s: no CUDA context given", op);
	CU_TRY(op, cudaSetDevice(qk_cu(ctx)->device));
	return 0;
}

int qk_cuda_sync(qk_ctx *ctx, const char *op)
{
	CU_TRY(op, cudaStreamSynchronize(qk_cu(ctx)->st));
	return 0;
}

static int parse_math(int *math)
{
	const char *e = getenv("QK_CUDA_MATH");
	if (!e || !*e || strcmp(e, "bf16") == 0)
		*math = QK_MATH_BF16;
	else if (strcmp(e, "tf32") == 0)
		*math = QK_MATH_TF32;
	else if (strcmp(e, "fp32") == 0)
		*math = QK_MATH_FP32;
	else
		return qc_seterr(QC_EINVAL, "QK_CUDA_MATH='%s': use bf16, tf32 or fp32", e);
	return 0;
}

static void release(qk_cuda *c)
{
	if (c->sparams)
		cusolverDnDestroyParams(c->sparams);
	if (c->solver)
		cusolverDnDestroy(c->solver);
	if (c->blas)
		cublasDestroy(c->blas);
	cudaFree(c->scratch.p);
	cudaFree(c->work.p);
	cudaFree(c->res.p);
	if (c->st)
		cudaStreamDestroy(c->st);
	free(c->hwork);
	free(c);
}

/* The device check: a build with CUDA runs on machines without a GPU (or
 * without the CUDA libraries), so their absence is an ordinary error of this
 * call, QC_EUNSUPPORTED as for a build without CUDA (a caller may fall back
 * to the CPU), never a crash; CPU contexts never touch the CUDA runtime. */
int qk_cuda_ctx_init(qk_ctx *ctx)
{
	int ndev = 0;
	cudaError_t e = cudaGetDeviceCount(&ndev);
	if (e != cudaSuccess || ndev < 1) {
		(void)cudaGetLastError(); /* not sticky: clear it */
		return qc_seterr(QC_EUNSUPPORTED, "cannot use device 'cuda': no usable CUDA GPU (%s)",
		                 e != cudaSuccess ? cudaGetErrorString(e) : "none found");
	}
	QC_TRY(qk_cuda_load());
	qk_cuda *c = (qk_cuda *)calloc(1, sizeof *c);
	if (!c)
		return qc_seterr(QC_ENOMEM, "cannot allocate a CUDA context");
	int rc = parse_math(&c->math);
	const char *tiny = getenv("QK_CUDA_TINY");
	c->tiny = tiny && strcmp(tiny, "1") == 0;
	const char *op = "cuda context";
	if (rc == 0) {
		/* CUDA_VISIBLE_DEVICES chooses the GPU; the context takes the first */
		c->device = 0;
		if ((e = cudaSetDevice(c->device)) != cudaSuccess ||
		    (e = cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking)) != cudaSuccess)
			rc = qk_cuda_err(op, e, "creating the stream");
	}
	if (rc == 0) {
		cublasStatus_t s = cublasCreate(&c->blas);
		if (s == CUBLAS_STATUS_SUCCESS)
			s = cublasSetStream(c->blas, c->st);
		if (s != CUBLAS_STATUS_SUCCESS)
			rc = qk_cuda_blas_err(op, s, "creating the cuBLAS handle");
	}
	if (rc == 0) {
		cusolverStatus_t s = cusolverDnCreate(&c->solver);
		if (s == CUSOLVER_STATUS_SUCCESS)
			s = cusolverDnSetStream(c->solver, c->st);
		if (s == CUSOLVER_STATUS_SUCCESS)
			s = cusolverDnCreateParams(&c->sparams);
		if (s != CUSOLVER_STATUS_SUCCESS)
			rc = qk_cuda_solver_err(op, s, "creating the cuSOLVER handle");
	}
	if (rc) {
		release(c);
		return rc;
	}
	ctx->impl = c;
	return 0;
}

void qk_cuda_ctx_fini(qk_ctx *ctx)
{
	qk_cuda *c = qk_cu(ctx);
	if (!c)
		return;
	cudaSetDevice(c->device);
	cudaStreamSynchronize(c->st);
	release(c);
	ctx->impl = NULL;
}

/* ---------------------------------------------------------------- buffers */

static void *grow(qk_ctx *ctx, qk_cubuf *b, size_t n, const char *op)
{
	if (n <= b->n && b->p)
		return b->p;
	/* the stream may still use the old buffer (an operation that grows
	 * twice): wait for it before freeing */
	if (b->p) {
		cudaStreamSynchronize(qk_cu(ctx)->st);
		cudaFree(b->p);
	}
	b->p = NULL;
	b->n = 0;
	/* grow by half again at least, so that slowly rising sizes do not
	 * reallocate at every call */
	size_t want = n + n / 2;
	void *p = NULL;
	cudaError_t e = cudaMalloc(&p, want);
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		want = n;
		e = cudaMalloc(&p, want ? want : 256);
	}
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		qc_seterr(QC_ENOMEM, "%s: cannot allocate %zu bytes of device scratch memory", op, n);
		return NULL;
	}
	b->p = p;
	b->n = want;
	return p;
}

void *qk_cuda_scratch(qk_ctx *ctx, size_t n, const char *op)
{
	return grow(ctx, &qk_cu(ctx)->scratch, n, op);
}

void *qk_cuda_res(qk_ctx *ctx, size_t n, const char *op)
{
	return grow(ctx, &qk_cu(ctx)->res, n < 4096 ? 4096 : n, op);
}

void *qk_cuda_work(qk_ctx *ctx, size_t n, const char *op)
{
	return grow(ctx, &qk_cu(ctx)->work, n, op);
}

void *qk_cuda_hwork(qk_ctx *ctx, size_t n, const char *op)
{
	qk_cuda *c = qk_cu(ctx);
	if (n <= c->hwork_n && c->hwork)
		return c->hwork;
	free(c->hwork);
	c->hwork_n = 0;
	if (!(c->hwork = malloc(n ? n : 16))) {
		qc_seterr(QC_ENOMEM, "%s: cannot allocate %zu bytes", op, n);
		return NULL;
	}
	c->hwork_n = n;
	return c->hwork;
}

int qk_cuda_put(qk_ctx *ctx, void *dev, const void *host, size_t bytes, const char *op)
{
	if (bytes)
		CU_TRY(op, cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, qk_cu(ctx)->st));
	return 0;
}

int qk_cuda_get(qk_ctx *ctx, void *host, const void *dev, size_t bytes, const char *op)
{
	if (bytes)
		CU_TRY(op, cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, qk_cu(ctx)->st));
	return qk_cuda_sync(ctx, op);
}

/* ---------------------------------------------------------------- memory */

void *qk_cuda_alloc(qk_ctx *ctx, size_t bytes)
{
	if (qk_cuda_enter(ctx, "alloc"))
		return NULL;
	void *p = NULL;
	cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		qc_seterr(QC_ENOMEM, "cannot allocate %zu bytes of device memory: %s", bytes,
		          cudaGetErrorString(e));
		return NULL;
	}
	return p;
}

void qk_cuda_free(qk_ctx *ctx, void *p)
{
	if (!p || qk_cuda_enter(ctx, "free"))
		return;
	/* cudaFree waits for the device; errors here would be an earlier
	 * fault, already reported by the operation that caused it */
	(void)cudaFree(p);
	(void)cudaGetLastError();
}

int qk_cuda_upload(qk_ctx *ctx, void *dev_dst, const void *host_src, size_t bytes)
{
	QC_TRY(qk_cuda_enter(ctx, "upload"));
	QC_TRY(qk_cuda_put(ctx, dev_dst, host_src, bytes, "upload"));
	return qk_cuda_sync(ctx, "upload");
}

int qk_cuda_download(qk_ctx *ctx, void *host_dst, const void *dev_src, size_t bytes)
{
	QC_TRY(qk_cuda_enter(ctx, "download"));
	return qk_cuda_get(ctx, host_dst, dev_src, bytes, "download");
}

int qk_cuda_copy(qk_ctx *ctx, void *dst, const void *src, size_t bytes)
{
	QC_TRY(qk_cuda_enter(ctx, "copy"));
	if (bytes)
		CU_TRY("copy", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, qk_cu(ctx)->st));
	return qk_cuda_sync(ctx, "copy");
}

int qk_cuda_zero(qk_ctx *ctx, void *p, size_t bytes)
{
	QC_TRY(qk_cuda_enter(ctx, "zero"));
	if (bytes)
		CU_TRY("zero", cudaMemsetAsync(p, 0, bytes, qk_cu(ctx)->st));
	return qk_cuda_sync(ctx, "zero");
}

/* ---------------------------------------------------------------- conversion */

#define EW_THREADS 256
#define EW_BLOCKS 65535u

static __global__ void k_to_f32(float *dst, const unsigned char *src, int dt, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float v;
		switch (dt) {
		case QC_DT_BF16: v = qk_bf16_to_f32(((const uint16_t *)src)[i]); break;
		case QC_DT_F16: v = qk_f16_to_f32(((const uint16_t *)src)[i]); break;
		case QC_DT_F8_E4M3: v = qk_fp8_to_f32(src[i]); break;
		/* rounds to nearest even, overflow to +-Inf (cvt.rn.f32.f64) */
		default: v = (float)((const double *)src)[i]; break;
		}
		dst[i] = v;
	}
}

/* Host chunks are staged through device scratch of at most this many
 * bytes, then converted in place on the device. */
#define TO_F32_CHUNK ((size_t)64 << 20)

int qk_cuda_to_f32(qk_ctx *ctx, float *dst, const void *src, qc_dtype dt, size_t n)
{
	const char *op = "convert";
	QC_TRY(qk_cuda_enter(ctx, op));
	size_t es = qc_dtype_size(dt);
	if (!qc_dtype_is_float(dt) || es == 0 || qc_to_f32(NULL, NULL, dt, 0) < 0)
		return qc_seterr(QC_EUNSUPPORTED, "cannot convert %s to F32", qc_dtype_name(dt));
	if (n == 0)
		return 0;
	qk_cuda *c = qk_cu(ctx);
	if (dt == QC_DT_F32) {
		CU_TRY(op, cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyHostToDevice, c->st));
		return qk_cuda_sync(ctx, op);
	}
	size_t per = qk_cu_size(ctx, TO_F32_CHUNK, 4096) / es;
	if (per > n)
		per = n;
	unsigned char *raw = (unsigned char *)qk_cuda_scratch(ctx, per * es, op);
	if (!raw)
		return QC_ENOMEM;
	for (size_t i0 = 0; i0 < n; i0 += per) {
		size_t m = n - i0 < per ? n - i0 : per;
		/* pageable source: staged by the driver before the call returns,
		 * and the stream orders this copy after the previous kernel */
		CU_TRY(op, cudaMemcpyAsync(raw, (const unsigned char *)src + i0 * es, m * es,
		                           cudaMemcpyHostToDevice, c->st));
		QK_LAUNCH(k_to_f32, qk_blocks(m, EW_THREADS, EW_BLOCKS), EW_THREADS, 0, c->st, dst + i0,
		          (const unsigned char *)raw, (int)dt, m);
		LAUNCH_TRY(op);
	}
	return qk_cuda_sync(ctx, op);
}

static __global__ void k_dequant(float *w, const unsigned char *codes, int fp8, int64_t rows,
                                 int64_t cols, const float *scale, const float *zp, int64_t srs,
                                 int64_t group)
{
	size_t n = (size_t)rows * (size_t)cols;
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		int64_t r = (int64_t)(i / (size_t)cols), c = (int64_t)(i % (size_t)cols);
		int64_t g = r * srs + c / group;
		float q = fp8 ? qk_fp8_to_f32(codes[i]) : (float)(int8_t)codes[i];
		w[i] = __fmul_rn(zp ? __fsub_rn(q, zp[g]) : q, scale[g]);
	}
}

int qk_cuda_dequant(qk_ctx *ctx, float *w, const void *codes, qc_dtype code_dt, int64_t rows,
                    int64_t cols, const float *scale, const float *zero_point, int64_t scale_rs,
                    int64_t group)
{
	const char *op = "dequantize";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (code_dt != QC_DT_I8 && code_dt != QC_DT_F8_E4M3)
		return qc_seterr(QC_EUNSUPPORTED, "cannot dequantize %s codes", qc_dtype_name(code_dt));
	if (rows < 0 || cols <= 0 || group <= 0 || scale_rs < 0)
		return qc_seterr(QC_EINVAL, "dequantize: invalid shape or group");
	if (rows == 0)
		return 0;
	qk_cuda *c = qk_cu(ctx);
	/* codes, scales and zero points are host memory: the scales cover
	 * (rows - 1) * scale_rs + ng entries (one for a tensor-wide scale) */
	size_t nc = (size_t)(rows * cols);
	int64_t ng = (cols + group - 1) / group;
	size_t ns = scale_rs ? (size_t)((rows - 1) * scale_rs + ng) : (size_t)ng;
	char *s = (char *)qk_cuda_scratch(ctx, qk_align256(nc) + 2 * qk_align256(ns * 4), op);
	if (!s)
		return QC_ENOMEM;
	unsigned char *dc = (unsigned char *)qk_carve(&s, nc);
	float *ds = (float *)qk_carve(&s, ns * 4), *dz = NULL;
	QC_TRY(qk_cuda_put(ctx, dc, codes, nc, op));
	QC_TRY(qk_cuda_put(ctx, ds, scale, ns * 4, op));
	if (zero_point) {
		dz = (float *)qk_carve(&s, ns * 4);
		QC_TRY(qk_cuda_put(ctx, dz, zero_point, ns * 4, op));
	}
	QK_LAUNCH(k_dequant, qk_blocks(nc, EW_THREADS, EW_BLOCKS), EW_THREADS, 0, c->st, w,
	          (const unsigned char *)dc, code_dt == QC_DT_F8_E4M3 ? 1 : 0, rows, cols,
	          (const float *)ds, (const float *)dz, scale_rs, group);
	LAUNCH_TRY(op);
	return qk_cuda_sync(ctx, op);
}

static __global__ void k_bf16_store(uint16_t *dst, const float *src, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		dst[i] = qk_f32_to_bf16(src[i]);
}

static __global__ void k_bf16_load(float *dst, const uint16_t *src, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		dst[i] = qk_bf16_to_f32(src[i]);
}

int qk_cuda_bf16_store(qk_ctx *ctx, void *dst, const float *src, size_t n)
{
	QC_TRY(qk_cuda_enter(ctx, "bf16 store"));
	if (n == 0)
		return 0;
	QK_LAUNCH(k_bf16_store, qk_blocks(n, EW_THREADS, EW_BLOCKS), EW_THREADS, 0, qk_cu(ctx)->st,
	          (uint16_t *)dst, src, n);
	LAUNCH_TRY("bf16 store");
	return qk_cuda_sync(ctx, "bf16 store");
}

int qk_cuda_bf16_load(qk_ctx *ctx, float *dst, const void *src, size_t n)
{
	QC_TRY(qk_cuda_enter(ctx, "bf16 load"));
	if (n == 0)
		return 0;
	QK_LAUNCH(k_bf16_load, qk_blocks(n, EW_THREADS, EW_BLOCKS), EW_THREADS, 0, qk_cu(ctx)->st,
	          dst, (const uint16_t *)src, n);
	LAUNCH_TRY("bf16 load");
	return qk_cuda_sync(ctx, "bf16 load");
}

/* x = e4m3(x * (1 / s)) * s, as kernels/cpu's fp8_qdq_scaled */
static __global__ void k_fp8_qdq(float *x, size_t n, float s, float inv)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		x[i] = __fmul_rn(qk_fp8_qdq1(__fmul_rn(x[i], inv)), s);
}

int qk_cuda_fp8_qdq(qk_ctx *ctx, float *x, size_t n, float scale)
{
	const char *op = "fp8 quantize-dequantize";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (!(scale > 0) || !isfinite(scale))
		return qc_seterr(QC_EINVAL, "fp8 quantize-dequantize: scale %g is not positive and finite",
		                 (double)scale);
	if (n == 0)
		return 0;
	/* 1 / s rounded once on the host, as the CPU does */
	float inv = 1.0f / scale;
	QK_LAUNCH(k_fp8_qdq, qk_blocks(n, EW_THREADS, EW_BLOCKS), EW_THREADS, 0, qk_cu(ctx)->st, x,
	          n, scale, inv);
	LAUNCH_TRY(op);
	return qk_cuda_sync(ctx, op);
}
