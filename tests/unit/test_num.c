/*
 * test_num.c - BF16, FP16 and FP8 E4M3FN conversions against an independent
 * reference written here from the format definitions.
 *
 * The reference decodes a code with ldexp() from (sign, exponent, mantissa,
 * bias), and encodes by searching the sorted table of all representable
 * magnitudes for the nearest one in double precision (ties to the even
 * code; IEEE formats get a virtual entry 2^(emax+1) standing for Inf, so
 * overflow falls out of the same search; FP8 saturates at 448 first). It
 * shares no code and no bit tricks with qc_num.c.
 *
 * Decoding is checked over every code; encoding over every midpoint between
 * adjacent representable values and its FP32 neighbours, the values
 * themselves, overflow, subnormals, NaN, signed zeros, and a random sweep.
 */
#include "tutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_dtype.h"
#include "qc_err.h"
#include "qc_num.h"
#include "qc_rng.h"

// ---------------------------------------------------------------- reference

typedef struct fmt {
	const char *name;
	int ebits, mbits, bias;
	int ieee;                 /* all-ones exponent is Inf/NaN (else E4M3FN rules) */
	int nbits;
	uint32_t (*enc)(float);   /* the functions under test, widened */
	float (*dec)(uint32_t);
	qc_dtype dt;
	/* filled by fmt_init: magnitudes of codes 0..nv-1 in ascending order */
	double *vals;
	uint32_t nv;
	uint32_t maxfinite;       /* largest finite positive code */
} fmt;

static uint32_t enc_bf16(float x) { return qc_f32_to_bf16(x); }
static uint32_t enc_f16(float x) { return qc_f32_to_f16(x); }
static uint32_t enc_fp8(float x) { return qc_f32_to_fp8e4m3(x); }
static float dec_bf16(uint32_t c) { return qc_bf16_to_f32((uint16_t)c); }
static float dec_f16(uint32_t c) { return qc_f16_to_f32((uint16_t)c); }
static float dec_fp8(uint32_t c) { return qc_fp8e4m3_to_f32((uint8_t)c); }

static fmt F_BF16 = { "BF16", 8, 7, 127, 1, 16, enc_bf16, dec_bf16, QC_DT_BF16, NULL, 0, 0 };
static fmt F_F16 = { "F16", 5, 10, 15, 1, 16, enc_f16, dec_f16, QC_DT_F16, NULL, 0, 0 };
static fmt F_FP8 = { "F8_E4M3", 4, 3, 7, 0, 8, enc_fp8, dec_fp8, QC_DT_F8_E4M3, NULL, 0, 0 };

/* Value of a code from the definition; *nan set for NaN codes. */
static double ref_decode(const fmt *f, uint32_t code, int *nan)
{
	uint32_t sign = (code >> (f->nbits - 1)) & 1;
	uint32_t emax = (1u << f->ebits) - 1, mmax = (1u << f->mbits) - 1;
	uint32_t e = (code >> f->mbits) & emax, m = code & mmax;
	double v;
	*nan = 0;
	if (f->ieee && e == emax) {
		if (m) {
			*nan = 1;
			return NAN;
		}
		v = INFINITY;
	} else if (!f->ieee && e == emax && m == mmax) {
		*nan = 1;
		return NAN;
	} else if (e == 0) {
		v = ldexp((double)m, 1 - f->bias - f->mbits);
	} else {
		v = ldexp((double)((1u << f->mbits) + m), (int)e - f->bias - f->mbits);
	}
	return sign ? -v : v;
}

static void fmt_init(fmt *f)
{
	if (f->vals)
		return;
	uint32_t emax = (1u << f->ebits) - 1;
	f->maxfinite = f->ieee ? (emax << f->mbits) - 1 : (emax << f->mbits) + (1u << f->mbits) - 2;
	/* IEEE: one more entry, the Inf code at the virtual value 2^(emax - bias) */
	f->nv = f->maxfinite + 1 + (f->ieee ? 1 : 0);
	f->vals = malloc(f->nv * sizeof(double));
	assert_non_null(f->vals);
	for (uint32_t c = 0; c <= f->maxfinite; c++) {
		int nan;
		f->vals[c] = ref_decode(f, c, &nan);
		assert_false(nan);
		if (c)
			assert_true(f->vals[c] > f->vals[c - 1]);
	}
	if (f->ieee)
		f->vals[f->nv - 1] = ldexp(1.0, (int)emax - f->bias);
}

