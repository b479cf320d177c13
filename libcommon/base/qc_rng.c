/* qc_rng.c - xoshiro256** and distributions (see qc_rng.h). */
#include "qc_rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void qc_rng_seed(qc_rng *r, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

void qc_rng_derive(qc_rng *r, uint64_t seed, const char *key)
{
	/* FNV-1a of the key mixed into the seed */
	uint64_t h = 0xcbf29ce484222325ull;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 0x100000001b3ull;
	qc_rng_seed(r, seed ^ splitmix64(&h));
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t qc_rng_u64(qc_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double qc_rng_uniform(qc_rng *r)
{
	return (qc_rng_u64(r) >> 11) * 0x1.0p-53;
}

uint64_t qc_rng_below(qc_rng *r, uint64_t n)
{
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t x;
	do
		x = qc_rng_u64(r);
	while (x >= limit);
	return x % n;
}

double qc_rng_normal(qc_rng *r)
{
	double u, v, s;
	do {
		u = 2.0 * qc_rng_uniform(r) - 1.0;
		v = 2.0 * qc_rng_uniform(r) - 1.0;
		s = u * u + v * v;
	} while (s >= 1.0 || s == 0.0);
	return u * sqrt(-2.0 * log(s) / s);
}

double qc_rng_student_t(qc_rng *r, double nu)
{
	/* t = Z / sqrt(V/nu), V ~ chi^2(nu) built from nu normals when nu is a
	 * small integer, else from a gamma by Marsaglia-Tsang. Unit variance:
	 * divide by sqrt(nu / (nu - 2)). */
	double z = qc_rng_normal(r);
	double v;
	double k = nu / 2.0;  /* V = 2 * Gamma(k) */
	{
		double d = (k < 1 ? k + 1 : k) - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d), g;
		for (;;) {
			double x = qc_rng_normal(r), t = 1.0 + c * x;
			if (t <= 0)
				continue;
			t = t * t * t;
			double u = qc_rng_uniform(r);
			if (u < 1.0 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1.0 - t + log(t))) {
				g = d * t;
				break;
			}
		}
		if (k < 1)
			g *= pow(qc_rng_uniform(r) + 1e-300, 1.0 / k);
		v = 2.0 * g;
	}
	double t = z / sqrt(v / nu);
	return nu > 2 ? t / sqrt(nu / (nu - 2.0)) : t;
}
