/*
 * cuda_emu.cc - the CPU stand-in for the CUDA runtime, cuBLAS and cuSOLVER
 * that cuda_emu.h declares (what it checks and why: that header).
 */
#include "cuda_emu.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <ucontext.h>

#include <vector>

dim3 threadIdx, blockIdx, blockDim, gridDim;

void emu_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "cuda emulator: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	abort();
}

/* ---------------------------------------------------------------- memory */

struct range {
	char *p;
	size_t n;
};
static std::vector<range> ranges;
static cudaError_t last_error = cudaSuccess;

static cudaError_t fail(cudaError_t e)
{
	last_error = e;
	return e;
}

int emu_is_device(const void *p, size_t bytes)
{
	const char *c = (const char *)p;
	for (const range &r : ranges)
		if (c >= r.p && c <= r.p + r.n && (size_t)(r.p + r.n - c) >= bytes)
			return 1;
	return 0;
}

/* QK_EMU_NO_DEVICE=1: behave as a machine without a GPU */
cudaError_t cudaGetDeviceCount(int *n)
{
	const char *e = getenv("QK_EMU_NO_DEVICE");
	if (e && strcmp(e, "1") == 0) {
		*n = 0;
		return fail(cudaErrorNoDevice);
	}
	*n = 1;
	return cudaSuccess;
}

cudaError_t cudaSetDevice(int dev) { return dev == 0 ? cudaSuccess : fail(cudaErrorInvalidValue); }
cudaError_t cudaGetDevice(int *dev)
{
	*dev = 0;
	return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes)
{
	size_t n = (bytes + 255) / 256 * 256;
	void *q = aligned_alloc(256, n ? n : 256);
	if (!q)
		return fail(cudaErrorMemoryAllocation);
	memset(q, 0xFF, n ? n : 256);
	ranges.push_back(range{ (char *)q, bytes });
	*p = q;
	return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
	if (!p)
		return cudaSuccess;
	for (size_t i = 0; i < ranges.size(); i++)
		if (ranges[i].p == p) {
			ranges.erase(ranges.begin() + (long)i);
			free(p);
			return cudaSuccess;
		}
	emu_fail("cudaFree of %p, which cudaMalloc did not return", p);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t st)
{
	(void)st;
	if (bytes == 0)
		return cudaSuccess;
	int dd = emu_is_device(dst, bytes), sd = emu_is_device(src, bytes);
	int want_dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
	int want_sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
	if (dd != want_dd || sd != want_sd)
		emu_fail("cudaMemcpyAsync kind %d of %zu bytes from %p (%s) to %p (%s)", (int)kind, bytes,
		         src, sd ? "device" : "host", dst, dd ? "device" : "host");
	memmove(dst, src, bytes);
	return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t st)
{
	(void)st;
	if (bytes && !emu_is_device(p, bytes))
		emu_fail("cudaMemsetAsync of %zu bytes at %p: not device memory", bytes, p);
	memset(p, v, bytes);
	return cudaSuccess;
}

struct emu_stream {
	int dummy;
};

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *st, unsigned flags)
{
	(void)flags;
	*st = new emu_stream();
	return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t st)
{
	delete st;
	return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t st)
{
	(void)st;
	return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
	cudaError_t e = last_error;
	last_error = cudaSuccess;
	return e;
}

const char *cudaGetErrorString(cudaError_t e)
{
	switch (e) {
	case cudaSuccess: return "no error";
	case cudaErrorInvalidValue: return "invalid argument";
	case cudaErrorMemoryAllocation: return "out of memory";
	case cudaErrorNoDevice: return "no CUDA-capable device is detected";
	}
	return "unknown error";
}

/* ---------------------------------------------------------------- fibers */

enum { RUN = 0, WAIT_BLOCK, WAIT_WARP, DONE };

/* Switches between fibers are GCC's __builtin_setjmp/__builtin_longjmp
 * (stack and frame pointers and the resume address: no signal mask, no
 * unwinding), the cheapest switch there is without assembly; the
 * emulator switches at every barrier of every thread. */
typedef void *jbuf[5];

static void __attribute__((noinline, noreturn)) jump_to(jbuf b)
{
	__builtin_longjmp(b, 1);
}

struct fiber {
	ucontext_t uc;
	jbuf jb;
	int started;
	char *stack;
	int state;
	unsigned gen;       /* the barrier generation it waits to see pass */
	dim3 tid;
	int linear;
};