/* The code nearest to x (not NaN), ties to even, with the format's overflow. */
static uint32_t ref_encode(const fmt *f, float x)
{
	uint32_t sign = signbit(x) ? 1u << (f->nbits - 1) : 0;
	double a = fabs((double)x);
	if (!f->ieee && a >= f->vals[f->maxfinite])
		return sign | f->maxfinite;                 /* saturation */
	if (a >= f->vals[f->nv - 1])
		return sign | (f->nv - 1);                  /* at or beyond 2^(emax+1): Inf */
	/* largest k with vals[k] <= a */
	uint32_t lo = 0, hi = f->nv - 1;               /* vals[lo] <= a < vals[hi] */
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (f->vals[mid] <= a)
			lo = mid;
		else
			hi = mid;
	}
	double d0 = a - f->vals[lo], d1 = f->vals[hi] - a;   /* exact in double */
	uint32_t k = d0 < d1 ? lo : d1 < d0 ? hi : (lo % 2 == 0 ? lo : hi);
	return sign | k;
}

static long n_checked;

static void check_encode(const fmt *f, float x)
{
	uint32_t got = f->enc(x);
	n_checked++;
	if (isnan(x)) {
		int nan;
		ref_decode(f, got, &nan);
		if (!nan || (!f->ieee && got != 0x7F)) {
			print_error("%s: NaN encoded as 0x%x\n", f->name, got);
			fail();
		}
		return;
	}
	uint32_t want = ref_encode(f, x);
	if (got != want) {
		uint32_t u;
		memcpy(&u, &x, 4);
		print_error("%s: encode(%a = 0x%08x) = 0x%x, expected 0x%x\n", f->name, (double)x, u, got, want);
		fail();
	}
}

static fmt *formats[] = { &F_BF16, &F_F16, &F_FP8 };

static float bits_f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static uint32_t f_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

// ---------------------------------------------------------------- decode

static void test_decode_exhaustive(void **state)
{
	(void)state;
	for (size_t i = 0; i < 3; i++) {
		fmt *f = formats[i];
		for (uint32_t c = 0; c < (1u << f->nbits); c++) {
			int nan;
			double want = ref_decode(f, c, &nan);
			float got = f->dec(c);
			if (nan) {
				assert_true(isnan(got));
				/* NaN keeps its sign */
				assert_int_equal(!!signbit(got), (c >> (f->nbits - 1)) & 1);
				continue;
			}
			if ((double)got != want || !!signbit(got) != !!signbit(want)) {
				print_error("%s: decode(0x%x) = %a, expected %a\n", f->name, c, (double)got, want);
				fail();
			}
		}
	}
	/* hand-worked values from the format definitions */
	assert_true(qc_fp8e4m3_to_f32(0x7E) == 448.0f);
	assert_true(qc_fp8e4m3_to_f32(0xFE) == -448.0f);
	assert_true(qc_fp8e4m3_to_f32(0x01) == 0x1p-9f);
	assert_true(qc_fp8e4m3_to_f32(0x08) == 0x1p-6f);
	assert_true(qc_fp8e4m3_to_f32(0x38) == 1.0f);
	assert_true(qc_fp8e4m3_to_f32(0x78) == 256.0f);   /* exponent 15 is finite in E4M3FN */
	assert_true(isnan(qc_fp8e4m3_to_f32(0x7F)) && isnan(qc_fp8e4m3_to_f32(0xFF)));
	assert_true(qc_f16_to_f32(0x7BFF) == 65504.0f);
	assert_true(qc_f16_to_f32(0x0001) == 0x1p-24f);
	assert_true(qc_f16_to_f32(0x0400) == 0x1p-14f);
	assert_true(isinf(qc_f16_to_f32(0xFC00)) && qc_f16_to_f32(0xFC00) < 0);
	assert_true(qc_bf16_to_f32(0x3F80) == 1.0f);
	assert_true(qc_bf16_to_f32(0x7F7F) == 0x1.fep127f);
	assert_true(qc_bf16_to_f32(0x0001) == 0x1p-133f);
	assert_true(signbit(qc_bf16_to_f32(0x8000)) && qc_bf16_to_f32(0x8000) == 0.0f);
}

