/*
 * qc_log.h - diagnostics on stderr for the tools: levels and a progress line.
 *
 * This is the one libcommon module that writes (to stderr only, never
 * stdout). Library modules do not call it; they return errors and report
 * progress through callbacks, and the tools decide what to show.
 *
 * Levels follow zstd's display levels: 0 quiet (-q), 1 errors, 2 warnings and
 * one line per major step (the default), 3 details (-v), 4 debug (-vv).
 * Messages are printed as "prog: message".
 */
#ifndef QC_LOG_H
#define QC_LOG_H

#include <stdint.h>

enum { QC_LOG_QUIET = 0, QC_LOG_ERROR = 1, QC_LOG_INFO = 2, QC_LOG_DETAIL = 3, QC_LOG_DEBUG = 4 };

/* Program name for the prefix and the starting level (default QC_LOG_INFO). */
void qc_log_init(const char *prog, int level);
void qc_log_set_level(int level);
int qc_log_level(void);
const char *qc_log_prog(void);

/* Print "prog: fmt..." and a newline to stderr when level <= current level. */
void qc_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Progress over a loop of `total` steps (layers, files). On a terminal it
 * redraws one line at most 10 times a second ("label 12/32  3.1 GB/s  ETA
 * 0:42"); otherwise it prints one line per finished step, so logs stay
 * readable. Silent below QC_LOG_INFO. Not thread-safe: update from one thread.
 */
typedef struct qc_progress {
	char label[64];
	int64_t total, done;
	double t_start, t_last_draw;
	int tty;        /* stderr is a terminal */
	int drawn;      /* a partial line is on screen */
} qc_progress;

void qc_progress_begin(qc_progress *p, const char *label, int64_t total);
/* done steps so far; note is a short extra text ("layer 3", "1.2 GB/s") or NULL */
void qc_progress_update(qc_progress *p, int64_t done, const char *note);
void qc_progress_end(qc_progress *p);

/* Monotonic wall clock in seconds. */
double qc_now(void);

#endif
