/* qc_recipe_tools.c - the step table: every tool a recipe runs, the keys it
 * takes (each its long option without "--"), their types and values, and
 * how llm-compressor's modifiers map onto it (qc_recipe_int.h). A new tool
 * is one entry here, its options and, when it has one, its modifier. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_recipe_int.h"

#define END { NULL, NULL, QC_RT_FLAG, NULL, 0, 0 }

/* the options every quantizing tool shares (tools/tool.h); --calib,
 * --report, --resume, -o, -f, -q are written by the Makefile itself */
static const qc_rt_opt quant_common[] = {
	{ "ignore", "--ignore", QC_RT_LIST, NULL, 0, 0 },
	{ "threads", "--threads", QC_RT_INT, NULL, 1, 1024 },
	{ "mem", "--mem", QC_RT_SIZE, NULL, 0, 0 },
	{ "device", "--device", QC_RT_WORD, "cpu cuda", 0, 0 },
	END
};
/* the same for a tool that quantizes nothing (no --ignore) */
static const qc_rt_opt dense_common[] = {
	{ "threads", "--threads", QC_RT_INT, NULL, 1, 1024 },
	{ "mem", "--mem", QC_RT_SIZE, NULL, 0, 0 },
	{ "device", "--device", QC_RT_WORD, "cpu cuda", 0, 0 },
	END
};

/* ---- qsmooth (man/qsmooth.1) ---- */
static const qc_rt_opt qsmooth_opts[] = {
	{ "alpha", "--alpha", QC_RT_FLOAT, "search", 0, 1 },
	{ "smooth-vo", "--smooth-vo", QC_RT_FLAG, NULL, 0, 0 },
	{ "smooth-ud", "--smooth-ud", QC_RT_FLAG, NULL, 0, 0 },
	{ "sample-tokens", "--sample-tokens", QC_RT_INT, NULL, 1, 1 << 24 },
	{ "no-pow2", "--no-pow2", QC_RT_FLAG, NULL, 0, 0 },
	END
};
static const qc_lc_key sq_keys[] = {
	{ "smoothing_strength", QC_LC_OPT, "alpha", NULL, NULL },
	{ "mappings", QC_LC_SPECIAL, NULL, NULL, NULL },
	{ "ignore", QC_LC_SPECIAL, NULL, NULL, NULL },
	{ NULL, 0, NULL, NULL, NULL },
};
static const qc_lc_mod qsmooth_lc[] = {
	{ "SmoothQuantModifier", 0, NULL, sq_keys, 0 },
	{ NULL, 0, NULL, NULL, 0 },
};

/* ---- qawq (man/qawq.1) ---- */
static const qc_rt_opt qawq_opts[] = {
	{ "scheme", "--scheme", QC_RT_WORD, "w4a16 w8a16", 0, 0 },
	{ "group-size", "--group-size", QC_RT_WORD, "32 64 128 -1", 0, 0 },
	{ "sym", "--sym", QC_RT_FLAG, NULL, 0, 0 },
	{ "asym", "--asym", QC_RT_FLAG, NULL, 0, 0 },
	{ "grid", "--grid", QC_RT_INT, NULL, 1, 1000 },
	{ "duo-scaling", "--duo-scaling", QC_RT_WORD, "on off", 0, 0 },
	{ "no-clip", "--no-clip", QC_RT_FLAG, NULL, 0, 0 },
	{ "then", "--then", QC_RT_WORD, "gptq", 0, 0 },
	{ "scales-only", "--scales-only", QC_RT_FLAG, NULL, 0, 0 },
	{ "pow2", "--pow2", QC_RT_WORD, "on off", 0, 0 },
	{ "loss-tokens", "--loss-tokens", QC_RT_INT, "all", 1, 1099511627776.0 },
	{ "clip-tokens", "--clip-tokens", QC_RT_INT, NULL, 1, 1099511627776.0 },
	END
};
static const qc_lc_key awq_keys[] = {
	{ "duo_scaling", QC_LC_OPT, "duo-scaling", "true=on false=off", NULL },
	{ "n_grid", QC_LC_OPT, "grid", NULL, NULL },
	{ "mappings", QC_LC_SPECIAL, NULL, NULL, NULL },
	{ "offload_device", QC_LC_NOEFFECT, NULL, NULL, "where cached activations live" },
	{ "sequential_targets", QC_LC_NOEFFECT, NULL, NULL, "the walker always goes one decoder layer at a time" },
	{ NULL, 0, NULL, NULL, NULL },
};
static const qc_lc_mod qawq_lc[] = {
	{ "AWQModifier", 1, NULL, awq_keys, 1 },
	{ NULL, 0, NULL, NULL, 0 },
};