/* encode(decode(c)) == c for every finite code: the values are exact */
static void test_roundtrip_codes(void **state)
{
	(void)state;
	for (size_t i = 0; i < 3; i++) {
		fmt *f = formats[i];
		for (uint32_t c = 0; c < (1u << f->nbits); c++) {
			int nan;
			ref_decode(f, c, &nan);
			uint32_t back = f->enc(f->dec(c));
			if (!nan) {
				assert_int_equal(back, c);
			} else if (f->ieee) {
				/* NaN comes back as the same NaN, quieted */
				uint32_t quiet = 1u << (f->mbits - 1);
				assert_int_equal(back, c | quiet);
			} else {
				assert_int_equal(back, 0x7F);
			}
		}
	}
}

// ---------------------------------------------------------------- encode

static void test_encode_midpoints(void **state)
{
	(void)state;
	for (size_t i = 0; i < 3; i++) {
		fmt *f = formats[i];
		fmt_init(f);
		for (uint32_t k = 0; k + 1 < f->nv; k++) {
			double mid = (f->vals[k] + f->vals[k + 1]) / 2;
			float m = (float)mid;
			assert_true((double)m == mid);   /* every midpoint is an FP32 value */
			/* ties to even: the midpoint goes to the even one of k, k+1 */
			uint32_t even = k % 2 == 0 ? k : k + 1;
			assert_int_equal(f->enc(m), even);
			assert_int_equal(f->enc(-m), even | 1u << (f->nbits - 1));
			float probe[5] = { m, nextafterf(m, 0), nextafterf(m, INFINITY), (float)f->vals[k],
			                   nextafterf((float)f->vals[k], INFINITY) };
			for (int j = 0; j < 5; j++) {
				if (isinf(probe[j]))
					continue;
				check_encode(f, probe[j]);
				check_encode(f, -probe[j]);
			}
			/* just above the midpoint rounds away from k, just below towards it */
			assert_int_equal(f->enc(nextafterf(m, INFINITY)), k + 1);
			assert_int_equal(f->enc(nextafterf(m, 0)), k);
		}
	}
}

