/*
 * cuda_emu.h - the part of CUDA that kernels/cuda uses, on the CPU, for
 * testing the CUDA backend's logic where there is no GPU (tests/cuda,
 * doc/cuda.md "The emulator").
 *
 * kernels/cuda/qk_cuda.h includes this header instead of the CUDA headers
 * when QK_CUDA_EMU is defined, and the .cu files are then compiled as plain
 * C++ by the host compiler. What it provides:
 *
 *  - the runtime calls the backend makes (memory, copies, streams, errors),
 *    synchronous, on host memory; cudaMalloc'd ranges are registered and
 *    filled with 0xFF bytes (NaN floats), so a read of memory nothing wrote
 *    shows as NaN, and every copy checks that its device side lies in a
 *    registered range and its host side does not;
 *  - kernel launches (QK_LAUNCH in qk_cuda.h calls emu_launch): blocks run
 *    one after another, each thread of a block as a fiber (ucontext) that
 *    runs until it reaches a barrier (__syncthreads, __syncwarp, a shuffle)
 *    or ends, so a missing barrier shows as a read of stale shared memory;
 *    every pointer argument of a kernel must be NULL or inside a cudaMalloc'd
 *    range (a host pointer handed to a kernel aborts the run);
 *  - shuffles and warp barriers need every lane of the warp (a lane that
 *    returned early aborts the run, as it is undefined behaviour on a GPU);
 *  - cuBLAS and cuSOLVER calls as straightforward column-major loops
 *    written from the libraries' documentation, independently of the
 *    backend's row-major mapping, which the tests therefore check. The fast
 *    compute types round their inputs to TF32 or BF16 first.
 *
 * It is test code: single-threaded, slow, and nothing in it is used by the
 * tools.
 */
#ifndef QK_CUDA_EMU_H
#define QK_CUDA_EMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <type_traits>

/* ---------------------------------------------------------------- qualifiers */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

/* ---------------------------------------------------------------- runtime */

typedef enum cudaError {
	cudaSuccess = 0,
	cudaErrorInvalidValue = 1,
	cudaErrorMemoryAllocation = 2,
	cudaErrorNoDevice = 100,
} cudaError_t;

typedef enum cudaMemcpyKind {
	cudaMemcpyHostToHost = 0,
	cudaMemcpyHostToDevice = 1,
	cudaMemcpyDeviceToHost = 2,
	cudaMemcpyDeviceToDevice = 3,
} cudaMemcpyKind;

typedef struct emu_stream *cudaStream_t;
#define cudaStreamNonBlocking 0x01

struct dim3 {
	unsigned x, y, z;
	dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

extern dim3 threadIdx, blockIdx, blockDim, gridDim;
static const int warpSize = 32;

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaGetDevice(int *dev);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t st);
cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t st);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *st, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t st);
cudaError_t cudaStreamSynchronize(cudaStream_t st);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t e);

/* 1 when [p, p + bytes) lies inside one cudaMalloc'd range */
int emu_is_device(const void *p, size_t bytes);
/* abort with a message (a broken rule of the programming model) */
void emu_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---------------------------------------------------------------- launches */

void emu_run(dim3 grid, dim3 block, size_t smem, std::function<void()> body);
void *emu_dyn_smem(void);

template <typename T> static void emu_check_arg(const char *kernel, int i, T v)
{
	if constexpr (std::is_pointer<T>::value) {
		if (v && !emu_is_device((const void *)v, 0))
			emu_fail("kernel %s: argument %d is not device memory (%p)", kernel, i, (const void *)v);
	}
	(void)kernel;
	(void)i;
	(void)v;
}

template <typename... P, typename... A>
static void emu_launch(const char *name, dim3 grid, dim3 block, size_t smem, cudaStream_t st,
                       void (*kern)(P...), A... args)
{
	(void)st;
	int i = 0;
	(emu_check_arg(name, i++, args), ...);
	emu_run(grid, block, smem, [=]() { kern(args...); });
}

/* ---------------------------------------------------------------- barriers and shuffles */

void __syncthreads(void);
void __syncwarp(unsigned mask = 0xffffffffu);
/* the lanes' 8-byte slots: write own, barrier, read another's, barrier */
uint64_t emu_exchange(uint64_t mine, int src_lane);
int emu_lane(void);

template <typename T> static T emu_shfl_idx(T v, int src)
{
	static_assert(sizeof(T) <= 8, "shuffle of a type over 8 bytes");
	uint64_t b = 0;
	memcpy(&b, &v, sizeof v);
	uint64_t r = emu_exchange(b, src);
	T out;
	memcpy(&out, &r, sizeof out);
	return out;
}

template <typename T> static T __shfl_sync(unsigned mask, T v, int src, int width = 32)
{
	(void)mask;
	int lane = emu_lane();
	return emu_shfl_idx(v, (lane & ~(width - 1)) + (src & (width - 1)));
}

template <typename T> static T __shfl_xor_sync(unsigned mask, T v, int m, int width = 32)
{
	(void)mask;
	int lane = emu_lane();
	int src = lane ^ m;
	if ((src & ~(width - 1)) != (lane & ~(width - 1)))
		src = lane;
	return emu_shfl_idx(v, src);
}

