/*
 * qc_qrun.h - the run driver every quantizing tool shares (qgptq, qfp8, and
 * the methods to come). A tool parses its options and describes its method
 * as a qc_qmethod: a few hooks the driver calls at fixed places. The driver
 * does everything else, the same way for every method:
 *
 *   open the input (directory, tar stream, "-"), parse config.json, refuse
 *   an input that is already quantized; ask the method for its scheme and
 *   add the --ignore patterns (a bad regex fails before any work);
 *   open the token set and check every id against the vocabulary (before
 *   the output exists); plan memory (--mem: activations in BF16, then
 *   spilled to zstd scratch files, or a clear "too small"); make the kernel
 *   context (--device, --threads) and, with tokens, the model and the
 *   calibration walker (doc/design.md, "The calibration walker");
 *   open the output (qc_qout.h) and, for --resume, find the layers a failed
 *   run finished;
 *   layer by layer: decide which Linears are quantized (not ignored), copy
 *   every tensor nobody claims, run the method's hooks (through the walker,
 *   or without tokens over the weights loaded one walker point at a time),
 *   end the layer's shard, record it for --resume, show progress;
 *   write the report (--report and quant_report.jsonl), the manifest, and
 *   rename the output into place; on failure remove it (or keep
 *   OUT.partial with --resume).
 *
 * Who writes what. Each tensor of the input is written exactly once: the
 * weight of every quantized Linear, and every tensor the method claims
 * (claims hook, e.g. norms with a smoothing folded in), by the method
 * (qc_qrun_write_linear, qc_qrun_write_tensor); every other tensor by the
 * driver, unchanged. A method may add tensors the input lacks (k_scale).
 *
 * Memory. Hooks see a layer (qc_layer) whose buffers are kernel memory
 * (kernels.h): touch them only through kernel ops, or qk_download /
 * qk_upload. x in observe is kernel memory too.
 *
 * Resume. With --resume and a directory output, after each layer the
 * driver records in OUT.partial the shard's hash, an XXH3-64 of the layer's
 * FP32 inputs and the layer's report lines, as written. A resumed run with
 * the same options, inputs, thread count and version reuses the finished
 * layers: their tensors come from the old shard, their Linears are
 * dequantized from it through the compressed-tensors reader (qc_ctq.h) so
 * that later layers see the same activations, their report lines are added
 * again as they were; the method's hooks do not run for them.
 */
#ifndef QC_QRUN_H
#define QC_QRUN_H

#include <stdint.h>

#include "kernels.h"
#include "qc_config.h"
#include "qc_model.h"
#include "qc_qscheme.h"
#include "qc_report.h"
#include "qc_walk.h"

typedef struct qc_qrun qc_qrun;

/* Bytes one layer's run holds at its peak besides the activations the
 * driver keeps (for --mem), as the method estimates them. */
typedef struct qc_qmem {
	double weights;   /* the layer's FP32 weights and what is derived from them */
	double hessian;   /* second-moment matrices and their staging */
	double solver;    /* the solver's working copies */
} qc_qmem;

/*
 * A quantization method. ctx is the method's own state; every hook gets it.
 * Only scheme is required (none for a dense method). The walker-point hooks have the meaning of
 * qc_walk.h's; the driver calls them for layers it does not replay.
 */