static void test_encode_specials(void **state)
{
	(void)state;
	const float inf = INFINITY;
	/* signed zeros, and values too small for any code keep their sign */
	assert_int_equal(qc_f32_to_bf16(0.0f), 0x0000);
	assert_int_equal(qc_f32_to_bf16(-0.0f), 0x8000);
	assert_int_equal(qc_f32_to_f16(-0.0f), 0x8000);
	assert_int_equal(qc_f32_to_fp8e4m3(-0.0f), 0x80);
	assert_int_equal(qc_f32_to_f16(-1e-30f), 0x8000);
	assert_int_equal(qc_f32_to_fp8e4m3(-1e-30f), 0x80);
	assert_int_equal(qc_f32_to_fp8e4m3(bits_f(0x80000001)), 0x80);   /* -min FP32 subnormal */

	/* BF16 overflow at the midpoint 0x1.ffp127 (0x7F7F is odd: ties go up) */
	assert_int_equal(qc_f32_to_bf16(0x1.fep127f), 0x7F7F);
	assert_int_equal(qc_f32_to_bf16(nextafterf(0x1.ffp127f, 0)), 0x7F7F);
	assert_int_equal(qc_f32_to_bf16(0x1.ffp127f), 0x7F80);
	assert_int_equal(qc_f32_to_bf16(FLT_MAX), 0x7F80);
	assert_int_equal(qc_f32_to_bf16(-FLT_MAX), 0xFF80);
	assert_int_equal(qc_f32_to_bf16(inf), 0x7F80);
	assert_int_equal(qc_f32_to_bf16(-inf), 0xFF80);
	/* hand-worked BF16 ties */
	assert_int_equal(qc_f32_to_bf16(bits_f(0x3F808000)), 0x3F80);     /* 1 + 2^-8: tie, even */
	assert_int_equal(qc_f32_to_bf16(bits_f(0x3F818000)), 0x3F82);     /* tie, up to even */
	assert_int_equal(qc_f32_to_bf16(bits_f(0x40490FDB)), 0x4049);     /* pi */
	/* BF16 subnormals (FP32 subnormals map onto them) */
	assert_int_equal(qc_f32_to_bf16(0x1p-133f), 0x0001);
	assert_int_equal(qc_f32_to_bf16(0x1p-134f), 0x0000);             /* tie to even 0 */
	assert_int_equal(qc_f32_to_bf16(0x1.8p-133f), 0x0002);           /* tie to even 2 */

	/* FP16 overflow at 65520 */
	assert_int_equal(qc_f32_to_f16(65504.0f), 0x7BFF);
	assert_int_equal(qc_f32_to_f16(65519.99f), 0x7BFF);
	assert_int_equal(qc_f32_to_f16(65520.0f), 0x7C00);
	assert_int_equal(qc_f32_to_f16(-1e6f), 0xFC00);
	assert_int_equal(qc_f32_to_f16(FLT_MAX), 0x7C00);
	assert_int_equal(qc_f32_to_f16(inf), 0x7C00);
	assert_int_equal(qc_f32_to_f16(0.1f), 0x2E66);
	assert_int_equal(qc_f32_to_f16(1.0f), 0x3C00);
	/* FP16 subnormals */
	assert_int_equal(qc_f32_to_f16(0x1p-24f), 0x0001);
	assert_int_equal(qc_f32_to_f16(0x1p-25f), 0x0000);               /* tie to even 0 */
	assert_int_equal(qc_f32_to_f16(0x1.000002p-25f), 0x0001);
	assert_int_equal(qc_f32_to_f16(0x1.8p-24f), 0x0002);             /* tie to even 2 */
	assert_int_equal(qc_f32_to_f16(0x1.ff8p-15f), 0x03FF);           /* largest subnormal */
	assert_int_equal(qc_f32_to_f16(0x1.ffcp-15f), 0x0400);           /* tie, up into normal */
	assert_int_equal(qc_f32_to_f16(0x1p-14f), 0x0400);

	/* FP8 saturation: every magnitude at or beyond 448 gives +-448 */
	float big[] = { 448.0f, 448.5f, 464.0f, 465.0f, 480.0f, 512.0f, 1e6f, FLT_MAX, inf };
	for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
		assert_int_equal(qc_f32_to_fp8e4m3(big[i]), 0x7E);
		assert_int_equal(qc_f32_to_fp8e4m3(-big[i]), 0xFE);
	}
	assert_int_equal(qc_f32_to_fp8e4m3(447.9f), 0x7E);
	assert_int_equal(qc_f32_to_fp8e4m3(432.0f), 0x7E);                /* tie 416|448: even 0x7E */
	assert_int_equal(qc_f32_to_fp8e4m3(nextafterf(432.0f, 0)), 0x7D);
	/* hand-worked FP8 values */
	assert_int_equal(qc_f32_to_fp8e4m3(1.0f), 0x38);
	assert_int_equal(qc_f32_to_fp8e4m3(-2.0f), 0xC0);
	assert_int_equal(qc_f32_to_fp8e4m3(240.0f), 0x77);
	assert_int_equal(qc_f32_to_fp8e4m3(256.0f), 0x78);
	assert_int_equal(qc_f32_to_fp8e4m3(1.0625f), 0x38);               /* tie 1|1.125: even */
	assert_int_equal(qc_f32_to_fp8e4m3(1.1875f), 0x3A);               /* tie 1.125|1.25: even */
	assert_int_equal(qc_f32_to_fp8e4m3(0x1p-9f), 0x01);
	assert_int_equal(qc_f32_to_fp8e4m3(0x1p-10f), 0x00);              /* tie 0|2^-9: even 0 */
	assert_int_equal(qc_f32_to_fp8e4m3(0x1.8p-9f), 0x02);             /* tie 1|2: even 2 */
	assert_int_equal(qc_f32_to_fp8e4m3(0x1.cp-7f), 0x07);             /* 7 * 2^-9 */
	assert_int_equal(qc_f32_to_fp8e4m3(0x1.ep-7f), 0x08);             /* 7.5 * 2^-9: tie, up */
	assert_int_equal(qc_f32_to_fp8e4m3(0x1p-6f), 0x08);

	/* NaN: FP8 gives 0x7F whatever the sign; BF16/FP16 stay NaN, never Inf,
	 * even for a signalling NaN whose payload lies only in low bits */
	float nans[] = { NAN, -NAN, bits_f(0x7F800001), bits_f(0xFF800001), bits_f(0x7FFFFFFF),
	                 bits_f(0x7FA00000) };
	for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
		assert_true(isnan(nans[i]));
		assert_int_equal(qc_f32_to_fp8e4m3(nans[i]), 0x7F);
		assert_true(isnan(qc_bf16_to_f32(qc_f32_to_bf16(nans[i]))));
		assert_true(isnan(qc_f16_to_f32(qc_f32_to_f16(nans[i]))));
		uint32_t sign = f_bits(nans[i]) >> 31;
		assert_int_equal(qc_f32_to_bf16(nans[i]) >> 15, sign);
		assert_int_equal(qc_f32_to_f16(nans[i]) >> 15, sign);
		assert_true(qc_f32_to_bf16(nans[i]) & 0x0040);               /* quiet */
		assert_true(qc_f32_to_f16(nans[i]) & 0x0200);
	}
	assert_int_equal(qc_f32_to_bf16(bits_f(0x7F800001)), 0x7FC0);
	assert_int_equal(qc_f32_to_f16(bits_f(0x7F800001)), 0x7E00);

	/* the reference agrees on all of the above, and on these edges */
	float edges[] = { 0x1p-149f, -0x1p-149f, 0x1p-126f, FLT_MIN, 0x1p-10f, 0x1p-133f,
	                  0x1p-134f, 65520.0f, 0x1.ffp127f, 448.0f, 464.0f, 0x1.fffffep-7f };
	for (size_t i = 0; i < 3; i++) {
		fmt_init(formats[i]);
		for (size_t j = 0; j < sizeof edges / sizeof edges[0]; j++)
			check_encode(formats[i], edges[j]);
	}
}