#define STACK_BYTES (128 * 1024)

static std::vector<fiber> fibers;
#if !defined(__x86_64__)
static ucontext_t sched_uc;
#endif
static jbuf sched_jb;
static fiber *cur;
static const std::function<void()> *body;
static std::vector<char> dyn_smem;
/* the block's barrier and each warp's */
static int live, arrived;
static unsigned gen;
static std::vector<int> wlive, warrived, wsize;
static std::vector<unsigned> wgen;
static std::vector<uint64_t> slots;

void *emu_dyn_smem(void) { return dyn_smem.data(); }
int emu_lane(void) { return cur->linear & 31; }

static void __attribute__((noinline)) yield_to_sched(void)
{
	if (!__builtin_setjmp(cur->jb))
		jump_to(sched_jb);
}

static void release_block_if_complete(void)
{
	if (arrived > 0 && arrived == live) {
		gen++;
		arrived = 0;
	}
}

static void release_warp_if_complete(int w)
{
	if (warrived[w] > 0 && warrived[w] == wlive[w]) {
		if (wlive[w] != wsize[w])
			emu_fail("warp %d: a shuffle or __syncwarp with %d of its %d lanes (the others "
			         "returned): undefined on a GPU", w, wlive[w], wsize[w]);
		wgen[w]++;
		warrived[w] = 0;
	}
}

void __syncthreads(void)
{
	cur->state = WAIT_BLOCK;
	cur->gen = gen;
	arrived++;
	release_block_if_complete();
	while (cur->gen == gen)
		yield_to_sched();
	cur->state = RUN;
}

void __syncwarp(unsigned mask)
{
	if (mask != 0xffffffffu)
		emu_fail("__syncwarp with a partial mask is not emulated");
	int w = cur->linear / 32;
	cur->state = WAIT_WARP;
	cur->gen = wgen[w];
	warrived[w]++;
	release_warp_if_complete(w);
	while (cur->gen == wgen[w])
		yield_to_sched();
	cur->state = RUN;
}

uint64_t emu_exchange(uint64_t mine, int src_lane)
{
	int w = cur->linear / 32;
	if (src_lane < 0 || src_lane >= wsize[w])
		emu_fail("shuffle from lane %d of a warp of %d", src_lane, wsize[w]);
	slots[(size_t)cur->linear] = mine;
	__syncwarp();
	uint64_t r = slots[(size_t)(w * 32 + src_lane)];
	__syncwarp();
	return r;
}

static void fiber_main(void)
{
	(*body)();
	cur->state = DONE;
	live--;
	int w = cur->linear / 32;
	wlive[w]--;
	release_block_if_complete();
	release_warp_if_complete(w);
	jump_to(sched_jb);
}

/* Run fb until it reaches a barrier or ends (the loop variables of the
 * caller stay out of the frame that _setjmp saves). A fiber starts on its
 * own stack: on x86-64 by pointing the stack pointer there and calling
 * fiber_main, which never returns (it leaves by _longjmp); elsewhere
 * through makecontext, which costs two system calls. */
static void __attribute__((noinline)) resume(fiber &fb)
{
	if (__builtin_setjmp(sched_jb))
		return; /* back from the fiber */
	if (!fb.started) {
		fb.started = 1;
#if defined(__x86_64__)
		char *top = (char *)(((uintptr_t)(fb.stack + STACK_BYTES)) & ~(uintptr_t)15);
		__asm__ volatile("movq %0, %%rsp\n\t"
		                 "callq *%1\n\t"
		                 :
		                 : "r"(top), "r"(fiber_main)
		                 : "memory");
		__builtin_unreachable();
#else
		swapcontext(&sched_uc, &fb.uc);
#endif
	} else {
		jump_to(fb.jb);
	}
}

static int runnable(const fiber &f)
{
	if (f.state == DONE)
		return 0;
	if (f.state == WAIT_BLOCK)
		return f.gen != gen;
	if (f.state == WAIT_WARP)
		return f.gen != wgen[(size_t)(f.linear / 32)];
	return 1;
}

