/* bfiles.c - a checkpoint's files for the read benchmarks (bfiles.h). */
#include "bfiles.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qc_err.h"
#include "qc_io.h"
#include "qc_log.h"

int bf_add_member(void *ctx, const char *member, uint64_t size, const qc_tensor *t)
{
	bfiles *f = ctx;
	if (t)
		return 0;
	if (f->n == f->cap) {
		f->cap = f->cap ? 2 * f->cap : 64;
		if (!(f->path = realloc(f->path, f->cap * sizeof *f->path)))
			return qc_seterr(QC_ENOMEM, "out of memory");
	}
	if (!(f->path[f->n++] = qc_path_join(f->dir, member)))
		return qc_seterr(QC_ENOMEM, "out of memory");
	f->bytes += size;
	return 0;
}

void bf_evict(const bfiles *f)
{
	for (size_t i = 0; i < f->n; i++) {
		int fd = open(f->path[i], O_RDONLY);
		if (fd >= 0) {
			(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
			close(fd);
		}
	}
}

double bf_cat(const bfiles *f)
{
	if (f->cold)
		bf_evict(f);
	char **argv = calloc(f->n + 2, sizeof *argv);
	if (!argv)
		return -1;
	argv[0] = "cat";
	for (size_t i = 0; i < f->n; i++)
		argv[i + 1] = f->path[i];
	double t0 = qc_now();
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd < 0 || dup2(fd, 1) < 0)
			_exit(127);
		execvp("cat", argv);
		_exit(127);
	}
	int st = 0;
	int ok = pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
	free(argv);
	return ok ? qc_now() - t0 : -1;
}
