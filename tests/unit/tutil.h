/*
 * tutil.h - shared helpers for the cmocka unit tests.
 *
 * Include this instead of cmocka.h: it pulls in the headers cmocka needs in
 * the order it needs them. Fixture files go under a per-process temporary
 * directory (tu_tmpdir) removed at exit.
 */
#ifndef TUTIL_H
#define TUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* A fresh directory for this test binary, removed at exit. */
const char *tu_tmpdir(void);
/* malloc'd "<tmpdir>/<name>" */
char *tu_path(const char *name);
/* Write len bytes to path (aborts the test on failure). */
void tu_write(const char *path, const void *data, size_t len);
/* Read a whole file (malloc'd); aborts the test on failure. */
void *tu_read(const char *path, size_t *len);
/* Directory of the external conformance vectors ($QC_SHARED_DATA, set by
 * make check from QC_TEST_VECTORS), or NULL if unset or absent. */
const char *tu_shared_data(void);

/* A qsynth checkpoint of cfg (built with qc_config_build) in directory dir,
 * n_shards shards, weights from seed. */
struct qc_config;
void tu_write_synth(const char *dir, struct qc_config *cfg, uint64_t seed, int n_shards);
/* A token set file of n rows of length l: row r holds lens[r] ids from
 * ids[r * l], the rest padded with 0. */
void tu_write_tokens(const char *path, const int32_t *ids, const int32_t *lens, int n, int l,
                     int vocab);

/* Assert that rc is the expected QC_E* code, printing qc_errmsg() otherwise. */
#define tu_assert_rc(rc, expect) tu_assert_rc_((rc), (expect), #rc, __FILE__, __LINE__)
void tu_assert_rc_(int rc, int expect, const char *expr, const char *file, int line);

#endif