void emu_run(dim3 grid, dim3 block, size_t smem, std::function<void()> f)
{
	unsigned nt = block.x * block.y * block.z;
	if (nt == 0 || nt > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 ||
	    grid.z > 65535)
		emu_fail("invalid launch: grid %u x %u x %u, block %u x %u x %u", grid.x, grid.y, grid.z,
		         block.x, block.y, block.z);
	if (smem > 227 * 1024)
		emu_fail("launch with %zu bytes of dynamic shared memory", smem);
	if (fibers.size() < nt) {
		size_t old = fibers.size();
		fibers.resize(nt);
		for (size_t i = old; i < nt; i++)
			fibers[i].stack = (char *)malloc(STACK_BYTES);
	}
	body = &f;
	gridDim = grid;
	blockDim = block;
	dyn_smem.assign(smem ? smem : 16, (char)0xFF);
	unsigned nw = (nt + 31) / 32;
	wlive.assign(nw, 0);
	warrived.assign(nw, 0);
	wsize.assign(nw, 0);
	wgen.assign(nw, 0);
	slots.assign((size_t)nw * 32, 0);
	for (unsigned bz = 0; bz < grid.z; bz++)
		for (unsigned by = 0; by < grid.y; by++)
			for (unsigned bx = 0; bx < grid.x; bx++) {
				blockIdx = dim3(bx, by, bz);
				live = (int)nt;
				arrived = 0;
				gen = 0;
				for (unsigned w = 0; w < nw; w++) {
					wsize[w] = wlive[w] = (int)(w + 1 < nw ? 32 : nt - 32 * w);
					warrived[w] = 0;
					wgen[w] = 0;
				}
				for (unsigned i = 0; i < nt; i++) {
					fiber &fb = fibers[i];
					fb.state = RUN;
					fb.started = 0;
					fb.gen = 0;
					fb.linear = (int)i;
					fb.tid = dim3(i % block.x, (i / block.x) % block.y, i / (block.x * block.y));
#if !defined(__x86_64__)
					getcontext(&fb.uc);
					fb.uc.uc_stack.ss_sp = fb.stack;
					fb.uc.uc_stack.ss_size = STACK_BYTES;
					fb.uc.uc_link = NULL;
					makecontext(&fb.uc, fiber_main, 0);
#endif
				}
				while (live > 0) {
					int progress = 0;
					for (unsigned i = 0; i < nt; i++) {
						fiber &fb = fibers[i];
						if (!runnable(fb))
							continue;
						cur = &fb;
						threadIdx = fb.tid;
						progress = 1;
						resume(fb);
					}
					if (!progress)
						emu_fail("deadlock in block (%u, %u, %u): %d threads wait at barriers that "
						         "the others never reach", bx, by, bz, live);
				}
			}
	cur = NULL;
}

/* ---------------------------------------------------------------- cuBLAS */

struct emu_blas {
	int dummy;
};

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
	*h = new emu_blas();
	return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h)
{
	delete h;
	return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t st)
{
	(void)h;
	(void)st;
	return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m)
{
	(void)h;
	(void)m;
	return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t s)
{
	return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_INVALID_VALUE";
}

static void need_dev(const char *fn, const void *p)
{
	if (!emu_is_device(p, 0))
		emu_fail("%s: %p is not device memory", fn, p);
}

/* an input as the compute type reads it: FP32, or rounded (to nearest
 * even) to TF32's 10 or BF16's 7 mantissa bits */
static float round_in(float x, cublasComputeType_t c)
{
	if (c == CUBLAS_COMPUTE_32F || !isfinite(x))
		return x;
	int drop = c == CUBLAS_COMPUTE_32F_FAST_TF32 ? 13 : 16;
	uint32_t u;
	memcpy(&u, &x, 4);
	u += (1u << (drop - 1)) - 1 + ((u >> drop) & 1);
	u &= ~((1u << drop) - 1);
	memcpy(&x, &u, 4);
	return x;
}

/* column-major element (i, j) of op(X), X stored with leading dimension ld */
static inline float opel(const float *X, int64_t ld, cublasOperation_t t, int64_t i, int64_t j)
{
	return t == CUBLAS_OP_N ? X[i + j * ld] : X[j + i * ld];
}