static void test_encode_random(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 20240723);
	const int n = 1 << 20;
	for (size_t i = 0; i < 3; i++) {
		fmt *f = formats[i];
		fmt_init(f);
		/* random FP32 bit patterns: every exponent, NaN and Inf included */
		for (int j = 0; j < n; j++)
			check_encode(f, bits_f((uint32_t)qc_rng_u64(&r)));
		/* random values with exponents around the format's own range */
		int emin = 1 - f->bias - f->mbits - 3, emax = (1 << f->ebits) - f->bias + 2;
		for (int j = 0; j < n; j++) {
			uint64_t b = qc_rng_u64(&r);
			int e = emin + (int)qc_rng_below(&r, (uint64_t)(emax - emin + 1));
			float x = ldexpf(1.0f + (float)(b & 0x7FFFFF) * 0x1p-23f, e);
			check_encode(f, (b >> 63) ? -x : x);
		}
	}
	assert_true(n_checked > 6L * n);
}

// ---------------------------------------------------------------- rows

static void test_rows(void **state)
{
	(void)state;
	/* every 16-bit code, decoded by rows and by the scalar reference,
	 * from an odd address (safetensors data need not be aligned) */
	size_t n = 1 << 16;
	unsigned char *raw = malloc(2 * n + 8);
	float *out = malloc(n * sizeof(float));
	float *out2 = malloc(n * sizeof(float));
	assert_non_null(raw);
	assert_non_null(out);
	assert_non_null(out2);
	unsigned char *src = raw + 1;
	for (size_t i = 0; i < n; i++) {
		uint16_t c = (uint16_t)i;
		memcpy(src + 2 * i, &c, 2);
	}
	tu_assert_rc(qc_to_f32(out, src, QC_DT_BF16, n), 0);
	for (size_t i = 0; i < n; i++)
		assert_true(f_bits(out[i]) == f_bits(qc_bf16_to_f32((uint16_t)i)));
	tu_assert_rc(qc_to_f32(out, src, QC_DT_F16, n), 0);
	for (size_t i = 0; i < n; i++)
		assert_true(f_bits(out[i]) == f_bits(qc_f16_to_f32((uint16_t)i)));
	for (size_t i = 0; i < 256; i++)
		src[i] = (unsigned char)i;
	tu_assert_rc(qc_to_f32(out, src, QC_DT_F8_E4M3, 256), 0);
	for (size_t i = 0; i < 256; i++)
		assert_true(f_bits(out[i]) == f_bits(qc_fp8e4m3_to_f32((uint8_t)i)));

	/* encoding rows: random bit patterns plus midpoints, into odd addresses */
	qc_rng r;
	qc_rng_seed(&r, 5);
	for (size_t i = 0; i < n; i++)
		out[i] = bits_f((uint32_t)qc_rng_u64(&r));
	for (size_t i = 0; i + 1 < 256 && i < n; i++)
		out[i] = (qc_fp8e4m3_to_f32((uint8_t)i) + qc_fp8e4m3_to_f32((uint8_t)(i + 1))) / 2;
	tu_assert_rc(qc_from_f32(src, QC_DT_BF16, out, n), 0);
	for (size_t i = 0; i < n; i++) {
		uint16_t c;
		memcpy(&c, src + 2 * i, 2);
		assert_int_equal(c, qc_f32_to_bf16(out[i]));
	}
	tu_assert_rc(qc_from_f32(src, QC_DT_F16, out, n), 0);
	for (size_t i = 0; i < n; i++) {
		uint16_t c;
		memcpy(&c, src + 2 * i, 2);
		assert_int_equal(c, qc_f32_to_f16(out[i]));
	}
	tu_assert_rc(qc_from_f32(src, QC_DT_F8_E4M3, out, n), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(src[i], qc_f32_to_fp8e4m3(out[i]));

	/* F32 copies bits, F64 widens exactly and narrows back */
	unsigned char *wide = malloc(8 * n + 8);
	assert_non_null(wide);
	tu_assert_rc(qc_from_f32(wide + 3, QC_DT_F32, out, n), 0);
	tu_assert_rc(qc_to_f32(out2, wide + 3, QC_DT_F32, n), 0);
	assert_memory_equal(out, out2, n * sizeof(float));
	tu_assert_rc(qc_from_f32(wide + 3, QC_DT_F64, out, n), 0);
	for (size_t i = 0; i < n; i += 997) {
		double d;
		memcpy(&d, wide + 3 + 8 * i, 8);
		assert_true(isnan(out[i]) ? isnan(d) : d == (double)out[i]);
	}
	tu_assert_rc(qc_to_f32(out2, wide + 3, QC_DT_F64, n), 0);
	for (size_t i = 0; i < n; i++)
		assert_true(isnan(out[i]) ? isnan(out2[i]) : f_bits(out2[i]) == f_bits(out[i]));
	/* F64 to F32 rounds (to nearest even) and overflows to Inf */
	double dv[3] = { 1.0 + 0x1p-24, 1.0 + 0x1.8p-23, 1e300 };
	tu_assert_rc(qc_to_f32(out2, dv, QC_DT_F64, 3), 0);
	assert_true(out2[0] == 1.0f && out2[1] == 1.0f + 0x1p-22f && isinf(out2[2]));

	/* zero elements, and dtypes without a conversion */
	tu_assert_rc(qc_to_f32(out, NULL, QC_DT_BF16, 0), 0);
	tu_assert_rc(qc_from_f32(NULL, QC_DT_F32, out, 0), 0);
	tu_assert_rc(qc_to_f32(out, src, QC_DT_I8, 4), QC_EUNSUPPORTED);
	assert_string_equal(qc_errmsg(), "cannot convert from 'I8': not a floating-point type");
	tu_assert_rc(qc_from_f32(src, QC_DT_F8_E5M2, out, 4), QC_EUNSUPPORTED);
	assert_string_equal(qc_errmsg(), "cannot convert to 'F8_E5M2': not a floating-point type");
	free(wide);
	free(raw);
	free(out);
	free(out2);
}

/* Every length from 0 to 50 at several offsets: the row loops work in
 * chunks of 16 plus a tail, and must touch exactly n elements. */
static void test_rows_tails(void **state)
{
	(void)state;
	static const qc_dtype dts[] = { QC_DT_BF16, QC_DT_F16, QC_DT_F32, QC_DT_F64, QC_DT_F8_E4M3 };
	unsigned char src[64 * 8 + 8], enc[64 * 8 + 8];
	float vals[64], out[64 + 1];
	qc_rng r;
	qc_rng_seed(&r, 99);
	for (size_t i = 0; i < sizeof src; i++)
		src[i] = (unsigned char)qc_rng_u64(&r);
	for (size_t i = 0; i < 64; i++)
		vals[i] = (float)(qc_rng_normal(&r) * 10.0);
	for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
		size_t es = qc_dtype_size(dts[d]);
		for (size_t n = 0; n <= 50; n++) {
			for (size_t off = 0; off < 4; off++) {
				out[n] = 12345.0f;   /* sentinel just past the end */
				tu_assert_rc(qc_to_f32(out, src + off, dts[d], n), 0);
				assert_true(out[n] == 12345.0f);
				for (size_t i = 0; i < n; i++) {
					const unsigned char *p = src + off + i * es;
					float want;
					uint16_t h;
					memcpy(&h, p, 2);
					switch (dts[d]) {
					case QC_DT_BF16: want = qc_bf16_to_f32(h); break;
					case QC_DT_F16: want = qc_f16_to_f32(h); break;
					case QC_DT_F8_E4M3: want = qc_fp8e4m3_to_f32(*p); break;
					case QC_DT_F32: memcpy(&want, p, 4); break;
					default: { double w; memcpy(&w, p, 8); want = (float)w; }
					}
					assert_true(f_bits(out[i]) == f_bits(want) || (isnan(out[i]) && isnan(want)));
				}
				memset(enc, 0xA5, sizeof enc);
				tu_assert_rc(qc_from_f32(enc + off, dts[d], vals, n), 0);
				for (size_t b = 0; b < sizeof enc; b++)
					if (b < off || b >= off + n * es)
						assert_int_equal(enc[b], 0xA5);
				for (size_t i = 0; i < n; i++) {
					const unsigned char *p = enc + off + i * es;
					uint16_t h;
					memcpy(&h, p, 2);
					switch (dts[d]) {
					case QC_DT_BF16: assert_int_equal(h, qc_f32_to_bf16(vals[i])); break;
					case QC_DT_F16: assert_int_equal(h, qc_f32_to_f16(vals[i])); break;
					case QC_DT_F8_E4M3: assert_int_equal(*p, qc_f32_to_fp8e4m3(vals[i])); break;
					case QC_DT_F32: assert_memory_equal(p, &vals[i], 4); break;
					default: { double w; memcpy(&w, p, 8); assert_true(w == (double)vals[i]); }
					}
				}
			}
		}
	}
}

