/*
 * qc_walk.h - the calibration walker (doc/design.md 5): a token set pushed through
 * a model one decoder layer at a time, with hooks where a method observes
 * each Linear's inputs and may replace the weights before the activations
 * move on.
 *
 * The token set is embedded once. Then, for each layer in order:
 *
 *   load the layer (qc_model_load_layer); hooks.layer_begin
 *   QKV      inputs of q/k/v   = RMSNorm(x)           [rows, hidden]
 *   O        input of o_proj   = attention output     [rows, heads*head_dim]
 *   GATE_UP  inputs of gate/up = RMSNorm(x + o(...))  [rows, hidden]
 *   DOWN     input of down     = act(gate) * up       [rows, intermediate]
 *            (act: SiLU, or the tanh GELU for Gemma; Gemma 2's output norms
 *            are inside the o and down steps, qc_model.h)
 *   hooks.layer_end; the layer's outputs become the next layer's inputs;
 *   free the layer
 *
 * At each point p whose bit is set in hooks.observe, on_input sees every
 * token's input exactly once, chunk by chunk in token order. When the bit
 * of p is set in hooks.update, on_update(p) follows once every token was
 * observed at p; it may change the weights that read p (and anything
 * before them: norms) in lw, e.g. replace them by their quantized values.
 * The walker then recomputes from p with the new weights, so the inputs
 * observed at later points, and the layer's outputs, see the quantized
 * earlier Linears: true-sequential order q/k/v -> o -> gate/up -> down, as
 * GPTQ's reference and GPTQModel do. A layer with no update runs in one pass.
 *
 * Memory: the activations of the whole token set, [T, hidden] in FP32 or
 * BF16 (opts.act_dtype), plus, when O has an update, the attention output
 * [T, heads*head_dim] in the same dtype, as far as opts.mem_budget allows:
 * the chunks beyond it are spilled, each to its own zstd-compressed file in
 * a scratch directory, read and rewritten whole as the walk passes them
 * (one chunk in memory at a time); chunk scratch of about
 * opts.chunk_tokens tokens; the model's one layer. DOWN inputs are produced
 * and consumed in blocks of the model's mlp_rows rows. When DOWN has an
 * update, its inputs are needed twice (observed, then, after the update,
 * multiplied by the new down_proj): when the hooks say the update changes
 * down_proj only (hooks.same_inputs), up to opts.keep_down bytes of them
 * are kept in FP32 between the two passes ([rows, intermediate] per chunk,
 * whole chunks), so those chunks skip the second gate/up; the other chunks
 * recompute gate/up from the stored residual stream. Either way the bits
 * are the same. With BF16 storage every store of the stores above rounds (also
 * between passes of one layer), exactly as a BF16 pipeline would.
 *
 * Sequences: the token set's rows, each with its valid length; rows are
 * packed without padding (T = sum of lengths) and chunks hold whole
 * sequences. Zero-length rows are allowed and contribute nothing.
 *
 * Not thread-safe: one thread per walker. Two walkers over two models can
 * run side by side, one layer each in turn (qc_metrics does), so that two
 * models are never in memory at once.
 */
#ifndef QC_WALK_H
#define QC_WALK_H

#include <stdint.h>

#include "qc_dtype.h"
#include "qc_model.h"

typedef enum {
	QC_WALK_QKV = 0,
	QC_WALK_O,
	QC_WALK_GATE_UP,
	QC_WALK_DOWN,
	QC_WALK_POINTS
} qc_walk_point;

#define QC_WALK_BIT(p) (1u << (p))

/* The Linears that read point p: first and count in qc_linear order
 * (QKV: q, k, v; O: o; GATE_UP: gate, up; DOWN: down). */
void qc_walk_point_linears(qc_walk_point p, qc_linear *first, int *count);
/* "qkv", "o", "gate_up", "down" */
const char *qc_walk_point_name(qc_walk_point p);

/*
 * Hooks; any function may be NULL. A non-zero return stops the walk and is
 * returned by qc_walk_layer (so return a QC_E* code with the message set).
 * row0 is the first row's index among the T packed tokens; x is FP32 device
 * memory valid only during the call. The layer's buffers (qc_layer) are
 * kernel memory too: on_update changes them only through kernels.h.
 */
