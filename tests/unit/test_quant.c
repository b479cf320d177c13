/* test_quant.c - quantization primitives against hand-worked examples of
 * compressed-tensors' rules (qc_quant.h). */
#include "tutil.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "qc_err.h"
#include "qc_num.h"
#include "qc_quant.h"

static qc_qargs args(int is_float, int bits, int sym, qc_qstrategy st, int64_t gs, qc_dtype sd)
{
	qc_qargs a = { is_float, bits, sym, st, gs, sd, QC_DT_F32 };
	return a;
}

/* int4 symmetric group of 4: amax 3.0 -> scale = bf16(3.0 / 7.5) = bf16(0.4)
 * = 0.400390625 (0x3ECD); codes round(x / s) clamped to [-8, 7]. */
static void test_int4_sym_bf16(void **state)
{
	(void)state;
	qc_qargs a = args(0, 4, 1, QC_QS_GROUP, 4, QC_DT_BF16);
	float x[8] = { 0.75f, -1.5f, 0.1f, 3.0f, /* second group: amax 0.3 */ 0.3f, -0.15f, 0.0f, 0.21f };
	int8_t codes[8];
	float scales[2], deq[8];
	assert_int_equal(qc_quant_rtn(&a, NULL, x, 1, 8, NULL, codes, scales, NULL, deq), 0);
	assert_true(scales[0] == 0.400390625f);
	assert_int_equal(qc_f32_to_bf16(scales[0]), 0x3ECD);
	/* 0.75/0.40039 = 1.873 -> 2; -1.5/0.40039 = -3.746 -> -4; 0.1 -> 0.2497 -> 0;
	 * 3.0/0.40039 = 7.4927 -> 7 */
	assert_int_equal(codes[0], 2);
	assert_int_equal(codes[1], -4);
	assert_int_equal(codes[2], 0);
	assert_int_equal(codes[3], 7);
	assert_true(deq[3] == 7 * 0.400390625f);
	/* 0.3 / 7.5 = 0.04 -> bf16 0.0400390625; 0.3/s = 7.4927 -> 7;
	 * -0.15/s = -3.746 -> -4; 0.21/s = 5.245 -> 5 */
	assert_true(scales[1] == qc_bf16_to_f32(qc_f32_to_bf16(0.3f / 7.5f)));
	assert_int_equal(codes[4], 7);
	assert_int_equal(codes[5], -4);
	assert_int_equal(codes[6], 0);
	assert_int_equal(codes[7], 5);
}

/* int8 symmetric per channel with amax 127.5 -> scale exactly 1: codes are
 * round-half-even of x, clamped to [-128, 127]. */
static void test_int8_channel_half_even(void **state)
{
	(void)state;
	qc_qargs a = args(0, 8, 1, QC_QS_CHANNEL, 0, QC_DT_F32);
	float x[6] = { 2.5f, 3.5f, -0.5f, 127.5f, -127.5f, -2.5f };
	int8_t codes[6];
	float scale;
	assert_int_equal(qc_quant_rtn(&a, NULL, x, 1, 6, NULL, codes, &scale, NULL, NULL), 0);
	assert_true(scale == 1.0f);
	assert_int_equal(codes[0], 2);
	assert_int_equal(codes[1], 4);
	assert_int_equal(codes[2], 0);
	assert_int_equal(codes[3], 127);  /* clamped before rounding */
	assert_int_equal(codes[4], -128); /* -127.5 rounds to the even -128 */
	assert_int_equal(codes[5], -2);
}

