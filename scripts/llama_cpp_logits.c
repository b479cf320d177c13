/*
 * llama_cpp_logits.c - the logits of llama.cpp and of the toolkit's runtime
 * on the same GGUF file and the same token ids, compared position by
 * position. A hand check of `qpack -f gguf` against the real llama.cpp: it
 * is built by no Makefile target, and nothing in make check needs llama.cpp.
 *
 * Build against a llama.cpp checkout LL (cmake build in LL/build) and this
 * repository's library (make):
 *
 *   cc -O2 -std=gnu11 -o llama_cpp_logits scripts/llama_cpp_logits.c \
 *      -ILL/include -ILL/ggml/include -Ikernels -Ilibcommon/base -Ilibcommon/io \
 *      -Ilibcommon/format -Ilibcommon/model -Ilibcommon/tok build/libcommon.a \
 *      -LLL/build/bin -lllama -lggml -lggml-base -Wl,-rpath,LL/build/bin \
 *      $(the libraries the Makefile links the tools with) -lstdc++
 *
 *   llama_cpp_logits FILE.gguf [T]
 *
 * T (default 64) pseudo-random token ids (a fixed LCG, no BOS) go through
 * both as one sequence, every position's logits kept. Printed: the logits'
 * RMS, max and mean |ours - llama.cpp|, the mean KL(ours || llama.cpp) of
 * the softmaxes, and how many positions have the same argmax. Both read the
 * same blocks; llama.cpp's CPU matrix products quantize the activations
 * (to Q8_0 per 32 values for Q4_0/Q4_1/Q8_0 weights, to Q8_K per 256 for
 * the K-quants), the runtime keeps them in FP32, which is where the two
 * differ.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels.h"
#include "llama.h"
#include "qc_err.h"
#include "qc_gguf_llama.h"
#include "qc_model.h"

static int fail(const char *what)
{
	fprintf(stderr, "llama_cpp_logits: %s: %s\n", what, qc_errmsg());
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: llama_cpp_logits FILE.gguf [T]\n");
		return 2;
	}
	const char *path = argv[1];
	int T = argc == 3 ? atoi(argv[2]) : 64;
	if (T < 1 || T > 4096) {
		fprintf(stderr, "llama_cpp_logits: T is 1 to 4096\n");
		return 2;
	}
	qc_gguf_llama *gl;
	qk_ctx *kc;
	qc_model *m;
	if (qc_gguf_llama_open(&gl, path))
		return fail(path);
	const qc_config *cfg = qc_gguf_llama_config(gl);
	int V = (int)cfg->vocab_size;
	int32_t *ids = malloc((size_t)T * sizeof *ids);
	float *ours = malloc((size_t)T * (size_t)V * sizeof *ours);
	if (!ids || !ours || V < 8)
		return 1;
	unsigned seed = 12345;
	for (int i = 0; i < T; i++) {
		seed = seed * 1103515245u + 12345u;
		ids[i] = (int32_t)((seed >> 8) % (unsigned)(V - 4));
	}
	int64_t len = T;
	if (qk_ctx_new(&kc, QK_DEVICE_CPU, 1) ||
	    qc_model_new(&m, cfg, qc_gguf_llama_wsrc(gl), NULL, kc, NULL) ||
	    qc_model_forward(m, ids, &len, 1, ours, QC_OUT_LOGITS))
		return fail("the runtime");

	llama_backend_init();
	struct llama_model *lm = llama_model_load_from_file(path, llama_model_default_params());
	struct llama_context_params cp = llama_context_default_params();
	cp.n_ctx = cp.n_batch = cp.n_ubatch = (uint32_t)T;
	cp.n_threads = cp.n_threads_batch = 1;
	struct llama_context *lc = lm ? llama_init_from_model(lm, cp) : NULL;
	if (!lc) {
		fprintf(stderr, "llama_cpp_logits: llama.cpp cannot load '%s'\n", path);
		return 1;
	}
	struct llama_batch b = llama_batch_init(T, 0, 1);
	for (int i = 0; i < T; i++) {
		b.token[i] = ids[i];
		b.pos[i] = i;
		b.n_seq_id[i] = 1;
		b.seq_id[i][0] = 0;
		b.logits[i] = 1;
	}
	b.n_tokens = T;
	if (llama_decode(lc, b)) {
		fprintf(stderr, "llama_cpp_logits: llama_decode failed\n");
		return 1;
	}
	double maxd = 0, sumd = 0, sumsq = 0, kl = 0;
	int agree = 0;
	for (int t = 0; t < T; t++) {
		const float *a = ours + (size_t)t * (size_t)V, *l = llama_get_logits_ith(lc, t);
		int ia = 0, il = 0;
		for (int v = 0; v < V; v++) {
			double d = fabs((double)a[v] - l[v]);
			maxd = d > maxd ? d : maxd;
			sumd += d;
			sumsq += (double)a[v] * a[v];
			ia = a[v] > a[ia] ? v : ia;
			il = l[v] > l[il] ? v : il;
		}
		/* softmaxes from their maxima; KL in double */
		double za = 0, zl = 0, k = 0;
		for (int v = 0; v < V; v++) {
			za += exp((double)a[v] - a[ia]);
			zl += exp((double)l[v] - l[il]);
		}
		for (int v = 0; v < V; v++) {
			double la = (double)a[v] - a[ia] - log(za), ll = (double)l[v] - l[il] - log(zl);
			k += exp(la) * (la - ll);
		}
		kl += k;
		agree += ia == il;
	}
	printf("%s: %d positions, logit rms %.3f, |ours - llama.cpp| max %.4f mean %.5f, "
	       "KL(ours || llama.cpp) mean %.2e, same argmax %d/%d\n", path, T,
	       sqrt(sumsq / ((double)T * V)), maxd, sumd / ((double)T * V), kl / T, agree, T);
	llama_batch_free(b);
	llama_free(lc);
	llama_model_free(lm);
	llama_backend_free();
	qc_model_free(m);
	qk_ctx_free(kc);
	qc_gguf_llama_close(gl);
	free(ids);
	free(ours);
	return 0;
}
