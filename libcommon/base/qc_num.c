/*
 * qc_num.c - FP32 <-> BF16, FP16, FP8 E4M3FN conversions (see qc_num.h).
 *
 * Every narrowing conversion is done on the integer bits of the FP32 value:
 *
 *   normal range:    add (half an ulp - 1) + the lowest kept bit, shift right;
 *                    this is round-to-nearest-even, and a carry out of the
 *                    mantissa correctly bumps the exponent (even into Inf);
 *   subnormal range: the result is the integer round(|x| * 2^k) for the
 *                    format's smallest subnormal 2^-k, computed from the
 *                    significand with an explicit ties-to-even shift.
 *
 * No floating-point arithmetic decides a rounding, so the results do not
 * depend on the FPU's rounding mode or on flush-to-zero settings.
 */
#include "qc_num.h"

#include <pthread.h>
#include <string.h>

#include "qc_err.h"

// ---------------------------------------------------------------- bit helpers

static inline uint32_t f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

static inline float u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* m / 2^shift rounded to nearest, ties to even; shift in 1..31. */
static inline uint32_t rne_shift(uint32_t m, unsigned shift)
{
	uint32_t q = m >> shift;
	uint32_t rem = m & ((1u << shift) - 1);
	uint32_t half = 1u << (shift - 1);
	return q + (rem > half || (rem == half && (q & 1)));
}

/*
 * round(|x| * 2^k), ties to even, for a non-NaN FP32 magnitude a (bits
 * without sign) below the target's smallest normal, whose smallest
 * subnormal is 2^-k: the target's subnormal code (a value that rounds up to
 * the smallest normal gives that normal's code, which is also correct).
 * |x| = M * 2^(E - 150) with M the significand (implicit bit included for
 * normal E, E taken as 1 for FP32 subnormals), so |x| * 2^k = M * 2^(E +
 * k - 150), a right shift of M by (150 - k - E). k = 24 for FP16, 9 for FP8.
 */
static inline uint32_t subnormal_code(uint32_t a, unsigned k)
{
	uint32_t e = a >> 23;
	uint32_t m = (a & 0x7FFFFF) | (e ? 0x800000 : 0);
	unsigned shift = 150 - k - (e ? e : 1);
	/* M < 2^24, so a shift of 25 or more leaves less than half: zero */
	return shift >= 25 ? 0 : rne_shift(m, shift);
}

// ---------------------------------------------------------------- BF16

static inline float bf16_to_f32(uint16_t h)
{
	return u2f((uint32_t)h << 16);
}

