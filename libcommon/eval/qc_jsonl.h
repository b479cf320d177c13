/*
 * qc_jsonl.h - JSON Lines files as qverify's task, prompt and answer files
 * use them: one JSON object a line, blank lines skipped, errors naming
 * "file:line".
 */
#ifndef QC_JSONL_H
#define QC_JSONL_H

#include <jansson.h>
#include <stdint.h>

/* Called for each non-blank line with its object (borrowed for the call)
 * and 1-based line number; a non-zero return stops the walk and is
 * returned. */
typedef int (*qc_jsonl_fn)(void *ctx, json_t *obj, int64_t line);

/*
 * Read path (at most 1 GiB) and call fn for each object. QC_EIO when it
 * cannot be read; QC_EFORMAT "path:line: ..." for a line that is not a JSON
 * object (duplicate keys refused); QC_EFORMAT "path: no lines" when no line
 * holds anything.
 */
int qc_jsonl_each(const char *path, qc_jsonl_fn fn, void *ctx);

/* The file's base name without ".jsonl" or ".json", malloc'd (NULL on out
 * of memory): the name a task is reported under. */
char *qc_jsonl_name(const char *path);

#endif
