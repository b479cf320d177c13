/*
 * qc_cleanup.h - what a run must not leave behind if a signal ends it.
 *
 * The writers build their outputs under temporary names (qc_io.h: the
 * ".<base>.tmp-XXXXXX" files of qc_atomic_open; qc_ckpt.h: "<out>.partial/";
 * spill directories of qc_mkdtemp) and remove them themselves on every
 * error path. A signal that ends the process (SIGINT, SIGTERM, SIGHUP)
 * skips those paths, so each temporary is also recorded here while it
 * exists, and a tool's signal handler calls qc_cleanup_run() before the
 * process dies. An OUT.partial kept for --resume is not recorded.
 *
 * qc_cleanup_add and qc_cleanup_remove are thread-safe (a mutex). The
 * table holds QC_CLEANUP_MAX paths of up to QC_CLEANUP_PATH bytes; a path
 * that does not fit is not recorded (the writer still removes it on its own
 * error paths, so nothing changes but the signal case). qc_cleanup_run is
 * async-signal-safe: system calls only (openat, getdents64, unlinkat), no
 * allocation, symbolic links never followed, and it does not wait for the
 * mutex (a path being added at that instant may be missed).
 */
#ifndef QC_CLEANUP_H
#define QC_CLEANUP_H

#define QC_CLEANUP_MAX 64
#define QC_CLEANUP_PATH 1024

/* Record path (a file, or a directory tree we created). Recording the same
 * path twice records it once. */
void qc_cleanup_add(const char *path);
/* Forget path (it was renamed into place or removed). Unknown paths are
 * ignored. */
void qc_cleanup_remove(const char *path);
/* Remove every recorded path, deepest first for directories; from a signal
 * handler. Recorded paths stay recorded. */
void qc_cleanup_run(void);

#endif