/* Asymmetric int4: min -1, max 2 -> scale 3/15 = 0.2, zp = -8 - (-1/0.2) = -3. */
static void test_int4_asym(void **state)
{
	(void)state;
	qc_qargs a = args(0, 4, 0, QC_QS_CHANNEL, 0, QC_DT_F32);
	float x[4] = { -1.0f, 2.0f, 0.0f, 0.5f };
	int8_t codes[4];
	float scale, zp, deq[4];
	assert_int_equal(qc_quant_rtn(&a, NULL, x, 1, 4, NULL, codes, &scale, &zp, deq), 0);
	assert_true(fabsf(scale - 0.2f) < 1e-7f);
	assert_true(zp == -3.0f);
	assert_int_equal(codes[0], -8);
	assert_int_equal(codes[1], 7);
	assert_int_equal(codes[2], -3);
	assert_int_equal(codes[3], 0);  /* 0.5/0.2 - 3 = -0.5 -> half to even: 0 */
	assert_true(deq[2] == 0.0f);    /* zero is exact */
	/* all-positive input: min widened to 0, so zp = qmin = -8 */
	float y[3] = { 1.0f, 2.0f, 3.0f };
	assert_int_equal(qc_quant_rtn(&a, NULL, y, 1, 3, NULL, codes, &scale, &zp, NULL), 0);
	assert_true(zp == -8.0f);
	assert_int_equal(codes[2], 7);
}

/* FP8 per tensor: amax 896 -> scale 2; values clamp to +-448 before the cast. */
static void test_fp8(void **state)
{
	(void)state;
	qc_qargs a = args(1, 8, 1, QC_QS_TENSOR, 0, QC_DT_F32);
	float x[4] = { 3.0f, 896.0f, -896.0f, 0.01f };
	uint8_t codes[4];
	float scale;
	assert_int_equal(qc_quant_rtn(&a, NULL, x, 2, 2, NULL, codes, &scale, NULL, NULL), 0);
	assert_true(scale == 2.0f);
	assert_int_equal(codes[0], qc_f32_to_fp8e4m3(1.5f));
	assert_true(qc_fp8e4m3_to_f32(codes[1]) == 448.0f);
	assert_true(qc_fp8e4m3_to_f32(codes[2]) == -448.0f);
	assert_true(qc_fp8e4m3_to_f32(codes[3]) == qc_fp8e4m3_to_f32(qc_f32_to_fp8e4m3(0.005f)));
	/* beyond the static scale's range: clamp to 448, never NaN */
	assert_true(qc_quantize_value(&a, 5000.0f, 2.0f, 0) == 448.0f);
}

/* torch on a BF16 weight computes x / scale in bf16: 100.7 -> 100.5 -> 100
 * (half to even), where exact arithmetic gives 101. */
static void test_bf16_arith_emulation(void **state)
{
	(void)state;
	qc_qargs a = args(0, 8, 1, QC_QS_CHANNEL, 0, QC_DT_BF16);
	assert_true(qc_quantize_value(&a, 100.7f, 1.0f, 0) == 101.0f);
	a.arith = QC_DT_BF16;
	assert_true(qc_quantize_value(&a, 100.7f, 1.0f, 0) == 100.0f);
}

/* Zero scale is replaced by the float32 epsilon, never a division by zero. */
static void test_zero_group(void **state)
{
	(void)state;
	qc_qargs a = args(0, 4, 1, QC_QS_GROUP, 2, QC_DT_BF16);
	float x[4] = { 0, 0, 1, -1 };
	int8_t codes[4];
	float scales[2];
	assert_int_equal(qc_quant_rtn(&a, NULL, x, 1, 4, NULL, codes, scales, NULL, NULL), 0);
	assert_true(scales[0] == FLT_EPSILON);
	assert_int_equal(codes[0], 0);
	assert_int_equal(codes[1], 0);
}

/* A partial last group: 5 columns with group 2 -> 3 groups, the last of 1. */
static void test_partial_group(void **state)
{
	(void)state;
	qc_qargs a = args(0, 4, 1, QC_QS_GROUP, 2, QC_DT_F32);
	assert_int_equal(qc_qgroups(&a, 5), 3);
	float x[5] = { 1, 2, 3, 4, -7.5f };
	int8_t codes[5];
	float scales[3];
	assert_int_equal(qc_quant_rtn(&a, NULL, x, 1, 5, NULL, codes, scales, NULL, NULL), 0);
	assert_true(scales[2] == 1.0f);
	assert_int_equal(codes[4], -8); /* -7.5 -> half to even -8 */
}

