/*
 * qc_rng.h - deterministic pseudo-random numbers (xoshiro256** seeded by
 * splitmix64). The same seed gives the same sequence on every platform with
 * IEEE doubles; streams can be split per tensor (qc_rng_derive) so that a
 * tensor's values do not depend on the order others were generated in.
 */
#ifndef QC_RNG_H
#define QC_RNG_H

#include <stdint.h>

typedef struct qc_rng {
	uint64_t s[4];
} qc_rng;

void qc_rng_seed(qc_rng *r, uint64_t seed);
/* Seed r from (seed, a string key), e.g. the tensor name. */
void qc_rng_derive(qc_rng *r, uint64_t seed, const char *key);
uint64_t qc_rng_u64(qc_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double qc_rng_uniform(qc_rng *r);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t qc_rng_below(qc_rng *r, uint64_t n);
/* Standard normal (Marsaglia polar method; no cached second value, so the
 * sequence depends only on the calls made). */
double qc_rng_normal(qc_rng *r);
/* Student-t with nu degrees of freedom (nu > 2 has finite variance), scaled
 * to unit variance: heavy tails like trained weights. */
double qc_rng_student_t(qc_rng *r, double nu);

#endif
