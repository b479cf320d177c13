/* qc_err.c - per-thread error messages (see qc_err.h). */
#include "qc_err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QC_ERRMSG_MAX 1024

static _Thread_local char errbuf[QC_ERRMSG_MAX];

const char *qc_strerror(int code)
{
	switch (code) {
	case QC_OK: return "success";
	case QC_EINVAL: return "invalid argument";
	case QC_ENOMEM: return "out of memory";
	case QC_EIO: return "input/output error";
	case QC_EFORMAT: return "malformed input";
	case QC_EUNSUPPORTED: return "unsupported input";
	case QC_EINTEGRITY: return "integrity check failed";
	case QC_ENOTFOUND: return "not found";
	case QC_ENUMERIC: return "numerical failure";
	case QC_EDEVICE: return "device error";
	case QC_EINTERNAL: return "internal error";
	}
	return "unknown error";
}

const char *qc_errmsg(void)
{
	return errbuf;
}

int qc_vseterr(int code, const char *fmt, va_list ap)
{
	int saved = errno;
	size_t n = strlen(fmt);
	int r = vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	if (r < 0)
		errbuf[0] = 0;
	/* trailing ':' asks for the errno text, as sbase's eprintf does */
	if (n > 0 && fmt[n - 1] == ':') {
		size_t len = strlen(errbuf);
		snprintf(errbuf + len, sizeof errbuf - len, " %s", strerror(saved));
	}
	errno = saved;
	return code;
}

int qc_seterr(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	qc_vseterr(code, fmt, ap);
	va_end(ap);
	return code;
}

int qc_errctx(int code, const char *fmt, ...)
{
	/* compose in a buffer large enough for both parts, then truncate */
	char prefix[QC_ERRMSG_MAX], joined[2 * QC_ERRMSG_MAX + 4];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	snprintf(joined, sizeof joined, "%s: %s", prefix, errbuf[0] ? errbuf : qc_strerror(code));
	size_t n = strlen(joined);
	if (n >= sizeof errbuf)
		n = sizeof errbuf - 1;
	memcpy(errbuf, joined, n);
	errbuf[n] = 0;
	return code;
}

int qc_exit_status(int code)
{
	if (code == QC_OK)
		return 0;
	if (code == QC_EINTEGRITY)
		return 1;
	return 2;
}

void qc_assert_fail(const char *what, const char *file, int line)
{
	fprintf(stderr, "internal error: assertion '%s' failed at %s:%d\n", what, file, line);
	abort();
}