/* MSE clipping never does worse than min/max on the error it minimizes, and
 * on a heavy-tailed group it shrinks the range. */
static void test_mse_clip(void **state)
{
	(void)state;
	qc_qargs a = args(0, 4, 1, QC_QS_GROUP, 16, QC_DT_F32);
	float x[16];
	for (int i = 0; i < 16; i++)
		x[i] = 0.1f * (float)((i * 7) % 11 - 5);
	x[3] = 1.0f; /* an outlier pulling the min/max scale up */
	qc_clip_opts mm, mse;
	qc_clip_opts_default(&mm, QC_CLIP_MINMAX);
	qc_clip_opts_default(&mse, QC_CLIP_MSE);
	float s0, z0, s1, z1;
	qc_group_params(&a, &mm, x, 16, NULL, &s0, &z0);
	qc_group_params(&a, &mse, x, 16, NULL, &s1, &z1);
	double e0 = 0, e1 = 0;
	for (int i = 0; i < 16; i++) {
		e0 += pow(fabs(qc_qdq(&a, x[i], s0, z0) - x[i]), 2.4);
		e1 += pow(fabs(qc_qdq(&a, x[i], s1, z1) - x[i]), 2.4);
	}
	assert_true(e1 <= e0);
	assert_true(s1 <= s0);
	assert_true(s0 == 1.0f / 7.5f);
}

/* Weights already on the FP8 grid times a scale come back exactly: a row
 * whose largest value is 448 s (s a power of two, exact in BF16) gets scale
 * s, its codes are the grid values, and dequantization restores it. */
static void test_fp8_grid_roundtrip(void **state)
{
	(void)state;
	qc_qargs a = args(1, 8, 1, QC_QS_CHANNEL, 0, QC_DT_BF16);
	float w[2 * 256], scales[2], deq[2 * 256];
	uint8_t codes[2 * 256];
	const float s[2] = { 0.0078125f, 2.0f };
	for (int r = 0; r < 2; r++)
		for (int i = 0; i < 256; i++) {
			/* every finite code but NaN, with the max present */
			uint8_t b = (uint8_t)i;
			float v = (b & 0x7f) == 0x7f ? 448.0f : qc_fp8e4m3_to_f32(b);
			w[r * 256 + i] = v * s[r];
		}
	assert_int_equal(qc_quant_rtn(&a, NULL, w, 2, 256, NULL, codes, scales, NULL, deq), 0);
	for (int r = 0; r < 2; r++) {
		assert_true(scales[r] == s[r]);
		for (int i = 0; i < 256; i++)
			assert_true(deq[r * 256 + i] == w[r * 256 + i]);
	}
}

/* The FP8 fast path of qc_quant_apply equals the reference
 * (qc_quantize_value, qc_f32_to_fp8e4m3) on every code times the scale, the
 * midpoints between codes and their neighbours, values beyond 448, signed
 * zeros and random values over many magnitudes. */