// ---------------------------------------------------------------- non-finite scan

/* plain scan with the reference decoder */
static int64_t ref_first_nonfinite(const unsigned char *p, qc_dtype dt, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int bad;
		switch (dt) {
		case QC_DT_F32: { float v; memcpy(&v, p + 4 * i, 4); bad = !isfinite(v); break; }
		case QC_DT_F64: { double v; memcpy(&v, p + 8 * i, 8); bad = !isfinite(v); break; }
		default: {
			fmt *f = dt == QC_DT_BF16 ? &F_BF16 : dt == QC_DT_F16 ? &F_F16 : &F_FP8;
			uint32_t c = 0;
			memcpy(&c, p + (size_t)(f->nbits / 8) * i, (size_t)f->nbits / 8);
			int nan;
			double v = ref_decode(f, c, &nan);
			bad = nan || isinf(v);
		}
		}
		if (bad)
			return (int64_t)i;
	}
	return -1;
}

static void test_first_nonfinite(void **state)
{
	(void)state;
	static const qc_dtype dts[] = { QC_DT_BF16, QC_DT_F16, QC_DT_F32, QC_DT_F64, QC_DT_F8_E4M3 };
	size_t lens[] = { 0, 1, 7, 4095, 4096, 4097, 12289 };
	size_t maxn = 12289;
	unsigned char *raw = malloc(8 * maxn + 8);
	float *vals = malloc(maxn * sizeof(float));
	assert_non_null(raw);
	assert_non_null(vals);
	unsigned char *buf = raw + 1;                 /* unaligned on purpose */
	qc_rng r;
	qc_rng_seed(&r, 11);
	for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
		qc_dtype dt = dts[d];
		size_t es = qc_dtype_size(dt);
		/* finite values, the format's largest finite ones included */
		for (size_t i = 0; i < maxn; i++)
			vals[i] = (float)(qc_rng_normal(&r) * 100.0);
		vals[5] = dt == QC_DT_F8_E4M3 ? 448.0f : dt == QC_DT_F16 ? 65504.0f : 0x1.fep127f;
		vals[6] = -vals[5];
		tu_assert_rc(qc_from_f32(buf, dt, vals, maxn), 0);
		for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
			size_t n = lens[li];
			assert_int_equal(qc_first_nonfinite(buf, dt, n), -1);
			size_t pos[] = { 0, n / 2, n - 1, 4095, 4096 };
			for (size_t pi = 0; pi < sizeof pos / sizeof pos[0]; pi++) {
				if (n == 0 || pos[pi] >= n)
					continue;
				size_t p = pos[pi];
				unsigned char save[8];
				memcpy(save, buf + p * es, es);
				float bad = (pi % 2) ? INFINITY : NAN;
				if (pi == 2)
					bad = -INFINITY;
				if (dt == QC_DT_F8_E4M3)   /* only NaN codes: 0x7F and 0xFF */
					buf[p] = pi % 2 ? 0xFF : 0x7F;
				else
					tu_assert_rc(qc_from_f32(buf + p * es, dt, &bad, 1), 0);
				int64_t want = ref_first_nonfinite(buf, dt, n);
				assert_int_equal(want, (int64_t)p);
				assert_int_equal(qc_first_nonfinite(buf, dt, n), want);
				/* a second bad value later does not change the answer */
				if (p + 3 < n) {
					unsigned char save2[8];
					memcpy(save2, buf + (p + 3) * es, es);
					memcpy(buf + (p + 3) * es, buf + p * es, es);
					assert_int_equal(qc_first_nonfinite(buf, dt, n), (int64_t)p);
					memcpy(buf + (p + 3) * es, save2, es);
				}
				memcpy(buf + p * es, save, es);
			}
		}
	}
	/* integer types cannot hold NaN or Inf */
	memset(buf, 0xFF, 64);
	assert_int_equal(qc_first_nonfinite(buf, QC_DT_I8, 64), -1);
	assert_int_equal(qc_first_nonfinite(buf, QC_DT_U16, 32), -1);
	free(raw);
	free(vals);
}

