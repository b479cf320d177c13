/* tool.c - shared tool helpers (see tool.h). */
#include "tool.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_cleanup.h"

#ifndef QC_VERSION
#define QC_VERSION "0"
#endif

static const char *prog = "q";

/* A signal that ends the run first removes the temporaries the writers
 * recorded (qc_cleanup.h: OUT.partial unless --resume keeps it, temporary
 * files, spill directories), then ends the process by the same signal, so
 * the exit status says what happened (130 for SIGINT, 141 for SIGPIPE, 143
 * for SIGTERM in a shell). SA_RESETHAND: the raise below, delivered when the
 * handler returns, takes the default action. */
static void on_fatal_signal(int sig)
{
	qc_cleanup_run();
	raise(sig);
}

static void catch_fatal_signals(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT };
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_fatal_signal;
	sa.sa_flags = SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
		struct sigaction old;
		/* a signal ignored by whoever started us (nohup, a shell's `trap '' INT`) stays ignored */
		if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
			continue;
		sigaction(sigs[i], &sa, NULL);
	}
}
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
	catch_fatal_signals();
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

/* ---------------------------------------------------------------- quantizing tools */

int tool_qopt(tool_qopts *q, int c, const char *arg, const char *usage, void (*help)(void),
              char *const *argv)
{
	switch (c) {
	case TOOL_OPT_CALIB: q->calib = arg; return 1;
	case TOOL_OPT_REPORT: q->report = arg; return 1;
	case TOOL_OPT_IGNORE:
		if (q->n_ignore == TOOL_MAX_IGNORE)
			tool_usage_error(usage, "too many --ignore patterns (%d at most)", TOOL_MAX_IGNORE);
		q->ignore[q->n_ignore++] = arg;
		return 1;
	case TOOL_OPT_THREADS: q->threads = (int)tool_parse_i64(usage, "--threads", arg, 1, 1024); return 1;
	case TOOL_OPT_RESUME: q->resume = 1; return 1;
	case TOOL_OPT_MEM: q->mem = tool_parse_size(usage, "--mem", arg); return 1;
	case TOOL_OPT_DEVICE:
		if (qk_device_parse(arg, &q->device) != 0)
			tool_usage_error(usage, "unknown device '%s' (cpu, cuda, auto)", arg);
		return 1;
	case 'o': q->out = arg; return 1;
	case 'f': q->force = 1; return 1;
	case 'q': qc_log_set_level(QC_LOG_QUIET); return 1;
	case 'v': qc_log_set_level(qc_log_level() + 1); return 1;
	case 'h': help(); return 1;
	case 'V': tool_version();
	case '?':
	case ':': tool_bad_option(usage, argv);
	}
	return 0;
}

void tool_qopts_finish(tool_qopts *q, const char *usage, int argc, char *const *argv)
{
	if (optind + 1 != argc)
		tool_usage_error(usage, optind < argc ? "too many arguments" : "no input model given");
	q->model = argv[optind];
	if (!q->out)
		tool_usage_error(usage, "no output given (-o DIR, or -o - for a stream)");
	if (q->resume && strcmp(q->out, "-") == 0)
		tool_usage_error(usage, "--resume needs an output directory, not a stream");
}

void tool_qopts_help(int with_ignore)
{
	if (with_ignore)
		printf(
		"  --ignore REGEX      leave matching Linears unquantized: a module name, or\n"
		"                      're:' and a regular expression (repeatable; lm_head\n"
		"                      is never quantized)\n");
	printf(
	"\n"
	"Output and operation:\n"
	"  -o, --output OUT|-  output directory, or '-' for a tar stream on stdout\n"
	"  -f, --force         replace an existing output directory\n"
	"  --report FILE       also write the per-Linear report (JSON Lines) to FILE\n"
	"  --resume            keep OUT.partial when a run fails or is interrupted (else\n"
	"                      a signal removes it), and reuse the layers a\n"
	"                      failed or killed run finished there\n"
	"  --mem SIZE          memory budget (e.g. 16GB): activations are held in BF16\n"
	"                      when FP32 ones would not fit, and what still does not fit\n"
	"                      is spilled to zstd-compressed scratch files in $TMPDIR\n"
	"  --threads N         threads (default: all CPUs)\n"
	"  --device cpu|cuda|auto  where the kernels run (default cpu; cuda needs a\n"
	"                      build with the CUDA backend and a GPU; auto: cuda when\n"
	"                      it can be used, else cpu)\n"
	"  -q, --quiet         no progress\n"
	"  -v, --verbose       one line per Linear (-vv: timings)\n"
	"  -h, --help          this help\n"
	"  -V, --version       version\n");
}

void tool_qrun_opts(const tool_qopts *q, const char *options, qc_qrun_opts *o)
{
	memset(o, 0, sizeof *o);
	o->model = q->model;
	o->out = q->out;
	o->force = q->force;
	o->resume = q->resume;
	o->calib = q->calib;
	o->report = q->report;
	o->ignore = q->ignore;
	o->n_ignore = q->n_ignore;
	o->threads = q->threads;
	o->device = q->device;
	o->mem = q->mem;
	o->options = options;
	o->argc = tool_argc();
	o->argv = tool_manifest_argv();
}

int tool_qrun(const tool_qopts *q, const char *options, const qc_qmethod *m)
{
	qc_qrun_opts o;
	tool_qrun_opts(q, options, &o);
	int rc = qc_qrun_run(&o, m);
	if (rc)
		return tool_fail(rc);
	return strcmp(q->out, "-") == 0 ? tool_close_stdout() : 0;
}