static void test_fp8_fast_path(void **state)
{
	(void)state;
	qc_qargs a = args(1, 8, 1, QC_QS_CHANNEL, 0, QC_DT_F32);
	enum { N = 4096 };
	static float x[N], deq[N];
	static uint8_t codes[N];
	const float scales[3] = { 1.0f, 0.0123f, 3.7e-5f };
	uint64_t rng = 12345;
	for (int si = 0; si < 3; si++) {
		float s = scales[si];
		for (int round = 0; round < 8; round++) {
			int n = 0;
			if (round == 0) {
				/* codes, midpoints and their float neighbours */
				for (int c = 0; c < 126 && n + 6 < N; c++) {
					float v = qc_fp8e4m3_to_f32((uint8_t)c), w = qc_fp8e4m3_to_f32((uint8_t)(c + 1));
					float mid = (v + w) / 2;
					x[n++] = v * s;
					x[n++] = -v * s;
					x[n++] = mid * s;
					x[n++] = nextafterf(mid, 0) * s;
					x[n++] = nextafterf(mid, 1000) * s;
					x[n++] = -mid * s;
				}
				x[n++] = 500 * s;
				x[n++] = -1e30f;
				x[n++] = -0.0f;
				x[n++] = 1e-30f;
			} else {
				for (; n < N; n++) {
					rng = rng * 6364136223846793005ull + 1442695040888963407ull;
					double u = (double)(rng >> 11) * 0x1.0p-53;
					x[n] = (float)((u - 0.5) * pow(10.0, (double)(round - 4) * 1.5)) * s;
				}
			}
			float sc[1] = { s };
			for (int i = 0; i < n; i++) {
				assert_int_equal(qc_quant_apply(&a, x + i, 1, 1, sc, NULL, codes + i, deq + i), 0);
				float q = qc_quantize_value(&a, x[i], s, 0);
				if (codes[i] != qc_f32_to_fp8e4m3(q) || deq[i] != q * s) {
					print_error("x=%a s=%a: code %02x deq %a, reference %02x %a\n", x[i], s,
					            codes[i], deq[i], qc_f32_to_fp8e4m3(q), q * s);
					fail();
				}
			}
		}
	}
}

/* qc_absmax and qc_sqerr (vectorized) against plain loops. */
static void test_absmax_sqerr(void **state)
{
	(void)state;
	enum { N = 3001 };
	static float w[N], d[N];
	uint64_t rng = 99;
	for (int i = 0; i < N; i++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		w[i] = (float)((double)(rng >> 11) * 0x1.0p-53 - 0.5) * (float)(1 + i % 7);
		d[i] = w[i] * 0.99f + 1e-3f;
	}
	w[1234] = -9.5f;
	for (int n = 0; n <= N; n += n < 40 ? 1 : 487) {
		float m = 0;
		double e = 0, q = 0;
		for (int i = 0; i < n; i++) {
			m = fmaxf(m, fabsf(w[i]));
			e += ((double)w[i] - d[i]) * ((double)w[i] - d[i]);
			q += (double)w[i] * w[i];
		}
		assert_true(qc_absmax(w, (size_t)n) == m);
		double ge = 0, gq = 0;
		qc_sqerr(w, d, (size_t)n, &ge, &gq);
		assert_true(fabs(ge - e) <= 1e-5 * e + 1e-30);
		assert_true(fabs(gq - q) <= 1e-5 * q + 1e-30);
	}
}

static void test_bad_args(void **state)
{
	(void)state;
	qc_qargs a = args(0, 3, 1, QC_QS_CHANNEL, 0, QC_DT_F32);
	tu_assert_rc(qc_qargs_check(&a), QC_EINVAL);
	a = args(1, 8, 0, QC_QS_CHANNEL, 0, QC_DT_F32);
	tu_assert_rc(qc_qargs_check(&a), QC_EINVAL);
	a = args(0, 4, 1, QC_QS_GROUP, 0, QC_DT_F32);
	tu_assert_rc(qc_qargs_check(&a), QC_EINVAL);
	a = args(0, 4, 1, QC_QS_GROUP, 128, QC_DT_I8);
	tu_assert_rc(qc_qargs_check(&a), QC_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_int4_sym_bf16),
		cmocka_unit_test(test_int8_channel_half_even),
		cmocka_unit_test(test_int4_asym),
		cmocka_unit_test(test_fp8),
		cmocka_unit_test(test_bf16_arith_emulation),
		cmocka_unit_test(test_zero_group),
		cmocka_unit_test(test_partial_group),
		cmocka_unit_test(test_mse_clip),
		cmocka_unit_test(test_fp8_grid_roundtrip),
		cmocka_unit_test(test_fp8_fast_path),
		cmocka_unit_test(test_absmax_sqerr),
		cmocka_unit_test(test_bad_args),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
