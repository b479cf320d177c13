/*
 * bench_decode.c - W4A16 decoding (qc_decode.h) on a Llama-3.2-1B-shaped
 * model (hidden 2048, intermediate 8192, 32 heads, 8 KV heads, head_dim 64,
 * 16 layers, tied 128256 x 2048 BF16 embedding) whose Linears are int4
 * codes with BF16 scales per group of 128 (naive-quantized, random, held in
 * memory), against the memory-bandwidth bound of the bytes one step reads,
 * the bandwidth measured by a plain threaded read of a large buffer in the
 * same run.
 *
 *   bench_decode [-l layers] [-v vocab] [-p prompt] [-n steps] [-P prefill] [-j threads]
 *                [-r reps]
 *
 * Prints, best of reps: decode tokens/s of the decoder layers alone (the
 * Linears on packed codes, qk_linear_q4) and of whole steps (with the
 * lm_head, converted from BF16 a block of rows at a time), each with the
 * bytes it reads per token, the bound bandwidth / bytes, and the ratio.
 * Not a timed test: run it by hand (make bench) on a quiet machine.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "btable.h"
#include "kernels.h"
#include "qc_ctq.h"
#include "qc_decode.h"
#include "qc_err.h"
#include "qc_log.h"
#include "qc_model.h"

static void die(int rc)
{
	bt_die("bench_decode", rc);
}

/* ---- the bound: a plain read of a buffer larger than any cache ---- */

typedef struct {
	const uint64_t *p;
	size_t n;
	uint64_t sum;
} rd;

static void *read_part(void *a)
{
	rd *r = a;
	uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	for (size_t i = 0; i + 4 <= r->n; i += 4) {
		s0 += r->p[i];
		s1 += r->p[i + 1];
		s2 += r->p[i + 2];
		s3 += r->p[i + 3];
	}
	r->sum = s0 + s1 + s2 + s3;
	return NULL;
}

/* bytes/s reading buf[bytes] with `threads` threads, best of reps */
static double read_bw(const uint64_t *buf, size_t bytes, int threads, int reps)
{
	double best = 0;
	rd parts[256];
	pthread_t th[256];
	size_t words = bytes / 8, per = words / (size_t)threads;
	for (int k = 0; k < reps; k++) {
		double t0 = qc_now();
		for (int i = 0; i < threads; i++) {
			parts[i] = (rd){ buf + per * (size_t)i, per, 0 };
			pthread_create(&th[i], NULL, read_part, &parts[i]);
		}
		uint64_t s = 0;
		for (int i = 0; i < threads; i++) {
			pthread_join(th[i], NULL);
			s += parts[i].sum;
		}
		double dt = qc_now() - t0;
		if (s == 42)   /* keep the sum alive */
			printf(" ");
		double bw = (double)(per * (size_t)threads * 8) / dt;
		best = bw > best ? bw : best;
	}
	return best;
}