// ---------------------------------------------------------------- fake casts

static void test_round_to(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 3);
	for (int i = 0; i < 200000; i++) {
		float x = (float)(qc_rng_student_t(&r, 4.0) * 50.0);
		assert_true(qc_round_to(x, QC_DT_BF16) == qc_bf16_to_f32(qc_f32_to_bf16(x)));
		assert_true(qc_round_to(x, QC_DT_F16) == qc_f16_to_f32(qc_f32_to_f16(x)));
		assert_true(qc_round_to(x, QC_DT_F8_E4M3) == qc_fp8e4m3_to_f32(qc_f32_to_fp8e4m3(x)));
		assert_true(qc_round_to(x, QC_DT_F32) == x);
		assert_true(qc_round_to(x, QC_DT_F64) == x);
		assert_true(qc_round_to(x, QC_DT_I8) == x);
		/* idempotent, and never farther than half a step of the format */
		float y = qc_round_to(x, QC_DT_F8_E4M3);
		assert_true(qc_round_to(y, QC_DT_F8_E4M3) == y);
		assert_true(fabsf(y) <= QC_FP8_E4M3_MAX);
		if (fabsf(x) <= QC_FP8_E4M3_MAX && fabsf(x) >= 0x1p-6f)
			assert_true(fabsf(y - x) <= fabsf(x) * 0x1p-4f);
	}
	assert_true(qc_round_to(1000.0f, QC_DT_F8_E4M3) == 448.0f);
	assert_true(qc_round_to(-1000.0f, QC_DT_F8_E4M3) == -448.0f);
	assert_true(isinf(qc_round_to(1e5f, QC_DT_F16)));
	assert_true(qc_round_to(1.0f + 0x1p-9f, QC_DT_BF16) == 1.0f);
	assert_true(isnan(qc_round_to(NAN, QC_DT_F8_E4M3)));
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < 3; i++) {
		free(formats[i]->vals);
		formats[i]->vals = NULL;
	}
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_exhaustive),
		cmocka_unit_test(test_roundtrip_codes),
		cmocka_unit_test(test_encode_midpoints),
		cmocka_unit_test(test_encode_specials),
		cmocka_unit_test(test_encode_random),
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_rows_tails),
		cmocka_unit_test(test_first_nonfinite),
		cmocka_unit_test(test_round_to),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
