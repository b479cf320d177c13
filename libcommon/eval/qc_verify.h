/*
 * qc_verify.h - the checks behind qverify: is a checkpoint the model its
 * maker meant to publish? Three kinds, each recorded in one JSON report:
 *
 * integrity (always)
 *   - the manifest (quant_manifest.json), when there is one: every file's
 *     size and XXH3-128, every tensor's dtype, shape and XXH3-64
 *     (qc_ckpt_verify), naming the first mismatching file and tensor;
 *   - every tensor config.json implies is present with the right dtype and
 *     shape: embeddings, norms, each Linear as its quantization_config says
 *     (codes, scales, zero points, input scales: qc_ctq), biases when the
 *     config has them, lm_head unless tied;
 *   - values: scales finite and positive, codes and zero points in range,
 *     dense weights finite (qc_ctq_linear_check);
 *   - consistency: no tensor that neither config.json nor the
 *     quantization_config accounts for (a leftover weight_scale of an
 *     ignored Linear, a stray dense copy), rotary inv_freq buffers and
 *     k_scale/v_scale of an FP8 kv_cache_scheme excepted.
 * numerics (with a base checkpoint)
 *   - per Linear, the relative weight error of the dequantized weights
 *     ||W_q - W_base||^2 / ||W_base||^2, its mean and maximum; whether the
 *     base's fingerprint is the one the manifest records as base (reported,
 *     not a failure: a smoothed model legitimately descends from another).
 * function (with a base and a token set; PPL only without a base)
 *   - qc_metrics: PPL, PPL ratio, mean KL(base || artifact), top-1
 *     agreement, per-sequence spread; then the thresholds.
 * quality (with task, prompt or exact-answer files; against the base when
 * there is one)
 *   - qc_quality: multiple-choice accuracy and flips, greedy generations'
 *     ROUGE and exact match, exact-answer accuracy; then its gates, whose
 *     failures join the verdict's.
 *
 * When integrity fails, numerics, function and quality are skipped (recorded as
 * such): their numbers would describe a model nobody meant.
 *
 * K-quant checkpoints (qgptq --scheme gguf-*): a Linear's ggml blocks
 * stored beside its F32 weight (<m>.weight_ggml_q4_k, ...) are accounted
 * for, counted as integrity's "ggml_linears", and every row must decode to
 * the weight bit for bit (a finding names the first row that does not);
 * the model runs the F32 weights.
 * GGUF: an artifact that is a GGUF file (qc_gguf_is_file) is read through
 * qc_gguf_llama.h: integrity is the container's checks and the tensors the
 * config implies (no manifest: "manifest": "absent", and "gguf_type" names
 * the weights' ggml type); numerics and function run on its decoded
 * weights as on any checkpoint's.
 *
 * Streams: the artifact may be a tar stream ("-" or a file); its tensors
 * are kept (spilled to a temporary directory beyond the memory limit) until
 * the function step has used them, and its manifest is checked last, once
 * the stream has been read through.
 */
#ifndef QC_VERIFY_H
#define QC_VERIFY_H

#include <jansson.h>

#include "kernels.h"
#include "qc_metrics.h"
#include "qc_quality.h"

typedef struct qc_verify_opts {
	const char *base;        /* base checkpoint, or NULL */
	const char *tokens;      /* token set (qc_tokset), or NULL */
	double max_ppl_ratio;    /* fail above (needs base and tokens); <= 0: none */
	double max_kl;           /* fail when mean KL is above; < 0: none */
	double min_top1;         /* fail when top-1 agreement is below; < 0: none */
	int max_findings;        /* integrity findings listed in the report (0: 50) */
	qk_ctx *kc;              /* kernels (borrowed) */
	qc_metrics_opts metrics;
	uint64_t stream_mem_limit;  /* qc_ckpt_opts for stream inputs (0: default) */
	/* progress (may be NULL): stage "numerics" or "function", done/total */
	void (*progress)(void *ctx, const char *stage, int done, int total);
	void *progress_ctx;
	/* tasks, generations, exact answers (qc_quality.h; the tokenizer is the
	 * artifact's, else the base's); quality.progress reports them */
	qc_quality_opts quality;
	json_t *outputs;         /* array the generations' lines are appended to (may be NULL) */
} qc_verify_opts;

void qc_verify_opts_default(qc_verify_opts *o);

/*
 * Verify `artifact` (a directory, a tar file or "-"). *report receives the
 * JSON report (new reference) whenever the checks could run, also when one
 * failed:
 *
 *   {"artifact": path, "base": path|null, "tokens": path|null,
 *    "verdict": "pass"|"fail", "failures": [text, ...],
 *    "integrity": {"ok": bool, "manifest": "verified"|"absent"|"mismatch",
 *                  "model": {"architecture", "layers", "hidden_size", ...},
 *                  "scheme": {"format", "weights", "input_activations",
 *                             "ignore"} | null,
 *                  "tensors_checked": n, "linears": n, "quantized_linears": n,
 *                  "findings": [text, ...], "findings_total": n},
 *    "numerics": {"base_fingerprint": "matches"|"differs"|"not recorded",
 *                 "err_w_mean", "err_w_max", "worst",
 *                 "linears": [{"name", "quantized", "err_w"}, ...]} | null,
 *    "function": qc_metrics_json(...) | null,
 *    "quality": qc_quality_run's report | null,
 *    "thresholds": {"max_ppl_ratio", "max_kl", "min_top1"} (null when unset),
 *    "skipped": [text, ...]}
 *
 * Returns 0 when every check and threshold holds; QC_EINTEGRITY when one
 * does not (the message names the first failure, the report all of them);
 * any other code when the artifact cannot be verified at all (unreadable,
 * malformed, unsupported, a base of another shape, a bad token set), in
 * which case *report is NULL.
 */
int qc_verify(const char *artifact, const qc_verify_opts *o, json_t **report);

/* The report as lines for people (newline-terminated, malloc'd; NULL when
 * out of memory): integrity, numerics, function, a table of the quality
 * results, then one "FAIL: reason" line per failure, or "pass". */
char *qc_verify_summary(const json_t *rep);

#endif
