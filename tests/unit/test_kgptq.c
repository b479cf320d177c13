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
#include "kernels.h"

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
				tu_assert_rc(qc_kgptq_ref(types[t], W, rows, cols, H, 0.01, 1, bg, dg, &eg), 0);
				tu_assert_rc(qc_kgptq_ref(types[t], W, rows, cols, H, 0.01, 0, br, dr, &er), 0);
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
	tu_assert_rc(qc_kgptq_ref(QC_GGML_Q4_K, W, R, N, H, 0.01, 1, blocks, deq, &e), 0);
	assert_true(e > 0 && e < 0.1);
	tu_assert_rc(qc_kgptq_ref(QC_GGML_Q4_0, W, R, N, H, 0.01, 1, blocks, deq, &e), QC_EINVAL);
	tu_assert_rc(qc_kgptq_ref(QC_GGML_Q4_K, W, R, 200, H, 0.01, 1, blocks, deq, &e), QC_EINVAL);
	W[7] = NAN;
	tu_assert_rc(qc_kgptq_ref(QC_GGML_Q4_K, W, R, N, H, 0.01, 1, blocks, deq, &e), QC_ENUMERIC);
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

/* Run qc_kgptq_run on q/k/v-like parts sharing one Hessian: [n, n] FP32
 * upper triangle uploaded from the double H. */
static int run_fast(qk_ctx *kc, const double *Hd, int64_t n, int gptq, qc_kgptq_part *parts,
                    int np, qc_kgptq_info *info)
{
	float *hf = malloc((size_t)(n * n) * sizeof *hf);
	for (int64_t i = 0; i < n * n; i++)
		hf[i] = (float)Hd[i];
	float *H = qk_alloc(kc, (size_t)(n * n) * sizeof *H);
	assert_non_null(H);
	assert_int_equal(qk_upload(kc, H, hf, (size_t)(n * n) * sizeof *H), 0);
	int rc = qc_kgptq_run(kc, gptq || Hd ? H : NULL, n, 0.01, 1.0, gptq, 128, parts, np, info);
	qk_free(kc, H);
	free(hf);
	return rc;
}

/* The run's FP32 solver against the double reference, on three parts of
 * different types sharing a Hessian (one dead input): round to nearest
 * gives the reference's bytes and errors; GPTQ its error within FP32's
 * reach, every block decoding to the values the solver returns, and most
 * codes equal. */