typedef struct qc_walk_hooks {
	void *ctx;
	unsigned observe;     /* QC_WALK_BIT(p) for the points on_input wants */
	unsigned update;      /* QC_WALK_BIT(p) for the points on_update follows */
	int (*layer_begin)(void *ctx, int layer, qc_layer *lw);
	int (*on_input)(void *ctx, int layer, qc_walk_point p, const float *x, int64_t row0,
	                int64_t rows, int64_t cols);
	int (*on_update)(void *ctx, int layer, qc_walk_point p, qc_layer *lw);
	int (*layer_end)(void *ctx, int layer, qc_layer *lw);
	unsigned restart;     /* QC_WALK_BIT(QC_WALK_O): after the update at O the
	                         walk recomputes the layer from its input (the
	                         update changed v_proj, so the attention outputs
	                         held for O are stale); points observed before
	                         are not observed again. Other bits are ignored. */
	unsigned same_inputs; /* QC_WALK_BIT(QC_WALK_DOWN): the update at DOWN
	                         changes down_proj only (not up_proj, as an up ->
	                         down smoothing does), so the DOWN inputs kept
	                         before it (opts.keep_down) are still right and
	                         are used instead of a second gate/up. Without
	                         it nothing kept is used. Other bits are ignored. */
} qc_walk_hooks;

typedef struct qc_walk_opts {
	int64_t chunk_tokens;   /* tokens per chunk (whole sequences); 0: 2048 */
	qc_dtype act_dtype;     /* QC_DT_F32 (0 means F32 too) or QC_DT_BF16 */
	/* called after each layer (may be NULL): layers done, total */
	void (*progress)(void *ctx, int done, int total);
	void *progress_ctx;
	uint64_t mem_budget;    /* bytes of activations held in memory; chunks
	                           beyond it spill to zstd files (0: no limit) */
	const char *spill_dir;  /* where the scratch directory goes (NULL: $TMPDIR
	                           or /tmp); removed by qc_walk_free */
	uint64_t keep_down;     /* bytes of DOWN inputs kept between the passes
	                           at DOWN (FP32, never spilled; 0: none) */
} qc_walk_opts;

typedef struct qc_walk qc_walk;

/*
 * Start a walk of model m (borrowed; its next layer must be loadable) over
 * nseq sequences: sequence i is ids[i * stride .. + lens[i]) (a token set
 * [N, L] has stride L). Embeds every token now; an id outside the
 * vocabulary is QC_EFORMAT. ids and lens are copied. opts may be NULL.
 */
int qc_walk_new(qc_walk **out, qc_model *m, const int32_t *ids, int64_t stride,
                const int32_t *lens, int64_t nseq, const qc_walk_opts *opts);
void qc_walk_free(qc_walk *w);                  /* NULL is a no-op */

/* Run the next layer with hooks h (NULL: none). QC_EINVAL when every layer
 * is done. On failure the walk cannot continue (its activations are
 * partly updated). */
int qc_walk_layer(qc_walk *w, const qc_walk_hooks *h);
/* Run every remaining layer. */
int qc_walk_run(qc_walk *w, const qc_walk_hooks *h);
/* Index of the next layer to run (num_hidden_layers when done). */
int qc_walk_next(const qc_walk *w);

/* Rows [r0, r1) of the current activations (after the last layer run: the
 * final hidden states, before the final norm) as FP32 into x (kernel
 * memory of the model's context). */
int qc_walk_hidden(qc_walk *w, int64_t r0, int64_t r1, float *x);

int64_t qc_walk_tokens(const qc_walk *w);       /* T */
int64_t qc_walk_seqs(const qc_walk *w);         /* nseq */
/* Row offset of each sequence, [nseq + 1] (the last is T). */
const int64_t *qc_walk_offsets(const qc_walk *w);
/* The packed token ids [T]. */
const int32_t *qc_walk_ids(const qc_walk *w);
qc_model *qc_walk_model(const qc_walk *w);

#endif
