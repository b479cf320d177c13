/*
 * qc_err.h - error codes and the one message function of libcommon.
 *
 * Every libcommon function that can fail returns an int: 0 (QC_OK) on success
 * or a negative QC_E* code. The code says what kind of failure it was (and so
 * which exit status a tool maps it to); the detail, a complete one-line
 * message such as "cannot open 'x.safetensors': No such file or directory",
 * is kept per thread and read with qc_errmsg() right after the failing call.
 *
 * The library never prints and never exits. Tools print
 *     fprintf(stderr, "%s: %s\n", prog, qc_errmsg());
 * and exit with qc_exit_status(code).
 *
 * Messages follow one style: lower case, no full stop, the failing action
 * first, the subject quoted ('name').
 */
#ifndef QC_ERR_H
#define QC_ERR_H

#include <stdarg.h>

enum {
	QC_OK          = 0,
	QC_EINVAL      = -1,  /* bad argument or usage (caller's fault)           */
	QC_ENOMEM      = -2,  /* allocation failed                                */
	QC_EIO         = -3,  /* read/write/open/mmap failed (errno in message)   */
	QC_EFORMAT     = -4,  /* input is malformed: truncated, header lies, ...  */
	QC_EUNSUPPORTED = -5, /* valid input we do not handle (architecture, ...) */
	QC_EINTEGRITY  = -6,  /* hash or consistency check failed                 */
	QC_ENOTFOUND   = -7,  /* a named tensor, file or key is absent            */
	QC_ENUMERIC    = -8,  /* NaN/Inf or a factorization that cannot succeed  */
	QC_EDEVICE     = -9,  /* accelerator error (CUDA)                         */
	QC_EINTERNAL   = -10, /* broken invariant inside the library (a bug)      */
};

/* Generic text for a code ("malformed input"); never NULL. */
const char *qc_strerror(int code);

/* The detailed message of the last error set on this thread. Valid until the
 * next failing libcommon call on the same thread. "" when none was set. */
const char *qc_errmsg(void);

/* Set the thread's message (printf format) and return code, so that a
 * failure is one line:  return qc_seterr(QC_EFORMAT, "bad header in '%s'", p);
 * A trailing ':' in fmt appends ": strerror(errno)" (errno read on entry). */
int qc_seterr(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int qc_vseterr(int code, const char *fmt, va_list ap);

/* Prefix the current message with more context: "reading 'a': <old msg>".
 * Returns code unchanged, for  return qc_errctx(rc, "reading '%s'", p); */
int qc_errctx(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Exit status a tool should use for a code: 0 for QC_OK, 1 for
 * QC_EINTEGRITY (a check that ran and failed), 2 for everything else
 * (usage, input or environment problems), following doc/design.md 6.3. */
int qc_exit_status(int code);

/* Propagate: evaluate expr once; on a negative result return it. */
#define QC_TRY(expr) do { int qc_try_rc_ = (expr); if (qc_try_rc_ < 0) return qc_try_rc_; } while (0)

/* Broken invariant (a bug, not bad input): print file:line and abort. */
#define QC_ASSERT(c) do { if (!(c)) qc_assert_fail(#c, __FILE__, __LINE__); } while (0)
void qc_assert_fail(const char *what, const char *file, int line) __attribute__((__noreturn__));

#endif