/* ---- qgptq (man/qgptq.1) ---- */
static const qc_rt_opt qgptq_opts[] = {
	{ "scheme", "--scheme", QC_RT_WORD, "w4a16 w8a16 w8a8", 0, 0 },
	{ "group-size", "--group-size", QC_RT_WORD, "32 64 128 -1", 0, 0 },
	{ "sym", "--sym", QC_RT_FLAG, NULL, 0, 0 },
	{ "asym", "--asym", QC_RT_FLAG, NULL, 0, 0 },
	{ "act", "--act", QC_RT_WORD, "dynamic static", 0, 0 },
	{ "method", "--method", QC_RT_WORD, "gptq rtn", 0, 0 },
	{ "actorder", "--actorder", QC_RT_WORD, "static none", 0, 0 },
	{ "clip", "--clip", QC_RT_WORD, "mse mse-h minmax", 0, 0 },
	{ "damp", "--damp", QC_RT_FLOAT, NULL, 0, 1 },
	END
};
static const qc_lc_key gptq_keys[] = {
	{ "dampening_frac", QC_LC_OPT, "damp", NULL, NULL },
	/* compressed-tensors' ActivationOrdering: "weight" (alias "static")
	 * keeps the groups' scales in place, which is qgptq's static order;
	 * "group" ("dynamic", or true) needs a g_idx, which no step writes */
	{ "actorder", QC_LC_OPT, "actorder", "weight=static static=static null=none false=none", NULL },
	{ "block_size", QC_LC_ONLY, NULL, "128=", NULL },
	{ "sequential_update", QC_LC_NOEFFECT, NULL, NULL, "quantization is always true-sequential" },
	{ "offload_hessians", QC_LC_NOEFFECT, NULL, NULL, "where Hessians live" },
	{ "sequential_targets", QC_LC_NOEFFECT, NULL, NULL, "the walker always goes one decoder layer at a time" },
	{ NULL, 0, NULL, NULL, NULL },
};
static const qc_lc_mod qgptq_lc[] = {
	{ "GPTQModifier", 1, NULL, gptq_keys, 1 },
	/* QuantizationModifier is round to nearest with the weights' observer */
	{ "QuantizationModifier", 1, "method=rtn", NULL, 1 },
	{ NULL, 0, NULL, NULL, 0 },
};

/* ---- qfp8 (man/qfp8.1) ---- */
static const qc_rt_opt qfp8_opts[] = {
	{ "per-tensor", "--per-tensor", QC_RT_FLAG, NULL, 0, 0 },
	{ "shared-scale", "--shared-scale", QC_RT_FLAG, NULL, 0, 0 },
	{ "act", "--act", QC_RT_WORD, "dynamic static", 0, 0 },
	{ "kv-cache", "--kv-cache", QC_RT_FLAG, NULL, 0, 0 },
	END
};
static const qc_lc_mod qfp8_lc[] = {
	{ "QuantizationModifier", 2, NULL, NULL, 1 },
	{ NULL, 0, NULL, NULL, 0 },
};

/* ---- what is not a step: the model, token sets, packing, verification ---- */
static const qc_rt_opt qsynth_opts[] = {
	{ "preset", "--preset", QC_RT_WORD, "tiny llama-3.2-1b llama-3.1-8b llama-3.1-70b llama-3.1-405b", 0, 0 },
	{ "layers", "--layers", QC_RT_INT, NULL, 1, 1000 },
	{ "hidden", "--hidden", QC_RT_INT, NULL, 1, 1 << 20 },
	{ "intermediate", "--intermediate", QC_RT_INT, NULL, 1, 1 << 22 },
	{ "heads", "--heads", QC_RT_INT, NULL, 1, 4096 },
	{ "kv-heads", "--kv-heads", QC_RT_INT, NULL, 1, 4096 },
	{ "head-dim", "--head-dim", QC_RT_INT, NULL, 1, 4096 },
	{ "vocab", "--vocab", QC_RT_INT, NULL, 1, 1 << 24 },
	{ "tie", "--tie", QC_RT_FLAG, NULL, 0, 0 },
	{ "no-tie", "--no-tie", QC_RT_FLAG, NULL, 0, 0 },
	{ "rope-scaling", "--rope-scaling", QC_RT_WORD, "llama3 none", 0, 0 },
	{ "dtype", "--dtype", QC_RT_WORD, "bf16 f16 f32", 0, 0 },
	{ "seed", "--seed", QC_RT_INT, NULL, 0, 1.8e19 },
	{ "outliers", "--outliers", QC_RT_INT, NULL, 0, 1 << 20 },
	{ "outlier-range", "--outlier-range", QC_RT_TEXT, NULL, 0, 0 },
	{ "tokenizer", "--tokenizer", QC_RT_TEXT, NULL, 0, 0 },
	{ "threads", "--threads", QC_RT_INT, NULL, 1, 1024 },
	END
};
static const qc_rt_opt qcalib_opts[] = {
	{ "rows", "-n", QC_RT_INT, NULL, 1, 1 << 30 },
	{ "len", "-L", QC_RT_INT, NULL, 1, 1 << 30 },
	{ "seed", "--seed", QC_RT_INT, NULL, 0, 1.8e19 },
	{ "mode", "--mode", QC_RT_WORD, "pack pad", 0, 0 },
	{ "split", "--split", QC_RT_WORD, "lines docs none", 0, 0 },
	{ "field", "--field", QC_RT_TEXT, NULL, 0, 0 },
	{ "template", "--template", QC_RT_TEXT, NULL, 0, 0 },
	{ "strict", "--strict", QC_RT_FLAG, NULL, 0, 0 },
	{ "tokenizer", "--tokenizer", QC_RT_TEXT, NULL, 0, 0 },
	END
};
static const qc_rt_opt qpack_opts[] = {
	{ "max-shard-size", "--max-shard-size", QC_RT_SIZE, NULL, 0, 0 },
	{ "threads", "--threads", QC_RT_INT, NULL, 1, 1024 },
	END
};
static const qc_rt_opt qverify_opts[] = {
	{ "max-ppl-ratio", "--max-ppl-ratio", QC_RT_FLOAT, NULL, 0, 1e9 },
	{ "max-kl", "--max-kl", QC_RT_FLOAT, NULL, 0, 1e9 },
	{ "min-top1", "--min-top1", QC_RT_FLOAT, NULL, 0, 1 },
	{ "act-dtype", "--act-dtype", QC_RT_WORD, "f32 bf16", 0, 0 },
	{ "threads", "-j", QC_RT_INT, NULL, 1, 1024 },
	{ "device", "--device", QC_RT_WORD, "cpu cuda", 0, 0 },
	END
};

