/*
 * qfault.c - an LD_PRELOAD shim that makes the Nth call of one system call
 * fail, for the fault-injection test (tests/cli/t1630-faults.sh):
 *
 *   QFAULT_CALL=write|fsync|rename|mmap|read   which call
 *   QFAULT_N=N                                 the Nth counted call fails (1-based)
 *   QFAULT_ERRNO=ENOSPC|EIO                    with this errno (default EIO)
 *   QFAULT_LOG=FILE                            append "CALL N" when it fires
 *
 * Counted calls: write, pwrite and writev on any descriptor but 2 (the
 * error message itself must get out); fsync and fdatasync; rename and
 * renameat2 (renameat too); mmap of a file (anonymous maps are the
 * allocator's, whose failure is out of memory, not a file error); read and
 * pread on any descriptor. Later calls succeed again. Every process that
 * inherits the environment counts on its own (tools do not fork).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int which = -1;   /* index in names, or -1: off */
static long target, count;
static int err = EIO;
static const char *const names[] = {"write", "fsync", "rename", "mmap", "read"};
enum { C_WRITE, C_FSYNC, C_RENAME, C_MMAP, C_READ };

__attribute__((constructor)) static void init(void)
{
	const char *c = getenv("QFAULT_CALL"), *n = getenv("QFAULT_N"), *e = getenv("QFAULT_ERRNO");
	if (!c || !n)
		return;
	for (int i = 0; i < 5; i++)
		if (strcmp(c, names[i]) == 0)
			which = i;
	target = atol(n);
	if (e && strcmp(e, "ENOSPC") == 0)
		err = ENOSPC;
}

/* 1 when this counted call is the one to fail */
static int fire(int call)
{
	if (call != which || target <= 0)
		return 0;
	if (__atomic_add_fetch(&count, 1, __ATOMIC_SEQ_CST) != target)
		return 0;
	const char *log = getenv("QFAULT_LOG");
	if (log) {
		int saved = errno;
		FILE *f = fopen(log, "a");
		if (f) {
			fprintf(f, "%s %ld\n", names[call], target);
			fclose(f);
		}
		errno = saved;
	}
	return 1;
}

#define REAL(ret, name, ...)                                              \
	static ret (*real)(__VA_ARGS__);                                      \
	if (!real)                                                            \
		*(void **)&real = dlsym(RTLD_NEXT, name)

ssize_t write(int fd, const void *buf, size_t n)
{
	REAL(ssize_t, "write", int, const void *, size_t);
	if (fd != 2 && fire(C_WRITE)) {
		errno = err;
		return -1;
	}
	return real(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	REAL(ssize_t, "pwrite", int, const void *, size_t, off_t);
	if (fd != 2 && fire(C_WRITE)) {
		errno = err;
		return -1;
	}
	return real(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	REAL(ssize_t, "writev", int, const struct iovec *, int);
	if (fd != 2 && fire(C_WRITE)) {
		errno = err;
		return -1;
	}
	return real(fd, iov, cnt);
}

int fsync(int fd)
{
	REAL(int, "fsync", int);
	if (fire(C_FSYNC)) {
		errno = err;
		return -1;
	}
	return real(fd);
}

int fdatasync(int fd)
{
	REAL(int, "fdatasync", int);
	if (fire(C_FSYNC)) {
		errno = err;
		return -1;
	}
	return real(fd);
}

int rename(const char *a, const char *b)
{
	REAL(int, "rename", const char *, const char *);
	if (fire(C_RENAME)) {
		errno = err;
		return -1;
	}
	return real(a, b);
}

int renameat(int da, const char *a, int db, const char *b)
{
	REAL(int, "renameat", int, const char *, int, const char *);
	if (fire(C_RENAME)) {
		errno = err;
		return -1;
	}
	return real(da, a, db, b);
}

int renameat2(int da, const char *a, int db, const char *b, unsigned flags)
{
	REAL(int, "renameat2", int, const char *, int, const char *, unsigned);
	if (fire(C_RENAME)) {
		errno = err;
		return -1;
	}
	return real(da, a, db, b, flags);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	REAL(void *, "mmap", void *, size_t, int, int, int, off_t);
	if (!(flags & MAP_ANONYMOUS) && fd >= 0 && fire(C_MMAP)) {
		errno = err;
		return MAP_FAILED;
	}
	return real(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}

ssize_t read(int fd, void *buf, size_t n)
{
	REAL(ssize_t, "read", int, void *, size_t);
	if (fire(C_READ)) {
		errno = err;
		return -1;
	}
	return real(fd, buf, n);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	REAL(ssize_t, "pread", int, void *, size_t, off_t);
	if (fire(C_READ)) {
		errno = err;
		return -1;
	}
	return real(fd, buf, n, off);
}
