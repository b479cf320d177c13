/* test_kgptq.c - GPTQ on ggml's K-quant grids (qc_kgptq.h).
 *
 * The weights are every Linear of a qsynth model (2 layers, hidden 256,
 * MLP 768, 4 heads of 64, 2 KV heads: inputs of 256 and 768, whole
 * super-blocks); the Hessians come from synthetic activations with the
 * statistics of a trained model's (heavy tails, a few outlier channels,
 * correlated inputs), H = 2 X^T X / T: no forward pass is run. For every
 * Linear and for Q4_K and Q6_K, GPTQ on the grid must have a lower err_out
 * than round-to-nearest on the same grid; RTN on the grid must be ggml's
 * reference quantizer byte for byte; the blocks must decode to exactly the
 * values the solver worked with. */
#include "tutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_config.h"
#include "qc_err.h"
#include "qc_ggml.h"
#include "qc_kgptq.h"
#include "qc_synth.h"

static uint64_t rs = 0x243F6A8885A308D3ull;
static double urand(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return (double)(rs >> 11) / 9007199254740992.0;
}
static double nrand(void)
{
	return sqrt(-2 * log(urand() + 1e-12)) * cos(6.283185307179586 * urand());
}

/* H = 2 X^T X / T for T tokens of n features: Student-t-like tails, 4
 * outlier channels with 30x gain, and each feature mixed with its
 * neighbours (inputs are correlated in real models). */
static double *hessian(int64_t n, int64_t T)
{
	double *H = calloc((size_t)(n * n), sizeof *H), *x = malloc((size_t)n * sizeof *x),
	       *z = malloc((size_t)n * sizeof *z);
	assert_non_null(H);
	for (int64_t t = 0; t < T; t++) {
		for (int64_t i = 0; i < n; i++) {
			double g = nrand(), v = urand() + 0.05;
			z[i] = g / sqrt(v);                    /* heavy tails */
		}
		for (int64_t i = 0; i < n; i++) {
			x[i] = z[i] + 0.5 * z[(i + 1) % n] + 0.25 * z[(i + 7) % n];
			if (i % (n / 4) == 3)
				x[i] *= 30;                        /* outlier channels */
		}
		for (int64_t i = 0; i < n; i++)
			for (int64_t j = 0; j <= i; j++)
				H[i * n + j] += 2 * x[i] * x[j] / (double)T;
	}
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = i + 1; j < n; j++)
			H[i * n + j] = H[j * n + i];
	free(x);
	free(z);
	return H;
}

static void test_gptq_beats_rtn(void **state)
{
	(void)state;
	qc_config c;
	memset(&c, 0, sizeof c);
	c.hidden_size = 256;
	c.intermediate_size = 768;
	c.num_hidden_layers = 2;
	c.num_attention_heads = 4;
	c.num_key_value_heads = 2;
	c.vocab_size = 512;
	assert_int_equal(qc_config_build(&c), 0);
	qc_synth_opts so;
	qc_synth_opts_default(&so);
	so.dtype = QC_DT_F32;
	so.threads = 1;
	double *Hh = hessian(256, 1024), *Hi = hessian(768, 1024);
	const int types[2] = { QC_GGML_Q4_K, QC_GGML_Q6_K };
	int n_lin = 0;
	for (int l = 0; l < 2; l++)
		for (int li = 0; li < QC_LIN_COUNT; li++) {
			char name[128];
			int64_t sh[2];
			qc_linear_name(name, sizeof name, l, (qc_linear)li, "weight");
			qc_linear_shape(&c, (qc_linear)li, sh);
			void *data;
			size_t nb;
			tu_assert_rc(qc_synth_tensor(&c, &so, name, 2, sh, &data, &nb), 0);
			const float *W = data;
			int64_t rows = sh[0], cols = sh[1];
			const double *H = cols == 256 ? Hh : Hi;
			for (int t = 0; t < 2; t++) {
				size_t rb;
				tu_assert_rc(qc_ggml_row_bytes(types[t], cols, &rb), 0);
				uint8_t *bg = malloc(rb * (size_t)rows), *br = malloc(rb * (size_t)rows);
				uint8_t *ref = malloc(rb);
				float *dg = malloc((size_t)(rows * cols) * sizeof *dg);
				float *dr = malloc((size_t)(rows * cols) * sizeof *dr);
				float *y = malloc((size_t)cols * sizeof *y);
				double eg, er;
				tu_assert_rc(qc_kgptq(types[t], W, rows, cols, H, 0.01, 1, bg, dg, &eg), 0);
				tu_assert_rc(qc_kgptq(types[t], W, rows, cols, H, 0.01, 0, br, dr, &er), 0);
				if (!(eg < er))
					fail_msg("%s %s: GPTQ err_out %.6g is not below RTN's %.6g", name,
					         qc_ggml_type_name(types[t]), eg, er);
				print_message("%-36s %s err_out gptq %.5f rtn %.5f (%.2fx)\n", name,
				              qc_ggml_type_name(types[t]), eg, er, er / eg);
				for (int64_t r = 0; r < rows; r++) {
					/* the blocks hold exactly what the solver used */
					tu_assert_rc(qc_ggml_dequantize(types[t], bg + r * rb, cols, y), 0);
					assert_memory_equal(y, dg + r * cols, (size_t)cols * sizeof *y);
					tu_assert_rc(qc_ggml_dequantize(types[t], br + r * rb, cols, y), 0);
					assert_memory_equal(y, dr + r * cols, (size_t)cols * sizeof *y);
					/* RTN on the grid is ggml's reference quantizer */
					tu_assert_rc(qc_ggml_quantize_ref(types[t], W + r * cols, cols, ref), 0);
					assert_memory_equal(ref, br + r * rb, rb);
				}
				free(bg);
				free(br);
				free(ref);
				free(dg);
				free(dr);
				free(y);
			}
			free(data);
			n_lin++;
		}
	assert_int_equal(n_lin, 14);
	free(Hh);
	free(Hi);
	qc_config_free(&c);
}