int main(int argc, char **argv)
{
	int layers = 16, threads = 0, reps = 3;
	int64_t vocab = 128256, prompt = 16, steps = 32, prefill = 256;
	int c;
	while ((c = getopt(argc, argv, "l:v:p:n:P:j:r:")) != -1) {
		switch (c) {
		case 'l': layers = atoi(optarg); break;
		case 'v': vocab = atoll(optarg); break;
		case 'p': prompt = atoll(optarg); break;
		case 'n': steps = atoll(optarg); break;
		case 'P': prefill = atoll(optarg); break;
		case 'j': threads = atoi(optarg); break;
		case 'r': reps = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: bench_decode [-l layers] [-v vocab] [-p prompt] [-n steps] "
			                "[-P prefill] [-j threads] [-r reps]\n");
			return 2;
		}
	}
	if (layers < 1 || vocab < 2 || prompt < 1 || steps < 1 || prefill < 1 || threads < 0 ||
	    threads > 256 ||
	    reps < 1) {
		fprintf(stderr, "bench_decode: invalid arguments\n");
		return 2;
	}
	const int64_t G = 128;   /* inputs per scale */
	qc_config cfg;
	int64_t shapes[7][2];
	bt_llama_1b(&cfg, layers, vocab, shapes);
	const int64_t H = cfg.hidden_size, IM = cfg.intermediate_size;
	const int64_t nh = cfg.num_attention_heads, nkv = cfg.num_key_value_heads, hd = cfg.head_dim;
	btable tb = { 0 };
	char name[256];
	for (int l = 0; l < layers; l++) {
		bt_put_norms(&tb, &cfg, l, 0.1f, 1.0f);
		for (int k = 0; k < 7; k++) {
			/* codes in [-8, 7], one scale per 128 inputs */
			qc_linear_name(name, sizeof name, l, (qc_linear)k, "weight");
			qc_tensor *t = bt_put(&tb, name, QC_DT_I8, 2, shapes[k]);
			for (size_t i = 0; i < t->nbytes; i++)
				((int8_t *)t->data)[i] = (int8_t)((int)(bt_rand() >> 60) - 8);
			int64_t ss[2] = { shapes[k][0], shapes[k][1] / G };
			qc_linear_name(name, sizeof name, l, (qc_linear)k, "weight_scale");
			bt_put_bf16(&tb, name, 2, ss, 0.002f, 0.004f);
		}
	}
	bt_put_bf16(&tb, "model.norm.weight", 1, &H, 0.1f, 1.0f);
	int64_t es[2] = { vocab, H };
	bt_put_bf16(&tb, "model.embed_tokens.weight", 2, es, 0.05f, 0.0f);
	qc_wsrc src = { &tb, bt_get, NULL };
	json_t *qj = json_loads(
		"{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": "
		"\"naive-quantized\", \"ignore\": [\"lm_head\"], \"config_groups\": {\"group_0\": "
		"{\"targets\": [\"Linear\"], \"input_activations\": null, \"weights\": {\"num_bits\": 4, "
		"\"type\": \"int\", \"strategy\": \"group\", \"group_size\": 128, \"symmetric\": true, "
		"\"dynamic\": false}}}}}", 0, NULL);
	qc_ctq *q;
	int rc;
	if ((rc = qc_ctq_from_config(&q, qj)))
		die(rc);
	json_decref(qj);

	qk_ctx *kc;
	if ((rc = qk_ctx_new(&kc, QK_DEVICE_CPU, threads)))
		die(rc);
	threads = qk_ctx_threads(kc);
	qc_model *m;
	if ((rc = qc_model_new(&m, &cfg, &src, q, kc, NULL)))
		die(rc);
	double t0 = qc_now();
	qc_decoder *d;
	int64_t cap = prompt + steps + 1 > prefill ? prompt + steps + 1 : prefill;
	if ((rc = qc_decoder_new(&d, m, cap)))
		die(rc);
	int packed;
	int64_t wbytes;
	qc_decoder_weights(d, &packed, &wbytes);
	double load_s = qc_now() - t0;

	double loadavg[3] = { 0 };
	FILE *la = fopen("/proc/loadavg", "r");
	if (la) {
		if (fscanf(la, "%lf %lf %lf", &loadavg[0], &loadavg[1], &loadavg[2]) != 3)
			loadavg[0] = -1;
		fclose(la);
	}
	printf("model: hidden %lld, intermediate %lld, heads %lld/%lld, %d layers, vocab %lld (tied, "
	       "BF16); int4 group %lld\n", (long long)H, (long long)IM, (long long)nh, (long long)nkv,
	       layers, (long long)vocab, (long long)G);
	printf("decoder: %d of %d Linears packed, %.1f MB of layer weights a step; loaded in %.1f s; "
	       "threads %d; load before: %.2f %.2f %.2f\n", packed, 7 * layers, (double)wbytes / 1e6,
	       load_s, threads, loadavg[0], loadavg[1], loadavg[2]);

	/* the bound's buffer: four times the layer weights, at least 512 MB */
	size_t bb = (size_t)wbytes * 4 < ((size_t)512 << 20) ? (size_t)512 << 20 : (size_t)wbytes * 4;
	uint64_t *buf = malloc(bb);
	if (!buf)
		die(qc_seterr(QC_ENOMEM, "out of memory"));
	for (size_t i = 0; i < bb / 8; i++)
		buf[i] = i;
	int64_t nid = prompt > prefill ? prompt : prefill;
	int32_t *ids = malloc(sizeof(int32_t) * (size_t)nid);
	for (int64_t i = 0; i < nid; i++)
		ids[i] = (int32_t)(bt_rand() % (uint64_t)vocab);
	float *logits = malloc(sizeof(float) * (size_t)vocab);
	/* bytes a step reads beside the layer weights: the lm_head (BF16) and
	 * the KV cache up to the last position (FP32 keys and values) */
	double head_bytes = (double)vocab * (double)H * 2;
	double kv_bytes = (double)layers * 2.0 * (double)(prompt + steps) * (double)(nkv * hd) * 4;
	double best_layers = 0, best_steps = 0, bw = 0, best_pre = 0, best_gemm = 0;
	/* the prefill bound's operands: x [prefill, 2048], W [8192, 2048], y */
	float *gx = malloc(sizeof(float) * (size_t)(prefill * H)), *gw = malloc(sizeof(float) * (size_t)(IM * H));
	float *gy = malloc(sizeof(float) * (size_t)(prefill * IM));
	if (!gx || !gw || !gy)
		die(qc_seterr(QC_ENOMEM, "out of memory"));
	for (int64_t i = 0; i < prefill * H; i++)
		gx[i] = (float)(bt_rand() >> 40) / (float)(1 << 24) - 0.5f;
	for (int64_t i = 0; i < IM * H; i++)
		gw[i] = (float)(bt_rand() >> 40) / (float)(1 << 24) - 0.5f;
	int64_t lin_w = 0;   /* Linear weights a token multiplies */
	for (int k = 0; k < 7; k++)
		lin_w += shapes[k][0] * shapes[k][1];
	lin_w *= layers;
	for (int r = 0; r < reps; r++) {
		/* prefill through the layers, then the same FLOPs' worth of sgemm */
		if ((rc = qc_decoder_rewind(d, 0)))
			die(rc);
		double p0 = qc_now();
		if ((rc = qc_decoder_feed(d, ids, prefill, NULL)))
			die(rc);
		double tp = (double)prefill / (qc_now() - p0);
		best_pre = tp > best_pre ? tp : best_pre;
		/* through the kernel context, which applies its BLAS thread count */
		p0 = qc_now();
		if ((rc = qk_gemm(kc, 0, 1, prefill, IM, H, 1.0f, gx, H, gw, H, 0.0f, gy, IM)))
			die(rc);
		double fl = 2.0 * (double)prefill * (double)IM * (double)H / (qc_now() - p0);
		best_gemm = fl > best_gemm ? fl : best_gemm;
		double b = read_bw(buf, bb, threads, 1);
		bw = b > bw ? b : bw;
		/* layers only: feed without logits */
		if ((rc = qc_decoder_rewind(d, 0)) || (rc = qc_decoder_feed(d, ids, prompt, NULL)))
			die(rc);
		int32_t id = ids[prompt - 1];
		double s0 = qc_now();
		for (int64_t k = 0; k < steps; k++)
			if ((rc = qc_decoder_feed(d, &id, 1, NULL)))
				die(rc);
		double tl = (double)steps / (qc_now() - s0);
		best_layers = tl > best_layers ? tl : best_layers;
		/* whole greedy steps */
		if ((rc = qc_decoder_rewind(d, 0)) || (rc = qc_decoder_feed(d, ids, prompt, logits)))
			die(rc);
		s0 = qc_now();
		for (int64_t k = 0; k < steps; k++) {
			id = qc_argmax(logits, vocab);
			if ((rc = qc_decoder_feed(d, &id, 1, logits)))
				die(rc);
		}
		double ts = (double)steps / (qc_now() - s0);
		best_steps = ts > best_steps ? ts : best_steps;
	}
	double bl = (double)wbytes + kv_bytes, bs = bl + head_bytes;
	printf("memory read: %.2f GB/s (%d threads, %.0f MB buffer)\n", bw / 1e9, threads,
	       (double)bb / 1e6);
	printf("decoder layers: %8.2f tokens/s; %.1f MB a token; bound %8.2f tokens/s; ratio %.2f\n",
	       best_layers, bl / 1e6, bw / bl, best_layers / (bw / bl));
	printf("whole steps:    %8.2f tokens/s; %.1f MB a token; bound %8.2f tokens/s; ratio %.2f\n",
	       best_steps, bs / 1e6, bw / bs, best_steps / (bw / bs));
	double gb = best_gemm / (2.0 * (double)lin_w);
	printf("prefill (%lld tokens): %8.2f tokens/s; sgemm %.1f GFLOP/s gives %8.2f tokens/s; "
	       "ratio %.2f\n", (long long)prefill, best_pre, best_gemm / 1e9, gb, best_pre / gb);
	qc_decoder_free(d);
	qc_model_free(m);
	qc_ctq_free(q);
	qk_ctx_free(kc);
	for (size_t i = 0; i < tb.n; i++) {
		free((void *)tb.t[i].name);
		free((void *)tb.t[i].data);
	}
	free(tb.t);
	free(buf);
	free(ids);
	free(logits);
	free(gx);
	free(gw);
	free(gy);
	return 0;
}
