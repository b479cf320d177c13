/*
 * qc_recipe.h - recipes: how one model is quantized, in YAML, turned into a
 * Makefile whose targets are the files each step writes (man/qrecipe.5 is
 * the format's manual, man/qrecipe.1 the tool's).
 *
 * A recipe names a model (a directory, or a qsynth shape), token sets (built
 * by qcalib from text or random ids, or existing files), and variants: each
 * a chain of steps (qsmooth, qawq, qgptq, qfp8 with their options as keys),
 * the release formats (qpack) and the release gates (qverify thresholds).
 * An llm-compressor recipe (quant_stage: quant_modifiers: {...}) is accepted
 * as it is and mapped onto the same steps.
 *
 * Steps are data: one table (qc_recipe_tools.c) says for each tool the
 * recipe keys it accepts (each key is the tool's long option without "--"),
 * their types and values, whether it reads a calibration set, what it
 * writes, and which llm-compressor modifiers map onto it. A new tool is an
 * entry in that table.
 *
 * Variables. A recipe declares variables with defaults under `vars`; the
 * caller overrides them ("NAME=value"). Every scalar value may hold
 * ${NAME}; a value that consists of variables expanding to nothing leaves
 * its key out, as if absent. Two are built in: ${RECIPE_DIR}, the
 * directory of the recipe file as it was named, and ${GATES}, "on" by
 * default; GATES=off drops every threshold (qverify measures, nothing is
 * gated, the card says so), for trial runs such as a synthetic model of the
 * recipe's shape.
 *
 * Errors. Every failure is QC_EFORMAT (or QC_EIO for an unreadable file,
 * QC_EINVAL for a bad override) with one line of message that starts with
 * "file:line:column: " where the recipe has a position for it: a YAML
 * syntax error, an unknown key, a value of the wrong type or out of range,
 * an llm-compressor key or value that has no equivalent (named). Nothing is
 * printed.
 *
 * The Makefile (qc_recipe_makefile). Targets are paths relative to the
 * directory make runs in: the model (work/model, when synthesized), token
 * sets (work/NAME.st), each kept step's output (work/VARIANT/K-TOOL), the
 * packed artifacts (work/VARIANT/FORMAT), the verification reports
 * (work/VARIANT/verify-FORMAT.json) and the release bundles
 * (release/VARIANT); each variant is also a phony target. Every target is
 * made by one command line, printed as make runs it, that a user can run by
 * hand. The tools write atomically, so a target that exists is complete; a
 * rerun after an interruption or a failure makes what is missing, and what
 * is older than its inputs or whose command changed (a hash of each
 * target's command is kept in .qrecipe/TARGET.cmd and rewritten only when
 * it changes). Steps marked `pipe` stream their checkpoint into the next
 * command instead of writing it.
 *
 * The release (qc_recipe_release). Each variant's bundle release/VARIANT/
 * holds one directory per format (the packed artifact as qpack wrote it,
 * with its quant_manifest.json, hard-linked), quant_report.jsonl (the
 * per-Linear report), verify-FORMAT.json (the qverify reports) and
 * quant_card.md (the recipe, the variables, the commands and the gate
 * results). A failed gate leaves the artifacts out: the reports and the card
 * go to release/VARIANT.failed/ instead and the call returns QC_EINTEGRITY.
 *
 * Thread safety: a qc_recipe is used by one thread at a time; distinct ones
 * may be used at once.
 */
#ifndef QC_RECIPE_H
#define QC_RECIPE_H

#include <stddef.h>

#include "qc_io.h"

typedef struct qc_recipe qc_recipe;

typedef enum qc_recipe_kind {
	QC_RECIPE_NATIVE = 0,   /* this toolkit's format (man/qrecipe.5) */
	QC_RECIPE_LLMC = 1,     /* an llm-compressor recipe (*_stage: *_modifiers:) */
} qc_recipe_kind;

/* Read the recipe at path, expand its variables with the overrides
 * set[0..n_set) ("NAME=value", each NAME declared by the recipe), and
 * validate everything. *out is freed with qc_recipe_free. The strings of
 * path and set are copied. */
int qc_recipe_load(qc_recipe **out, const char *path, int n_set, char *const *set);
/* The same from text in memory; name is the file name messages give and
 * the recipe's path in the Makefile and the card (its directory is
 * ${RECIPE_DIR}). */
int qc_recipe_parse(qc_recipe **out, const char *name, const char *text, size_t len,
                    int n_set, char *const *set);
void qc_recipe_free(qc_recipe *r);              /* NULL is a no-op */

qc_recipe_kind qc_recipe_kind_of(const qc_recipe *r);
/* Variants in the order the recipe gives them. */
int qc_recipe_n_variants(const qc_recipe *r);
const char *qc_recipe_variant(const qc_recipe *r, int i);
/* The index of the variant called name, or -1. */
int qc_recipe_find_variant(const qc_recipe *r, const char *name);
/* The recipe's `jobs` (how many steps may run at once), 0 when not given. */
int qc_recipe_jobs(const qc_recipe *r);
/* The tools variant i runs, in order, without repeats, separated by
 * spaces ("qsynth qcalib qgptq qpack qverify qrecipe"). Owned by r. */
const char *qc_recipe_variant_tools(const qc_recipe *r, int i);
/* The release directory of variant i ("release/NAME"); owned by r. */
const char *qc_recipe_release_dir(const qc_recipe *r, int i);

/* Write the Makefile to out. 0 or the sink's error. */
int qc_recipe_makefile(const qc_recipe *r, qc_sink *out);

/* Write the command lines variant i runs, in the order make may run them,
 * one per line: what the Makefile runs for it (without make's quoting of
 * '$'). 0 or the sink's error. */
int qc_recipe_commands(const qc_recipe *r, int i, qc_sink *out);

/* Assemble variant i's release bundle (see above) in the current directory
 * from what its Makefile rules made. 0; QC_EINTEGRITY when a gate or an
 * integrity check failed (the message names the first failure and where the
 * card went); QC_ENOTFOUND when an artifact or report is missing; QC_EIO,
 * QC_EFORMAT otherwise. The bundle is built in RELEASE.partial and renamed
 * into place, replacing an older one. */
int qc_recipe_release(qc_recipe *r, int i);

/* ---- the step table, for tests and documentation ---- */

/* The names of the tools a recipe can run as steps, in table order,
 * separated by spaces ("qsmooth qawq qgptq qfp8"). Static. */
const char *qc_recipe_step_tools(void);
/* The recipe keys tool accepts, in table order, separated by spaces, in a
 * malloc'd string; NULL for a tool not in the table (or out of memory). */
char *qc_recipe_tool_keys(const char *tool);

#endif
