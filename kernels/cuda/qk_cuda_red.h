/*
 * qk_cuda_red.h - block and warp reductions in a fixed tree (not part of
 * the API).
 *
 * Every reduction here combines values in an order fixed by the launch
 * shape alone (a thread's grid-stride share, then an XOR butterfly in each
 * warp, then the warps' results in warp order), so a result is the same bits
 * at every run of the same launch. The butterfly leaves every lane with the
 * same value: each step adds a pair in both lanes, and a + b == b + a.
 * Blocks must be a whole number of warps, and every thread of the block
 * must call a block reduction (they contain barriers).
 */
#ifndef QK_CUDA_RED_H
#define QK_CUDA_RED_H

#include "qk_cuda.h"

struct qk_op_add {
	template <typename T> QK_DEV_MEMBER T operator()(T a, T b) const { return a + b; }
};

/* max of magnitudes that ignores NaN as fmaxf does: NaN only when both are */
struct qk_op_fmax {
	QK_DEV_MEMBER float operator()(float a, float b) const { return fmaxf(a, b); }
};

struct qk_op_fmin {
	QK_DEV_MEMBER float operator()(float a, float b) const { return fminf(a, b); }
};

/* NaN wins (actq's amax: any NaN in the row makes it NaN) */
struct qk_op_nanmax {
	QK_DEV_MEMBER float operator()(float a, float b) const
	{
		return isnan(a) ? a : isnan(b) ? b : a > b ? a : b;
	}
};

template <typename T, typename Op> QK_DEV T qk_warp_reduce(T v, Op op)
{
	for (int o = 16; o > 0; o >>= 1)
		v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

/* The block's reduction of v, returned to every thread; `ident` is the
 * operation's identity (for the missing warps of a 32-slot table). */
template <typename T, typename Op> QK_DEV T qk_block_reduce(T v, Op op, T ident)
{
	__shared__ T red[32];
	const int lane = (int)(threadIdx.x & 31), warp = (int)(threadIdx.x >> 5);
	const int nw = (int)((blockDim.x + 31) >> 5);
	v = qk_warp_reduce(v, op);
	if (lane == 0)
		red[warp] = v;
	__syncthreads();
	v = lane < nw ? red[lane] : ident;
	v = qk_warp_reduce(v, op);
	/* every warp computed the same total from the same table; the table
	 * may be reused only after every warp has read it */
	__syncthreads();
	return v;
}

/* (value, index) of the first maximum: larger value wins, ties the lower
 * index; a NaN value never wins (as a left-to-right scan with > keeps the
 * earlier element), except over another NaN. */
struct qk_argmax {
	float v;
	int64_t i;
};

QK_DEV qk_argmax qk_argmax_pick(qk_argmax a, qk_argmax b)
{
	if (a.i < 0)
		return b;
	if (b.i < 0)
		return a;
	if (b.v > a.v || (b.v == a.v && b.i < a.i))
		return b;
	return a;
}

QK_DEV qk_argmax qk_block_argmax(qk_argmax v)
{
	__shared__ float rv[32];
	__shared__ int64_t ri[32];
	const int lane = (int)(threadIdx.x & 31), warp = (int)(threadIdx.x >> 5);
	const int nw = (int)((blockDim.x + 31) >> 5);
	for (int o = 16; o > 0; o >>= 1) {
		qk_argmax w;
		w.v = __shfl_xor_sync(0xffffffffu, v.v, o);
		w.i = __shfl_xor_sync(0xffffffffu, v.i, o);
		v = qk_argmax_pick(v, w);
	}
	if (lane == 0) {
		rv[warp] = v.v;
		ri[warp] = v.i;
	}
	__syncthreads();
	v.v = lane < nw ? rv[lane] : 0.0f;
	v.i = lane < nw ? ri[lane] : -1;
	for (int o = 16; o > 0; o >>= 1) {
		qk_argmax w;
		w.v = __shfl_xor_sync(0xffffffffu, v.v, o);
		w.i = __shfl_xor_sync(0xffffffffu, v.i, o);
		v = qk_argmax_pick(v, w);
	}
	__syncthreads();
	return v;
}

#endif