typedef struct qc_qmethod {
	const char *tool;       /* "qgptq": report lines, manifest, resume record */
	void *ctx;
	/* 1: the method quantizes nothing; it rewrites weights in the model's
	 * dtype (a smoothing) through claims and qc_qrun_write_tensor, and the
	 * output is a plain checkpoint (config.json as it was). scheme may then
	 * be NULL; if given it only names the run for report lines. */
	int dense;
	/* 1: the method writes its quantized Linears' tensors itself
	 * (qc_qrun_write_tensor: a float <module>.weight, which a resumed run
	 * reads back, and what else it stores), in a form compressed-tensors
	 * has no scheme for (GGUF's K-quant blocks, qc_gptqm.h): config.json
	 * then stays the input's, with no quantization_config, and readers run
	 * the float weights. The scheme still says which Linears are quantized
	 * (--ignore) and names the run in report lines. */
	int own_format;
	/* QC_WALK_BIT(QC_WALK_O) when the update at O changes v_proj (a v -> o
	 * smoothing): the walk then recomputes the attention (qc_walk.h). The
	 * begin hook may change it for the run (qc_qrun_set_restart), once it
	 * knows the model. */
	unsigned restart;
	/* QC_WALK_BIT(QC_WALK_DOWN) when the update at DOWN changes down_proj
	 * only: the walker may then keep DOWN inputs instead of computing
	 * gate/up twice (qc_walk.h, hooks.same_inputs). A method whose update
	 * at DOWN changes up_proj must leave it 0. */
	unsigned same_inputs;
	/* Fill the scheme for the model (a preset, the scale dtype from
	 * cfg->torch_dtype, ...) and its name for report lines ("w4a16"). The
	 * driver adds the --ignore patterns afterwards. Required unless dense. */
	int (*scheme)(void *ctx, const qc_config *cfg, qc_qscheme *s, const char **name);
	/* Once the run is set up (token set, kernels, model, walker), before the
	 * output opens: the method keeps run for the qc_qrun_* calls below. */
	int (*begin)(void *ctx, qc_qrun *run);
	/* Memory of one layer for the --mem plan (NULL: the FP32 weights). */
	void (*memory)(void *ctx, const qc_config *cfg, int calibrated, qc_qmem *need);
	/* The walker points to observe and to update after, for a layer whose
	 * quantized Linears are the bits of quant (bit l: qc_linear l). NULL:
	 * every point that feeds a quantized Linear, both (observe only with
	 * tokens). */
	void (*points)(void *ctx, int layer, unsigned quant, unsigned *observe, unsigned *update);
	/* Without tokens lw holds the shapes only (w[] NULL); the Linears of
	 * a point arrive with its update. */
	int (*layer_begin)(void *ctx, int layer, qc_layer *lw);
	int (*observe)(void *ctx, int layer, qc_walk_point p, const float *x, int64_t row0,
	               int64_t rows, int64_t cols);
	/* Replace the weights of point p's quantized Linears in lw by their
	 * quantized values (the walker goes on from there) and write them.
	 * Without tokens, only those Linears' w[] are set. */
	int (*update)(void *ctx, int layer, qc_walk_point p, qc_layer *lw);
	int (*layer_end)(void *ctx, int layer, qc_layer *lw);
	/* 1 when the method writes tensor `name` of decoder layer `layer`
	 * itself (beyond the weights of the Linears it quantizes). */
	int (*claims)(void *ctx, int layer, const char *name);
	/* Once when the run ends, whether it succeeded or not (and only if
	 * begin was called), before the kernel context is freed: free what
	 * begin and the hooks made. */
	void (*end)(void *ctx);
} qc_qmethod;

typedef struct qc_qrun_opts {
	const char *model;            /* input: directory, tar file or "-" */
	const char *out;              /* output directory or "-" */
	int force;                    /* replace an existing output directory */
	int resume;                   /* keep and reuse OUT.partial */
	const char *calib;            /* token set, or NULL */
	const char *report;           /* --report FILE, or NULL */
	const char *const *ignore;    /* extra ignore patterns */
	int n_ignore;
	int threads;                  /* 0: every CPU */
	qk_device device;
	uint64_t mem;                 /* --mem budget in bytes, 0: none */
	const char *options;          /* the method's options as one string: a
	                                 resumed run must have the same */
	int argc;                     /* the command line for the manifest */
	char *const *argv;
} qc_qrun_opts;

/* Run method m as o says. 0, or a QC_E* code with the message set; on
 * failure nothing is left at o->out (OUT.partial stays with resume). */
int qc_qrun_run(const qc_qrun_opts *o, const qc_qmethod *m);

/* ---- for the hooks ---- */

const qc_config *qc_qrun_config(const qc_qrun *r);
const qc_qscheme *qc_qrun_scheme(const qc_qrun *r);
qk_ctx *qc_qrun_kernels(qc_qrun *r);
/* The model and the walker: NULL without tokens. */
qc_model *qc_qrun_model(qc_qrun *r);
qc_walk *qc_qrun_walk(qc_qrun *r);
/* Calibration tokens (T), 0 without a token set. */
int64_t qc_qrun_tokens(const qc_qrun *r);
int qc_qrun_threads(const qc_qrun *r);
/* The current layer's quantized Linears (bit l: qc_linear l). */
unsigned qc_qrun_quantized(const qc_qrun *r);
/* Replace the method's restart bits for the rest of the run (from begin:
 * a smoothing that can change v_proj only on some models). */
void qc_qrun_set_restart(qc_qrun *r, unsigned restart);

/* Write quantized Linear l of `layer` (see qc_qout_linear). */
int qc_qrun_write_linear(qc_qrun *r, int layer, qc_linear l, const void *codes,
                         const float *scales, const float *zps, const float *input_scale);
/* Write any other tensor (a claimed one, or one the input lacks). */
int qc_qrun_write_tensor(qc_qrun *r, const char *name, qc_dtype dt, int ndim,
                         const int64_t *shape, const void *data);
/* The same without a copy: data (malloc'd, the shape's byte size) is the
 * writer's from now on, also when the call fails. */
int qc_qrun_give_tensor(qc_qrun *r, const char *name, qc_dtype dt, int ndim,
                        const int64_t *shape, void *data);
/* Add a report line: tool, scheme, group_size, symmetric and n_tokens are
 * the run's (the method's values for them are ignored, except for a dense
 * method, whose lines keep their own scheme, group_size and symmetric);
 * extra is stolen. */
int qc_qrun_report(qc_qrun *r, const qc_report_line *line);

#endif