static cublasStatus_t gemm1(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n,
                            int64_t k, float alpha, const float *A, int64_t lda, const float *B,
                            int64_t ldb, float beta, float *C, int64_t ldc, cublasComputeType_t comp)
{
	if (m < 0 || n < 0 || k < 0 || ldc < (m > 1 ? m : 1) ||
	    lda < ((ta == CUBLAS_OP_N ? m : k) > 1 ? (ta == CUBLAS_OP_N ? m : k) : 1) ||
	    ldb < ((tb == CUBLAS_OP_N ? k : n) > 1 ? (tb == CUBLAS_OP_N ? k : n) : 1))
		return CUBLAS_STATUS_INVALID_VALUE;
	if (m == 0 || n == 0)
		return CUBLAS_STATUS_SUCCESS;
	need_dev("gemm", C);
	if (k > 0) {
		need_dev("gemm", A);
		need_dev("gemm", B);
	}
	for (int64_t j = 0; j < n; j++)
		for (int64_t i = 0; i < m; i++) {
			double s = 0;
			for (int64_t l = 0; l < k; l++)
				s += (double)round_in(opel(A, lda, ta, i, l), comp) *
				     (double)round_in(opel(B, ldb, tb, l, j), comp);
			float *c = &C[i + j * ldc];
			/* beta 0: C is not read (it may hold NaN) */
			*c = beta == 0.0f ? (float)(alpha * s) : (float)(alpha * s + (double)beta * *c);
		}
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx_64(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                               int64_t m, int64_t n, int64_t k, const void *alpha, const void *A,
                               cudaDataType at, int64_t lda, const void *B, cudaDataType bt,
                               int64_t ldb, const void *beta, void *C, cudaDataType ct,
                               int64_t ldc, cublasComputeType_t comp, cublasGemmAlgo_t algo)
{
	(void)h;
	(void)algo;
	if (at != CUDA_R_32F || bt != CUDA_R_32F || ct != CUDA_R_32F)
		return CUBLAS_STATUS_NOT_SUPPORTED;
	return gemm1(ta, tb, m, n, k, *(const float *)alpha, (const float *)A, lda, (const float *)B,
	             ldb, *(const float *)beta, (float *)C, ldc, comp);
}

cublasStatus_t cublasGemmStridedBatchedEx_64(
    cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k,
    const void *alpha, const void *A, cudaDataType at, int64_t lda, long long sa, const void *B,
    cudaDataType bt, int64_t ldb, long long sb, const void *beta, void *C, cudaDataType ct,
    int64_t ldc, long long sc, int64_t batch, cublasComputeType_t comp, cublasGemmAlgo_t algo)
{
	(void)algo;
	for (int64_t i = 0; i < batch; i++) {
		cublasStatus_t s = cublasGemmEx_64(h, ta, tb, m, n, k, alpha, (const float *)A + i * sa, at,
		                                   lda, (const float *)B + i * sb, bt, ldb, beta,
		                                   (float *)C + i * sc, ct, ldc, comp, algo);
		if (s != CUBLAS_STATUS_SUCCESS)
			return s;
	}
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSsyrk_64(cublasHandle_t h, cublasFillMode_t uplo, cublasOperation_t trans,
                              int64_t n, int64_t k, const float *alpha, const float *A,
                              int64_t lda, const float *beta, float *C, int64_t ldc)
{
	(void)h;
	/* C = alpha op(A) op(A)^T + beta C, op(A) [n, k]: only uplo's triangle */
	if (n < 0 || k < 0 || ldc < (n > 1 ? n : 1) ||
	    lda < ((trans == CUBLAS_OP_N ? n : k) > 1 ? (trans == CUBLAS_OP_N ? n : k) : 1))
		return CUBLAS_STATUS_INVALID_VALUE;
	need_dev("syrk", A);
	need_dev("syrk", C);
	for (int64_t j = 0; j < n; j++)
		for (int64_t i = 0; i < n; i++) {
			if (uplo == CUBLAS_FILL_MODE_LOWER ? i < j : i > j)
				continue;
			double s = 0;
			for (int64_t l = 0; l < k; l++)
				s += (double)opel(A, lda, trans, i, l) * (double)opel(A, lda, trans, j, l);
			float *c = &C[i + j * ldc];
			*c = *beta == 0.0f ? (float)(*alpha * s) : (float)(*alpha * s + (double)*beta * *c);
		}
	return CUBLAS_STATUS_SUCCESS;
}

/* element (i, j) of the triangular op(A) as trmm/trtri read it: the other
 * triangle is never read, a unit diagonal is 1 */
static inline float tri_el(const float *A, int64_t lda, cublasFillMode_t uplo,
                           cublasOperation_t t, cublasDiagType_t diag, int64_t i, int64_t j)
{
	int64_t r = t == CUBLAS_OP_N ? i : j, c = t == CUBLAS_OP_N ? j : i;
	if (r == c)
		return diag == CUBLAS_DIAG_UNIT ? 1.0f : A[r + c * lda];
	if (uplo == CUBLAS_FILL_MODE_LOWER ? r < c : r > c)
		return 0.0f;
	return A[r + c * lda];
}

cublasStatus_t cublasStrmm_64(cublasHandle_t h, cublasSideMode_t side, cublasFillMode_t uplo,
                              cublasOperation_t trans, cublasDiagType_t diag, int64_t m,
                              int64_t n, const float *alpha, const float *A, int64_t lda,
                              const float *B, int64_t ldb, float *C, int64_t ldc)
{
	(void)h;
	int64_t ka = side == CUBLAS_SIDE_LEFT ? m : n;
	if (m < 0 || n < 0 || lda < (ka > 1 ? ka : 1) || ldb < (m > 1 ? m : 1) ||
	    ldc < (m > 1 ? m : 1))
		return CUBLAS_STATUS_INVALID_VALUE;
	need_dev("trmm", A);
	need_dev("trmm", B);
	need_dev("trmm", C);
	std::vector<float> out((size_t)(m * n));
	for (int64_t j = 0; j < n; j++)
		for (int64_t i = 0; i < m; i++) {
			double s = 0;
			if (side == CUBLAS_SIDE_LEFT)
				for (int64_t l = 0; l < m; l++)
					s += (double)tri_el(A, lda, uplo, trans, diag, i, l) * B[l + j * ldb];
			else
				for (int64_t l = 0; l < n; l++)
					s += (double)B[i + l * ldb] * tri_el(A, lda, uplo, trans, diag, l, j);
			out[(size_t)(i + j * m)] = (float)(*alpha * s);
		}
	for (int64_t j = 0; j < n; j++)
		for (int64_t i = 0; i < m; i++)
			C[i + j * ldc] = out[(size_t)(i + j * m)];
	return CUBLAS_STATUS_SUCCESS;
}

/* ---------------------------------------------------------------- cuSOLVER */

struct emu_solver {
	int dummy;
};
struct emu_sparams {
	int dummy;
};

cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t *h)
{
	*h = new emu_solver();
	return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t h)
{
	delete h;
	return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t h, cudaStream_t st)
{
	(void)h;
	(void)st;
	return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnCreateParams(cusolverDnParams_t *p)
{
	*p = new emu_sparams();
	return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDestroyParams(cusolverDnParams_t p)
{
	delete p;
	return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXpotrf_bufferSize(cusolverDnHandle_t h, cusolverDnParams_t p,
                                             cublasFillMode_t uplo, int64_t n, cudaDataType at,
                                             const void *A, int64_t lda, cudaDataType ct,
                                             size_t *dev_bytes, size_t *host_bytes)
{
	(void)h, (void)p, (void)uplo, (void)at, (void)A, (void)lda, (void)ct;
	*dev_bytes = (size_t)(n > 0 ? n : 1) * 16;
	*host_bytes = 0;
	return CUSOLVER_STATUS_SUCCESS;
}

/* LAPACK's unblocked potf2 in double: lower A = L L^T (column j from the
 * rows above), upper A = U^T U; only that triangle is read or written. info
 * j + 1 at the first minor that is not positive (or NaN), A's triangle then
 * partly factored. */
cusolverStatus_t cusolverDnXpotrf(cusolverDnHandle_t h, cusolverDnParams_t p,
                                  cublasFillMode_t uplo, int64_t n, cudaDataType at, void *Av,
                                  int64_t lda, cudaDataType ct, void *dbuf, size_t dbytes,
                                  void *hbuf, size_t hbytes, int *info)
{
	(void)h, (void)p, (void)at, (void)ct, (void)hbuf, (void)hbytes;
	if (n < 0 || lda < (n > 1 ? n : 1))
		return CUSOLVER_STATUS_INVALID_VALUE;
	need_dev("potrf", Av);
	need_dev("potrf", info);
	size_t need = (size_t)(n > 0 ? n : 1) * 16;
	if (dbytes < need || !emu_is_device(dbuf, dbytes))
		emu_fail("potrf: workspace of %zu bytes at %p, %zu needed", dbytes, dbuf, need);
	float *A = (float *)Av;
	int lower = uplo == CUBLAS_FILL_MODE_LOWER;
	/* L(i, j) is A(i, j) for lower, A(j, i) (U's transpose) for upper */
#define EL(i, j) (lower ? A[(i) + (j) * lda] : A[(j) + (i) * lda])
	*info = 0;
	for (int64_t j = 0; j < n; j++) {
		double s = EL(j, j);
		for (int64_t k = 0; k < j; k++)
			s -= (double)EL(j, k) * EL(j, k);
		if (!(s > 0)) {
			EL(j, j) = (float)s;
			*info = (int)(j + 1);
			return CUSOLVER_STATUS_SUCCESS;
		}
		float d = (float)sqrt(s);
		EL(j, j) = d;
		for (int64_t i = j + 1; i < n; i++) {
			double t = EL(i, j);
			for (int64_t k = 0; k < j; k++)
				t -= (double)EL(i, k) * EL(j, k);
			EL(i, j) = (float)(t / d);
		}
	}
#undef EL
	return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXtrtri_bufferSize(cusolverDnHandle_t h, cublasFillMode_t uplo,
                                             cublasDiagType_t diag, int64_t n, cudaDataType at,
                                             void *A, int64_t lda, size_t *dev_bytes,
                                             size_t *host_bytes)
{
	(void)h, (void)uplo, (void)diag, (void)at, (void)A, (void)lda;
	*dev_bytes = (size_t)(n > 0 ? n : 1) * 8;
	*host_bytes = 16;
	return CUSOLVER_STATUS_SUCCESS;
}

/* inverse of a triangular A in place (only its triangle read or written);
 * info i + 1 for the first zero diagonal entry */
cusolverStatus_t cusolverDnXtrtri(cusolverDnHandle_t h, cublasFillMode_t uplo,
                                  cublasDiagType_t diag, int64_t n, cudaDataType at, void *Av,
                                  int64_t lda, void *dbuf, size_t dbytes, void *hbuf,
                                  size_t hbytes, int *info)
{
	(void)h, (void)at;
	if (n < 0 || lda < (n > 1 ? n : 1))
		return CUSOLVER_STATUS_INVALID_VALUE;
	need_dev("trtri", Av);
	need_dev("trtri", info);
	if (dbytes < (size_t)(n > 0 ? n : 1) * 8 || !emu_is_device(dbuf, dbytes) || hbytes < 16 ||
	    !hbuf || emu_is_device(hbuf, 0))
		emu_fail("trtri: workspaces of %zu (device) and %zu (host) bytes too small or misplaced",
		         dbytes, hbytes);
	float *A = (float *)Av;
	*info = 0;
	for (int64_t i = 0; i < n; i++)
		if (diag == CUBLAS_DIAG_NON_UNIT && A[i + i * lda] == 0.0f) {
			*info = (int)(i + 1);
			return CUSOLVER_STATUS_SUCCESS;
		}
	/* X = A^-1 column by column by substitution, in double */
	std::vector<double> X((size_t)(n * n), 0.0);
	int lower = uplo == CUBLAS_FILL_MODE_LOWER;
	for (int64_t j = 0; j < n; j++) {
		if (lower) {
			for (int64_t i = j; i < n; i++) {
				double s = i == j ? 1.0 : 0.0;
				for (int64_t k = j; k < i; k++)
					s -= (double)A[i + k * lda] * X[(size_t)(k + j * n)];
				X[(size_t)(i + j * n)] = diag == CUBLAS_DIAG_UNIT ? s : s / A[i + i * lda];
			}
		} else {
			for (int64_t i = j; i >= 0; i--) {
				double s = i == j ? 1.0 : 0.0;
				for (int64_t k = i + 1; k <= j; k++)
					s -= (double)A[i + k * lda] * X[(size_t)(k + j * n)];
				X[(size_t)(i + j * n)] = diag == CUBLAS_DIAG_UNIT ? s : s / A[i + i * lda];
			}
		}
	}
	for (int64_t j = 0; j < n; j++)
		for (int64_t i = 0; i < n; i++)
			if (lower ? i >= j : i <= j)
				A[i + j * lda] = (float)X[(size_t)(i + j * n)];
	return CUSOLVER_STATUS_SUCCESS;
}
