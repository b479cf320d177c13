/*
 * tool.h - what every tool main shares: diagnostics in one format, usage
 * errors, --version, number parsing. Linked into the tools only (not
 * libcommon): these functions may print and exit, the library never does.
 *
 * Exit statuses (doc/design.md 6.3): 0 success, 1 a check ran and failed, 2 usage or
 * input error. Usage errors print "prog: message" and "usage: ..." to stderr.
 */
#ifndef QC_TOOL_H
#define QC_TOOL_H

#include <stdint.h>
#include <stdnoreturn.h>

#include "kernels.h"
#include "qc_err.h"
#include "qc_log.h"
#include "qc_qrun.h"

/* Set the program name (basename of argv[0]) for messages. */
void tool_init(int argc, char **argv);
const char *tool_prog(void);
/* The command line as given (for manifests). */
int tool_argc(void);
char *const *tool_argv(void);

/* The command line as the manifest records it: argv[0] reduced to the tool's
 * name and the output path (the argument of -o/--output, also in the forms
 * -oPATH and --output=PATH) written as "OUT", so that the same options give
 * the same bytes wherever the tool is installed and whatever the output is
 * called. Valid for the life of the process. */
char *const *tool_manifest_argv(void);

/* Print "prog: <qc_errmsg() or generic text>" and return the exit status for rc. */
int tool_fail(int rc);
/* Print "prog: fmt..." to stderr. */
void tool_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "prog: fmt...", then "usage: <usage>" and "Try 'prog --help'.", exit 2. */
noreturn void tool_usage_error(const char *usage, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* After getopt_long returned '?' or ':': name the argument it stopped at
 * ("unknown option '--x', or it is missing its value") and exit 2. getopt's
 * own messages are off (tool_init sets opterr to 0), so this is the one line. */
noreturn void tool_bad_option(const char *usage, char *const *argv);

/* Print "prog (qtoolkit) VERSION" to stdout and exit 0. */
noreturn void tool_version(void);

/* Parse numbers for option opt; out of range or trailing junk is a usage error. */
int64_t tool_parse_i64(const char *usage, const char *opt, const char *arg, int64_t min, int64_t max);
double tool_parse_double(const char *usage, const char *opt, const char *arg, double min, double max);
/* Sizes: "5GB", "500MB", "1.5GiB", "4096" (bytes). GB = 1e9 as HF means it. */
uint64_t tool_parse_size(const char *usage, const char *opt, const char *arg);

/* Flush stdout and report a failed write (e.g. disk full, closed pipe): returns
 * 0 or prints "prog: write error on <stdout>: ..." and returns 2. */
int tool_close_stdout(void);

/* ---- the options every quantizing tool shares (qgptq, qfp8, ...) ---- */

enum {
	TOOL_OPT_CALIB = 0x1000, TOOL_OPT_REPORT, TOOL_OPT_IGNORE, TOOL_OPT_THREADS,
	TOOL_OPT_RESUME, TOOL_OPT_MEM, TOOL_OPT_DEVICE,
};

/* getopt_long's short options and the long ones, to put at the end of a
 * tool's own struct option array (before its terminator). */
#define TOOL_QOPTS_SHORT "o:fqvhV"
#define TOOL_QOPTS_LONG \
	{ "calib", required_argument, NULL, TOOL_OPT_CALIB }, \
	{ "report", required_argument, NULL, TOOL_OPT_REPORT }, \
	{ "ignore", required_argument, NULL, TOOL_OPT_IGNORE }, \
	{ "threads", required_argument, NULL, TOOL_OPT_THREADS }, \
	{ "resume", no_argument, NULL, TOOL_OPT_RESUME }, \
	{ "mem", required_argument, NULL, TOOL_OPT_MEM }, \
	{ "device", required_argument, NULL, TOOL_OPT_DEVICE }, \
	{ "output", required_argument, NULL, 'o' }, \
	{ "force", no_argument, NULL, 'f' }, \
	{ "quiet", no_argument, NULL, 'q' }, \
	{ "verbose", no_argument, NULL, 'v' }, \
	{ "help", no_argument, NULL, 'h' }, \
	{ "version", no_argument, NULL, 'V' }

#define TOOL_MAX_IGNORE 64

typedef struct tool_qopts {
	const char *model;          /* the MODEL operand (tool_qopts_finish) */
	const char *out, *calib, *report;
	const char *ignore[TOOL_MAX_IGNORE];
	int n_ignore;
	int threads;                /* 0: every CPU */
	int resume, force;
	uint64_t mem;               /* 0: no budget */
	qk_device device;
} tool_qopts;

/* Handle c, a value getopt_long returned, when it is a common option (or an
 * unknown one: tool_bad_option). Returns 1 when handled, 0 when c is the
 * tool's own. help is the tool's --help (it exits). */
int tool_qopt(tool_qopts *q, int c, const char *arg, const char *usage, void (*help)(void),
              char *const *argv);
/* After the option loop: exactly one MODEL operand, an output, and
 * --resume only with a directory output; usage errors otherwise. */
void tool_qopts_finish(tool_qopts *q, const char *usage, int argc, char *const *argv);
/* The help lines of the common options (after the tool's own); without
 * --ignore for a tool that quantizes nothing. */
void tool_qopts_help(int with_ignore);
/* The driver's options from the common ones, the tool's options as one
 * string (what a resumed run must share) and the manifest's command line. */
void tool_qrun_opts(const tool_qopts *q, const char *options, qc_qrun_opts *o);
/* Run method m with q, map the result to an exit status (0, or the error's
 * message and status), closing stdout when the output went there. */
int tool_qrun(const tool_qopts *q, const char *options, const qc_qmethod *m);

#endif
