/* qc_log.c - stderr diagnostics and progress (see qc_log.h). */
#include "qc_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "q";
static int log_level = QC_LOG_INFO;

void qc_log_init(const char *prog, int level)
{
	const char *slash = prog ? strrchr(prog, '/') : NULL;
	log_prog = slash ? slash + 1 : (prog ? prog : "q");
	log_level = level;
}

void qc_log_set_level(int level) { log_level = level; }
int qc_log_level(void) { return log_level; }
const char *qc_log_prog(void) { return log_prog; }

void qc_log(int level, const char *fmt, ...)
{
	if (level > log_level)
		return;
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", log_prog, buf);
}

double qc_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fmt_duration(char *out, size_t n, double s)
{
	if (s < 0 || s > 1e7) {
		snprintf(out, n, "--:--");
		return;
	}
	long t = (long)(s + 0.5);
	if (t >= 3600)
		snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(out, n, "%ld:%02ld", t / 60, t % 60);
}

void qc_progress_begin(qc_progress *p, const char *label, int64_t total)
{
	memset(p, 0, sizeof *p);
	snprintf(p->label, sizeof p->label, "%s", label);
	p->total = total;
	p->t_start = qc_now();
	p->tty = isatty(2);
}

void qc_progress_update(qc_progress *p, int64_t done, const char *note)
{
	if (log_level < QC_LOG_INFO)
		return;
	double now = qc_now();
	int64_t prev = p->done;
	p->done = done;
	double el = now - p->t_start;
	char eta[32] = "--:--", elapsed[32];
	if (done > 0 && p->total > 0)
		fmt_duration(eta, sizeof eta, el / done * (p->total - done));
	fmt_duration(elapsed, sizeof elapsed, el);
	if (p->tty) {
		if (now - p->t_last_draw < 0.1 && done < p->total)
			return;
		p->t_last_draw = now;
		fprintf(stderr, "\r\033[K%s: %s %lld/%lld  %s  ETA %s", log_prog, p->label,
		        (long long)done, (long long)p->total, note ? note : "", eta);
		p->drawn = 1;
	} else if (done != prev) {
		fprintf(stderr, "%s: %s %lld/%lld  %s  elapsed %s\n", log_prog, p->label,
		        (long long)done, (long long)p->total, note ? note : "", elapsed);
	}
}

void qc_progress_end(qc_progress *p)
{
	if (p->tty && p->drawn && log_level >= QC_LOG_INFO)
		fputc('\n', stderr);
	p->drawn = 0;
}
