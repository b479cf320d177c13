/*
 * qc_corpus.h - the bundled public-domain text (calib/public-domain.txt),
 * compiled into libcommon so that tools need no data files at run time:
 * qsynth trains its synthetic model's tokenizer on it. See calib/README.md
 * for what the text is. NUL-terminated; qc_builtin_corpus_len excludes the
 * terminator.
 */
#ifndef QC_CORPUS_H
#define QC_CORPUS_H

#include <stddef.h>

extern const char qc_builtin_corpus[];
extern const size_t qc_builtin_corpus_len;

#endif