static inline uint16_t f32_to_bf16(float f)
{
	uint32_t u = f2u(f);
	if ((u & 0x7FFFFFFF) > 0x7F800000)     /* NaN: keep sign and top payload, quiet it */
		return (uint16_t)((u >> 16) | 0x0040);
	/* the carry of the largest finite values reaches 0x7F80 (Inf): IEEE overflow */
	u += 0x7FFF + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

// ---------------------------------------------------------------- FP16

static inline float f16_to_f32(uint16_t h)
{
	uint32_t s = (uint32_t)(h & 0x8000) << 16;
	uint32_t e = (h >> 10) & 0x1F, m = h & 0x3FF;
	if (e == 0x1F)                         /* Inf, or NaN with its payload */
		return u2f(s | 0x7F800000 | (m << 13));
	if (e == 0) {                          /* zero or subnormal: m * 2^-24, exact */
		float v = (float)m * 0x1p-24f;
		return s ? -v : v;
	}
	/* rebias the exponent: 127 - 15 = 112 */
	return u2f(s | ((e + 112) << 23) | (m << 13));
}

static inline uint16_t f32_to_f16(float f)
{
	uint32_t u = f2u(f);
	uint16_t s = (uint16_t)((u >> 16) & 0x8000);
	uint32_t a = u & 0x7FFFFFFF;
	if (a > 0x7F800000)                    /* NaN: quiet, sign and top payload kept */
		return (uint16_t)(s | 0x7E00 | ((a >> 13) & 0x3FF));
	if (a >= 0x38800000) {                 /* |x| >= 2^-14: FP16 normal (or overflow) */
		uint32_t r = (a + 0xFFF + ((a >> 13) & 1)) >> 13;
		r -= 112 << 10;
		return (uint16_t)(s | (r >= 0x7C00 ? 0x7C00 : r));
	}
	/* subnormal codes count units of 2^-24; 0x400 (rounded up) is 2^-14 */
	return (uint16_t)(s | subnormal_code(a, 24));
}

// ---------------------------------------------------------------- FP8 E4M3FN

static inline float fp8_to_f32(uint8_t b)
{
	uint32_t s = (uint32_t)(b & 0x80) << 24;
	uint32_t e = (b >> 3) & 15, m = b & 7;
	if ((b & 0x7F) == 0x7F)                /* S.1111.111 is the only NaN */
		return u2f(s | 0x7FC00000);
	if (e == 0) {                          /* zero or subnormal: m * 2^-9 */
		float v = (float)m * 0x1p-9f;
		return s ? -v : v;
	}
	/* rebias: 127 - 7 = 120; E4M3FN uses exponent 15 for finite values */
	return u2f(s | ((e + 120) << 23) | (m << 20));
}

static inline uint8_t f32_to_fp8(float f)
{
	uint32_t u = f2u(f);
	uint8_t s = (uint8_t)((u >> 24) & 0x80);
	uint32_t a = u & 0x7FFFFFFF;
	if (a > 0x7F800000)
		return 0x7F;
	if (a >= 0x43E00000)                   /* |x| >= 448, Inf included: saturate */
		return (uint8_t)(s | 0x7E);
	if (a >= 0x3C800000) {                 /* |x| >= 2^-6: normal */
		/* below 448 the rounding can reach 448 (0x7E) but never the NaN code */
		uint32_t r = (a + 0x7FFFF + ((a >> 20) & 1)) >> 20;
		return (uint8_t)(s | (r - (120 << 3)));
	}
	return (uint8_t)(s | subnormal_code(a, 9));
}

// ---------------------------------------------------------------- exported scalars

/* The exported names wrap the static inline versions above: under -fPIC an
 * exported function may be interposed, so GCC would not inline it into the
 * row loops. */
float qc_bf16_to_f32(uint16_t h) { return bf16_to_f32(h); }
uint16_t qc_f32_to_bf16(float f) { return f32_to_bf16(f); }
float qc_f16_to_f32(uint16_t h) { return f16_to_f32(h); }
uint16_t qc_f32_to_f16(float f) { return f32_to_f16(f); }
float qc_fp8e4m3_to_f32(uint8_t b) { return fp8_to_f32(b); }
uint8_t qc_f32_to_fp8e4m3(float f) { return f32_to_fp8(f); }

// ---------------------------------------------------------------- rows

/* FP8 decoding by table: 256 entries filled once from the scalar reference. */
static float fp8_table[256];
static pthread_once_t fp8_once = PTHREAD_ONCE_INIT;

static void fp8_table_init(void)
{
	for (int i = 0; i < 256; i++)
		fp8_table[i] = fp8_to_f32((uint8_t)i);
}

/* Loads and stores go through memcpy: safetensors data need not be aligned
 * for its type, and the compiler turns these into plain moves. */
static inline uint16_t ld16(const unsigned char *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static inline void st16(unsigned char *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static int unsupported(const char *what, qc_dtype dt)
{
	return qc_seterr(QC_EUNSUPPORTED, "cannot convert %s '%s': not a floating-point type",
	                 what, qc_dtype_name(dt));
}

/*
 * Run body for i = 0..n-1 in chunks of 16 with a constant inner trip count:
 * GCC's default -O2 cost model vectorizes such inner loops (but not a loop
 * over an unknown n), which makes the BF16 paths about 3x faster. The body
 * must not depend on the chunking.
 */
#define ROWS(n, body)                                                      \
	do {                                                               \
		size_t c_ = 0;                                             \
		for (; c_ + 16 <= (n); c_ += 16)                           \
			for (size_t j_ = 0; j_ < 16; j_++) {               \
				size_t i = c_ + j_;                        \
				body;                                      \
			}                                                  \
		for (; c_ < (n); c_++) {                                   \
			size_t i = c_;                                     \
			body;                                              \
		}                                                          \
	} while (0)

/* One loop per conversion, with restrict parameters (the contract says no
 * overlap; restrict on local copies would not let GCC vectorize). */
static void f64_to_f32_rows(float *restrict dst, const unsigned char *restrict s, size_t n)
{
	ROWS(n, {
		double d;
		memcpy(&d, s + 8 * i, 8);
		dst[i] = (float)d;
	});
}

static void bf16_to_f32_rows(float *restrict dst, const unsigned char *restrict s, size_t n)
{
	ROWS(n, dst[i] = bf16_to_f32(ld16(s + 2 * i)));
}

static void f16_to_f32_rows(float *restrict dst, const unsigned char *restrict s, size_t n)
{
	ROWS(n, dst[i] = f16_to_f32(ld16(s + 2 * i)));
}

static void fp8_to_f32_rows(float *restrict dst, const unsigned char *restrict s, size_t n)
{
	pthread_once(&fp8_once, fp8_table_init);
	ROWS(n, dst[i] = fp8_table[s[i]]);
}

static void f32_to_f64_rows(unsigned char *restrict d, const float *restrict src, size_t n)
{
	ROWS(n, {
		double v = src[i];
		memcpy(d + 8 * i, &v, 8);
	});
}

static void f32_to_bf16_rows(unsigned char *restrict d, const float *restrict src, size_t n)
{
	ROWS(n, st16(d + 2 * i, f32_to_bf16(src[i])));
}

static void f32_to_f16_rows(unsigned char *restrict d, const float *restrict src, size_t n)
{
	ROWS(n, st16(d + 2 * i, f32_to_f16(src[i])));
}

static void f32_to_fp8_rows(unsigned char *restrict d, const float *restrict src, size_t n)
{
	ROWS(n, d[i] = f32_to_fp8(src[i]));
}

int qc_to_f32(float *dst, const void *src, qc_dtype src_dt, size_t n)
{
	switch (src_dt) {
	case QC_DT_F32:
		if (n)
			memcpy(dst, src, n * sizeof(float));
		return 0;
	case QC_DT_F64: f64_to_f32_rows(dst, src, n); return 0;
	case QC_DT_BF16: bf16_to_f32_rows(dst, src, n); return 0;
	case QC_DT_F16: f16_to_f32_rows(dst, src, n); return 0;
	case QC_DT_F8_E4M3: fp8_to_f32_rows(dst, src, n); return 0;
	default: return unsupported("from", src_dt);
	}
}

int qc_from_f32(void *dst, qc_dtype dst_dt, const float *src, size_t n)
{
	switch (dst_dt) {
	case QC_DT_F32:
		if (n)
			memcpy(dst, src, n * sizeof(float));
		return 0;
	case QC_DT_F64: f32_to_f64_rows(dst, src, n); return 0;
	case QC_DT_BF16: f32_to_bf16_rows(dst, src, n); return 0;
	case QC_DT_F16: f32_to_f16_rows(dst, src, n); return 0;
	case QC_DT_F8_E4M3: f32_to_fp8_rows(dst, src, n); return 0;
	default: return unsupported("to", dst_dt);
	}
}

// ---------------------------------------------------------------- non-finite scan

/*
 * Every tensor a tool reads is scanned, so the common case (all finite) must
 * run at memory speed: count the non-finite elements of a block with a
 * branch-free loop the compiler can vectorize, and only search a block
 * element by element when its count is not zero.
 */
#define SCAN_BLOCK 4096

#define DEFINE_SCAN(fname, T, load, is_bad)                                        \
	static int64_t fname(const unsigned char *p, size_t n)                     \
	{                                                                          \
		size_t b = 0;                                                      \
		for (; b + SCAN_BLOCK <= n; b += SCAN_BLOCK) {                     \
			const unsigned char *q = p + b * sizeof(T);                \
			unsigned bad = 0;                                          \
			for (size_t i = 0; i < SCAN_BLOCK; i++)                    \
				bad += is_bad(load(q + i * sizeof(T)));            \
			if (bad)                                                   \
				break;                                             \
		}                                                                  \
		/* the block with the first bad element, or the tail */            \
		for (size_t i = b; i < n; i++)                                     \
			if (is_bad(load(p + i * sizeof(T))))                       \
				return (int64_t)i;                                 \
		return -1;                                                         \
	}

static inline uint8_t ld8(const unsigned char *p) { return *p; }
static inline uint32_t ld32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t ld64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* exponent field all ones = Inf or NaN; E4M3FN has only the NaN code */
#define BAD_F16(v)  (((v) & 0x7C00u) == 0x7C00u)
#define BAD_BF16(v) (((v) & 0x7F80u) == 0x7F80u)
#define BAD_F32(v)  (((v) & 0x7F800000u) == 0x7F800000u)
#define BAD_F64(v)  (((v) & 0x7FF0000000000000ull) == 0x7FF0000000000000ull)
#define BAD_FP8(v)  (((v) & 0x7Fu) == 0x7Fu)

DEFINE_SCAN(scan_f16, uint16_t, ld16, BAD_F16)
DEFINE_SCAN(scan_bf16, uint16_t, ld16, BAD_BF16)
DEFINE_SCAN(scan_f32, uint32_t, ld32, BAD_F32)
DEFINE_SCAN(scan_f64, uint64_t, ld64, BAD_F64)
DEFINE_SCAN(scan_fp8, uint8_t, ld8, BAD_FP8)

int64_t qc_first_nonfinite(const void *src, qc_dtype dt, size_t n)
{
	switch (dt) {
	case QC_DT_F16: return scan_f16(src, n);
	case QC_DT_BF16: return scan_bf16(src, n);
	case QC_DT_F32: return scan_f32(src, n);
	case QC_DT_F64: return scan_f64(src, n);
	case QC_DT_F8_E4M3: return scan_fp8(src, n);
	default: return -1;
	}
}

// ---------------------------------------------------------------- fake casts

float qc_round_to(float x, qc_dtype dt)
{
	switch (dt) {
	case QC_DT_BF16: return bf16_to_f32(f32_to_bf16(x));
	case QC_DT_F16: return f16_to_f32(f32_to_f16(x));
	case QC_DT_F8_E4M3: return fp8_to_f32(f32_to_fp8(x));
	default: return x;
	}
}