static void test_fast_vs_ref(void **state)
{
	(void)state;
	enum { N = 768, NP = 3 };
	const int64_t rows[NP] = { 96, 64, 40 };
	const int types[NP] = { QC_GGML_Q4_K, QC_GGML_Q6_K, QC_GGML_Q5_K };
	double *H = hessian(N, 1024);
	for (int j = 0; j < N; j++)
		H[17 * N + j] = H[j * N + 17] = 0;
	qk_ctx *kc;
	tu_assert_rc(qk_ctx_new(&kc, QK_DEVICE_CPU, 2), 0);
	float *W[NP], *Wk[NP], *deq[NP];
	uint8_t *blk[NP], *ref[NP];
	size_t rb[NP];
	for (int p = 0; p < NP; p++) {
		W[p] = malloc((size_t)(rows[p] * N) * sizeof(float));
		deq[p] = malloc((size_t)(rows[p] * N) * sizeof(float));
		for (int64_t i = 0; i < rows[p] * N; i++)
			W[p][i] = (float)(nrand() * (1 + (i % N == 40) * 8));   /* one large input */
		W[p][3] = 0;
		Wk[p] = qk_alloc(kc, (size_t)(rows[p] * N) * sizeof(float));
		tu_assert_rc(qc_ggml_row_bytes(types[p], N, &rb[p]), 0);
		blk[p] = malloc(rb[p] * (size_t)rows[p]);
		ref[p] = malloc(rb[p] * (size_t)rows[p]);
	}
	for (int gptq = 0; gptq < 2; gptq++) {
		qc_kgptq_part parts[NP];
		for (int p = 0; p < NP; p++) {
			tu_assert_rc(qk_upload(kc, Wk[p], W[p], (size_t)(rows[p] * N) * sizeof(float)), 0);
			parts[p] = (qc_kgptq_part){ .name = "part", .type = types[p], .W = Wk[p],
			                            .rows = rows[p], .blocks = blk[p], .deq = Wk[p] };
		}
		qc_kgptq_info info;
		tu_assert_rc(run_fast(kc, H, N, gptq, parts, NP, &info), 0);
		assert_int_equal(info.dead, 1);
		for (int p = 0; p < NP; p++) {
			double er, er_rtn;
			float *dr = malloc((size_t)(rows[p] * N) * sizeof(float));
			tu_assert_rc(qc_kgptq_ref(types[p], W[p], rows[p], N, H, 0.01, gptq, ref[p], dr, &er),
			             0);
			tu_assert_rc(qc_kgptq_ref(types[p], W[p], rows[p], N, H, 0.01, 0, ref[p] + 0, NULL,
			                          &er_rtn), 0);
			tu_assert_rc(qc_kgptq_ref(types[p], W[p], rows[p], N, H, 0.01, gptq, ref[p], NULL, &er),
			             0);
			tu_assert_rc(qk_download(kc, deq[p], Wk[p], (size_t)(rows[p] * N) * sizeof(float)),
			             0);
			/* the blocks decode to the values handed back */
			for (int64_t r = 0; r < rows[p]; r++) {
				tu_assert_rc(qc_ggml_dequantize(types[p], blk[p] + r * rb[p], N, dr), 0);
				assert_memory_equal(dr, deq[p] + r * N, N * sizeof(float));
			}
			size_t same = 0;
			for (size_t i = 0; i < rb[p] * (size_t)rows[p]; i++)
				same += blk[p][i] == ref[p][i];
			double frac = (double)same / (double)(rb[p] * (size_t)rows[p]);
			print_message("%s gptq=%d err_out fast %.6f ref %.6f, err_rtn fast %.6f ref %.6f, "
			              "bytes equal %.4f\n", qc_ggml_type_name(types[p]), gptq,
			              parts[p].err_out, er, parts[p].err_rtn, er_rtn, frac);
			assert_true(fabs(parts[p].err_rtn - er_rtn) <= 1e-3 * er_rtn);
			if (!gptq) {
				assert_memory_equal(blk[p], ref[p], rb[p] * (size_t)rows[p]);
			} else {
				assert_true(fabs(parts[p].err_out - er) <= 0.02 * er);
				assert_true(parts[p].err_out < parts[p].err_rtn);
				assert_true(frac > 0.9);
			}
			assert_true(parts[p].err_w > 0 && parts[p].err_w < 0.1);
			free(dr);
		}
	}
	for (int p = 0; p < NP; p++) {
		qk_free(kc, Wk[p]);
		free(W[p]);
		free(deq[p]);
		free(blk[p]);
		free(ref[p]);
	}
	/* without a Hessian: round to nearest, no output errors */
	float *w1 = qk_alloc(kc, 4 * 256 * sizeof(float)), hw[4 * 256];
	uint8_t b1[4 * 144], r1[4 * 144];
	for (int i = 0; i < 4 * 256; i++)
		hw[i] = (float)nrand();
	tu_assert_rc(qk_upload(kc, w1, hw, sizeof hw), 0);
	qc_kgptq_part one = { .name = "one", .type = QC_GGML_Q4_K, .W = w1, .rows = 4, .blocks = b1 };
	tu_assert_rc(qc_kgptq_run(kc, NULL, 256, 0.01, 1.0, 0, 128, &one, 1, NULL), 0);
	assert_true(isnan(one.err_out) && isnan(one.err_rtn));
	for (int r = 0; r < 4; r++)
		tu_assert_rc(qc_ggml_quantize_ref(QC_GGML_Q4_K, hw + r * 256, 256, r1 + r * 144), 0);
	assert_memory_equal(b1, r1, sizeof b1);
	tu_assert_rc(qc_kgptq_run(kc, NULL, 256, 0.01, 1.0, 1, 128, &one, 1, NULL), QC_EINVAL);
	one.type = QC_GGML_Q8_0;
	tu_assert_rc(qc_kgptq_run(kc, NULL, 256, 0.01, 1.0, 0, 128, &one, 1, NULL), QC_EINVAL);
	one.type = QC_GGML_Q4_K;
	hw[5] = INFINITY;
	tu_assert_rc(qk_upload(kc, w1, hw, sizeof hw), 0);
	tu_assert_rc(qc_kgptq_run(kc, NULL, 256, 0.01, 1.0, 0, 128, &one, 1, NULL), QC_ENUMERIC);
	qk_free(kc, w1);
	qk_ctx_free(kc);
	free(H);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_q4km),
		cmocka_unit_test(test_dead_and_args),
		cmocka_unit_test(test_gptq_beats_rtn),
		cmocka_unit_test(test_fast_vs_ref),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