/* A dead input (never active) gets its weights zeroed, as in qc_gptq. */
static void test_dead_and_args(void **state)
{
	(void)state;
	enum { R = 4, N = 256 };
	float W[R * N], deq[R * N];
	for (int i = 0; i < R * N; i++)
		W[i] = (float)nrand();
	double *H = hessian(N, 512);
	for (int j = 0; j < N; j++)
		H[5 * N + j] = H[j * N + 5] = 0;
	uint8_t blocks[R * 144];
	double e;
	tu_assert_rc(qc_kgptq(QC_GGML_Q4_K, W, R, N, H, 0.01, 1, blocks, deq, &e), 0);
	assert_true(e > 0 && e < 0.1);
	tu_assert_rc(qc_kgptq(QC_GGML_Q4_0, W, R, N, H, 0.01, 1, blocks, deq, &e), QC_EINVAL);
	tu_assert_rc(qc_kgptq(QC_GGML_Q4_K, W, R, 200, H, 0.01, 1, blocks, deq, &e), QC_EINVAL);
	W[7] = NAN;
	tu_assert_rc(qc_kgptq(QC_GGML_Q4_K, W, R, N, H, 0.01, 1, blocks, deq, &e), QC_ENUMERIC);
	free(H);
}

/* llama.cpp's Q4_K_M mix: for 32 layers, layers 0-3, 28-31 and 6, 9, ...,
 * 27 keep attn_v and ffn_down at Q6_K; output.weight is Q6_K. */
static void test_q4km(void **state)
{
	(void)state;
	int six = 0;
	for (int l = 0; l < 32; l++) {
		int want = l < 4 || l >= 28 || (l - 4) % 3 == 2;
		char v[64], d[64], q[64];
		snprintf(v, sizeof v, "blk.%d.attn_v.weight", l);
		snprintf(d, sizeof d, "blk.%d.ffn_down.weight", l);
		snprintf(q, sizeof q, "blk.%d.attn_q.weight", l);
		assert_int_equal(qc_ggml_q4km_type(v, l, 32), want ? QC_GGML_Q6_K : QC_GGML_Q4_K);
		assert_int_equal(qc_ggml_q4km_type(d, l, 32), want ? QC_GGML_Q6_K : QC_GGML_Q4_K);
		assert_int_equal(qc_ggml_q4km_type(q, l, 32), QC_GGML_Q4_K);
		six += want;
	}
	assert_int_equal(six, 16);
	assert_int_equal(qc_ggml_q4km_type("output.weight", -1, 32), QC_GGML_Q6_K);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_q4km),
		cmocka_unit_test(test_dead_and_args),
		cmocka_unit_test(test_gptq_beats_rtn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
