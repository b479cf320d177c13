/*
 * qc_unorm.h - the Unicode normalizers of tokenizer.json (NFC, NFD, NFKC,
 * NFKD, Lowercase, StripAccents) on byte strings, with utf8proc's tables.
 *
 * Text is bytes that may hold invalid UTF-8 (qc_tok.h): each maximal run of
 * valid UTF-8 is normalized on its own and every byte that is not part of a
 * valid character is copied through unchanged, so nothing composes across
 * an invalid byte. On valid UTF-8 the result is the Unicode normal form
 * (utf8proc_map with UTF8PROC_STABLE and COMPOSE / DECOMPOSE / COMPAT).
 *
 * Lowercase follows Rust's char::to_lowercase, which the tokenizers library
 * applies character by character: the simple lowercase mapping of
 * UnicodeData.txt, plus the one unconditional multi-character mapping of
 * SpecialCasing.txt (U+0130 -> U+0069 U+0307); no context rules (a final
 * sigma stays U+03C3).
 *
 * StripAccents removes every character of General_Category Mark (Mn, Mc,
 * Me), as tokenizers' filter with is_combining_mark does; it decomposes
 * nothing itself (tokenizer files put NFD or NFKD before it).
 *
 * The Unicode version is utf8proc's (15.0 for utf8proc 2.8); characters
 * assigned after it are passed through.
 *
 * Thread-safe; the output is malloc'd by the callee and owned by the caller.
 */
#ifndef QC_UNORM_H
#define QC_UNORM_H

#include <stddef.h>

typedef enum {
	QC_UNORM_NFC = 1,
	QC_UNORM_NFD,
	QC_UNORM_NFKC,
	QC_UNORM_NFKD,
	QC_UNORM_LOWER,
	QC_UNORM_STRIP_MARKS,
} qc_unorm_form;

/* *out = form applied to s[0..n), NUL-terminated, length in *outlen.
 * QC_ENOMEM, or QC_EINVAL for an unknown form. */
int qc_unorm(qc_unorm_form form, const char *s, size_t n, char **out, size_t *outlen);

/* The plain reference qc_unorm is tested against: each valid run through
 * utf8proc whole (qc_unorm copies ASCII stretches and maps only the rest;
 * see qc_unorm.c). Same contract and output. */
int qc_unorm_ref(qc_unorm_form form, const char *s, size_t n, char **out, size_t *outlen);

#endif
