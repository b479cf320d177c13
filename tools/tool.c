/* tool.c - shared tool helpers (see tool.h). */
#include "tool.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef QC_VERSION
#define QC_VERSION "0"
#endif

static const char *prog = "q";
static int g_argc;
static char **g_argv;

void tool_init(int argc, char **argv)
{
	g_argc = argc;
	g_argv = argv;
	if (argc > 0 && argv[0]) {
		const char *s = strrchr(argv[0], '/');
		prog = s ? s + 1 : argv[0];
	}
	qc_log_init(prog, QC_LOG_INFO);
	opterr = 0; /* tool_bad_option says it once, in our format */
}

const char *tool_prog(void) { return prog; }
int tool_argc(void) { return g_argc; }
char *const *tool_argv(void) { return g_argv; }

char *const *tool_manifest_argv(void)
{
	static char **clean;
	if (clean)
		return clean;
	clean = calloc((size_t)g_argc + 1, sizeof *clean);
	if (!clean)
		return g_argv;
	for (int i = 0; i < g_argc; i++) {
		const char *a = g_argv[i];
		if (i == 0)
			a = prog;
		else if (strcmp(g_argv[i - 1], "-o") == 0 || strcmp(g_argv[i - 1], "--output") == 0)
			a = "OUT";
		else if (strncmp(a, "--output=", 9) == 0)
			a = "--output=OUT";
		else if (strncmp(a, "-o", 2) == 0 && a[2] && a[1] != '-')
			a = "-oOUT";
		clean[i] = (char *)a;
	}
	return clean;
}

void tool_err(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int tool_fail(int rc)
{
	const char *m = qc_errmsg();
	fprintf(stderr, "%s: %s\n", prog, m && *m ? m : qc_strerror(rc));
	return qc_exit_status(rc);
}

noreturn void tool_usage_error(const char *usage, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: %s\nTry '%s --help' for more information.\n", usage, prog);
	exit(2);
}

noreturn void tool_bad_option(const char *usage, char *const *argv)
{
	const char *a = optind > 0 ? argv[optind - 1] : "?";
	if (optopt && a[0] == '-' && a[1] != '-')
		tool_usage_error(usage, "unknown option '-%c', or it is missing its value", optopt);
	tool_usage_error(usage, "unknown option '%s', or it is missing its value", a);
}

noreturn void tool_version(void)
{
	printf("%s (qtoolkit) %s\n", prog, QC_VERSION);
	exit(tool_close_stdout());
}

int64_t tool_parse_i64(const char *usage, const char *opt, const char *arg, int64_t min, int64_t max)
{
	char *end;
	errno = 0;
	long long v = strtoll(arg, &end, 10);
	if (errno || end == arg || *end)
		tool_usage_error(usage, "invalid number '%s' for %s", arg, opt);
	if (v < min || v > max)
		tool_usage_error(usage, "%s must be between %lld and %lld, not %lld", opt,
		                 (long long)min, (long long)max, v);
	return v;
}

double tool_parse_double(const char *usage, const char *opt, const char *arg, double min, double max)
{
	char *end;
	errno = 0;
	double v = strtod(arg, &end);
	if (errno || end == arg || *end || !isfinite(v))
		tool_usage_error(usage, "invalid number '%s' for %s", arg, opt);
	if (v < min || v > max)
		tool_usage_error(usage, "%s must be between %g and %g, not %g", opt, min, max, v);
	return v;
}

uint64_t tool_parse_size(const char *usage, const char *opt, const char *arg)
{
	char *end;
	errno = 0;
	double v = strtod(arg, &end);
	if (errno || end == arg || !isfinite(v) || v < 0)
		tool_usage_error(usage, "invalid size '%s' for %s", arg, opt);
	static const struct { const char *suf; double mul; } units[] = {
		{ "", 1 }, { "B", 1 }, { "K", 1e3 }, { "KB", 1e3 }, { "KiB", 1024.0 },
		{ "M", 1e6 }, { "MB", 1e6 }, { "MiB", 1048576.0 }, { "G", 1e9 }, { "GB", 1e9 },
		{ "GiB", 1073741824.0 }, { "T", 1e12 }, { "TB", 1e12 }, { "TiB", 1099511627776.0 },
	};
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
		if (strcasecmp(end, units[i].suf) == 0) {
			double b = v * units[i].mul;
			if (b > 1.8e19)
				break;
			return (uint64_t)b;
		}
	tool_usage_error(usage, "invalid size '%s' for %s (use e.g. 5GB, 500MB, 4096)", arg, opt);
}

int tool_close_stdout(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "%s: write error on <stdout>: %s\n", prog, strerror(errno));
		return 2;
	}
	return 0;
}