template <typename T> static T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32)
{
	(void)mask;
	int lane = emu_lane();
	int src = lane + (int)d;
	if ((src & ~(width - 1)) != (lane & ~(width - 1)))
		src = lane;
	return emu_shfl_idx(v, src);
}

/* ---------------------------------------------------------------- atomics (fibers never
 * interleave between barriers, so plain operations are atomic) */

static inline unsigned long long atomicMin(unsigned long long *p, unsigned long long v)
{
	unsigned long long o = *p;
	if (v < o)
		*p = v;
	return o;
}

static inline unsigned atomicMax(unsigned *p, unsigned v)
{
	unsigned o = *p;
	if (v > o)
		*p = v;
	return o;
}

static inline int atomicOr(int *p, int v)
{
	int o = *p;
	*p = o | v;
	return o;
}

static inline double atomicAdd(double *p, double v)
{
	double o = *p;
	*p = o + v;
	return o;
}

/* ---------------------------------------------------------------- intrinsics (the
 * emulator is compiled with -ffp-contract=off: each is one IEEE operation) */

static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline unsigned __float_as_uint(float f)
{
	unsigned u;
	memcpy(&u, &f, 4);
	return u;
}
static inline float __uint_as_float(unsigned u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}
template <typename T> static inline T __ldg(const T *p) { return *p; }

/* ---------------------------------------------------------------- cuBLAS */

typedef struct emu_blas *cublasHandle_t;
typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7,
               CUBLAS_STATUS_NOT_SUPPORTED = 15 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_FILL_MODE_LOWER = 0, CUBLAS_FILL_MODE_UPPER = 1 } cublasFillMode_t;
typedef enum { CUBLAS_DIAG_NON_UNIT = 0, CUBLAS_DIAG_UNIT = 1 } cublasDiagType_t;
typedef enum { CUBLAS_SIDE_LEFT = 0, CUBLAS_SIDE_RIGHT = 1 } cublasSideMode_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2 } cublasMath_t;
typedef enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_16BF = 75,
               CUBLAS_COMPUTE_32F_FAST_TF32 = 77 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef enum { CUDA_R_32F = 0 } cudaDataType;

cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t st);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m);
const char *cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasGemmEx_64(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                               int64_t m, int64_t n, int64_t k, const void *alpha, const void *A,
                               cudaDataType at, int64_t lda, const void *B, cudaDataType bt,
                               int64_t ldb, const void *beta, void *C, cudaDataType ct,
                               int64_t ldc, cublasComputeType_t comp, cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx_64(
    cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k,
    const void *alpha, const void *A, cudaDataType at, int64_t lda, long long sa, const void *B,
    cudaDataType bt, int64_t ldb, long long sb, const void *beta, void *C, cudaDataType ct,
    int64_t ldc, long long sc, int64_t batch, cublasComputeType_t comp, cublasGemmAlgo_t algo);
cublasStatus_t cublasSsyrk_64(cublasHandle_t h, cublasFillMode_t uplo, cublasOperation_t trans,
                              int64_t n, int64_t k, const float *alpha, const float *A,
                              int64_t lda, const float *beta, float *C, int64_t ldc);
cublasStatus_t cublasStrmm_64(cublasHandle_t h, cublasSideMode_t side, cublasFillMode_t uplo,
                              cublasOperation_t trans, cublasDiagType_t diag, int64_t m,
                              int64_t n, const float *alpha, const float *A, int64_t lda,
                              const float *B, int64_t ldb, float *C, int64_t ldc);

/* ---------------------------------------------------------------- cuSOLVER */

typedef struct emu_solver *cusolverDnHandle_t;
typedef struct emu_sparams *cusolverDnParams_t;
typedef enum { CUSOLVER_STATUS_SUCCESS = 0, CUSOLVER_STATUS_INVALID_VALUE = 3 } cusolverStatus_t;

cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t *h);
cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t h);
cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t h, cudaStream_t st);
cusolverStatus_t cusolverDnCreateParams(cusolverDnParams_t *p);
cusolverStatus_t cusolverDnDestroyParams(cusolverDnParams_t p);
cusolverStatus_t cusolverDnXpotrf_bufferSize(cusolverDnHandle_t h, cusolverDnParams_t p,
                                             cublasFillMode_t uplo, int64_t n, cudaDataType at,
                                             const void *A, int64_t lda, cudaDataType ct,
                                             size_t *dev_bytes, size_t *host_bytes);
cusolverStatus_t cusolverDnXpotrf(cusolverDnHandle_t h, cusolverDnParams_t p,
                                  cublasFillMode_t uplo, int64_t n, cudaDataType at, void *A,
                                  int64_t lda, cudaDataType ct, void *dbuf, size_t dbytes,
                                  void *hbuf, size_t hbytes, int *info);
cusolverStatus_t cusolverDnXtrtri_bufferSize(cusolverDnHandle_t h, cublasFillMode_t uplo,
                                             cublasDiagType_t diag, int64_t n, cudaDataType at,
                                             void *A, int64_t lda, size_t *dev_bytes,
                                             size_t *host_bytes);
cusolverStatus_t cusolverDnXtrtri(cusolverDnHandle_t h, cublasFillMode_t uplo,
                                  cublasDiagType_t diag, int64_t n, cudaDataType at, void *A,
                                  int64_t lda, void *dbuf, size_t dbytes, void *hbuf,
                                  size_t hbytes, int *info);

#endif
