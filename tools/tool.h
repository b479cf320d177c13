/*
 * tool.h - what every tool main shares: diagnostics in one format, usage
 * errors, --version, number parsing. Linked into the tools only (not
 * libcommon): these functions may print and exit, the library never does.
 *
 * Exit statuses (DESIGN 6): 0 success, 1 a check ran and failed, 2 usage or
 * input error. Usage errors print "prog: message" and "usage: ..." to stderr.
 */
#ifndef QC_TOOL_H
#define QC_TOOL_H

#include <stdint.h>
#include <stdnoreturn.h>

#include "qc_err.h"
#include "qc_log.h"

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

#endif