const qc_rt_tool qc_recipe__tools[] = {
	/* steps, in the order they may follow one another; --mem changes how
	 * activations are held, never the output (design.md 7) */
	{ "qsmooth", QC_RT_STEP_DENSE, qsmooth_opts, dense_common, QC_RT_CALIB_ALWAYS, "*",
	  NULL, "-f", 1, NULL, "mem", qsmooth_lc },
	{ "qawq", QC_RT_STEP_QUANT, qawq_opts, quant_common, QC_RT_CALIB_ALWAYS, "*",
	  "scales-only", "-f", 1, NULL, "mem", qawq_lc },
	{ "qgptq", QC_RT_STEP_QUANT, qgptq_opts, quant_common, QC_RT_CALIB_DEFAULT, "!method=rtn",
	  NULL, "-f", 1, NULL, "mem", qgptq_lc },
	{ "qfp8", QC_RT_STEP_QUANT, qfp8_opts, quant_common, QC_RT_CALIB_OPTIONAL, "act=static kv-cache",
	  NULL, "-f", 1, "kv-cache", "mem", qfp8_lc },
	/* the rest of the pipeline; qsynth's and qpack's output does not depend
	 * on their threads */
	{ "qsynth", QC_RT_MODEL, qsynth_opts, NULL, QC_RT_CALIB_NONE, NULL, NULL, "-f", 0, NULL, "threads", NULL },
	{ "qcalib", QC_RT_TOKENS, qcalib_opts, NULL, QC_RT_CALIB_NONE, NULL, NULL, NULL, 0, NULL, NULL, NULL },
	{ "qpack", QC_RT_PACK, qpack_opts, NULL, QC_RT_CALIB_NONE, NULL, NULL, "--force", 0, NULL, "threads", NULL },
	{ "qverify", QC_RT_VERIFY, qverify_opts, NULL, QC_RT_CALIB_NONE, NULL, NULL, NULL, 0, NULL, NULL, NULL },
	{ NULL, 0, NULL, NULL, 0, NULL, NULL, NULL, 0, NULL, NULL, NULL },
};

const qc_rt_tool *qc_recipe__tool(const char *name)
{
	for (const qc_rt_tool *t = qc_recipe__tools; t->name; t++)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

const qc_rt_opt *qc_recipe__opt(const qc_rt_tool *t, const char *key)
{
	for (const qc_rt_opt *o = t->opts; o && o->key; o++)
		if (strcmp(o->key, key) == 0)
			return o;
	for (const qc_rt_opt *o = t->common; o && o->key; o++)
		if (strcmp(o->key, key) == 0)
			return o;
	return NULL;
}

int qc_recipe__word_in(const char *word, const char *words)
{
	size_t n = strlen(word);
	for (const char *p = words; p && *p;) {
		const char *e = strchr(p, ' ');
		size_t k = e ? (size_t)(e - p) : strlen(p);
		if (k == n && memcmp(p, word, n) == 0)
			return 1;
		p = e ? e + 1 : p + k;
	}
	return 0;
}

const char *qc_recipe_step_tools(void)
{
	return "qsmooth qawq qgptq qfp8";
}

char *qc_recipe_tool_keys(const char *tool)
{
	const qc_rt_tool *t = qc_recipe__tool(tool);
	if (!t)
		return NULL;
	size_t n = 1;
	for (int pass = 0; pass < 2; pass++)
		for (const qc_rt_opt *o = pass ? t->common : t->opts; o && o->key; o++)
			n += strlen(o->key) + 1;
	n += sizeof " calib";
	char *s = malloc(n), *p = s;
	if (!s)
		return NULL;
	*p = 0;
	for (int pass = 0; pass < 2; pass++)
		for (const qc_rt_opt *o = pass ? t->common : t->opts; o && o->key; o++)
			p += sprintf(p, "%s%s", p == s ? "" : " ", o->key);
	if (t->calib != QC_RT_CALIB_NONE)
		sprintf(p, "%scalib", p == s ? "" : " ");
	return s;
}
