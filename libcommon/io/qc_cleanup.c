/* qc_cleanup.c - temporaries removed when a signal ends the run (qc_cleanup.h). */
#include "qc_cleanup.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A slot is published by setting used after its path is written, and
 * withdrawn by clearing used first: the handler never reads a half-written
 * path. */
static struct slot {
	volatile sig_atomic_t used;
	char path[QC_CLEANUP_PATH];
} slots[QC_CLEANUP_MAX];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void qc_cleanup_add(const char *path)
{
	size_t n = path ? strlen(path) : 0;
	if (n == 0 || n >= QC_CLEANUP_PATH)
		return;
	pthread_mutex_lock(&lock);
	int free_slot = -1;
	for (int i = 0; i < QC_CLEANUP_MAX; i++) {
		if (slots[i].used && strcmp(slots[i].path, path) == 0) {
			free_slot = -2;
			break;
		}
		if (!slots[i].used && free_slot == -1)
			free_slot = i;
	}
	if (free_slot >= 0) {
		memcpy(slots[free_slot].path, path, n + 1);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		slots[free_slot].used = 1;
	}
	pthread_mutex_unlock(&lock);
}

void qc_cleanup_remove(const char *path)
{
	if (!path)
		return;
	pthread_mutex_lock(&lock);
	for (int i = 0; i < QC_CLEANUP_MAX; i++)
		if (slots[i].used && strcmp(slots[i].path, path) == 0)
			slots[i].used = 0;
	pthread_mutex_unlock(&lock);
}

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/* Empty the directory open at dfd, depth levels at most (our temporaries
 * are flat or one level deep): each entry is unlinked as a file, and when
 * that fails emptied and removed as a directory (never followed: a
 * symbolic link is a file to unlinkat). */
static void empty_dir(int dfd, int depth)
{
	char buf[4096];
	/* a pass reads the whole directory; removing entries while reading may
	 * skip some, so passes repeat while they remove anything */
	for (int pass = 0; pass < 16; pass++) {
		int removed = 0;
		lseek(dfd, 0, SEEK_SET);
		long n;
		while ((n = syscall(SYS_getdents64, dfd, buf, sizeof buf)) > 0) {
			for (long off = 0; off < n;) {
				struct linux_dirent64 *e = (struct linux_dirent64 *)(buf + off);
				off += e->d_reclen;
				if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
					continue;
				if (unlinkat(dfd, e->d_name, 0) == 0) {
					removed = 1;
					continue;
				}
				if (depth <= 0)
					continue;
				int sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (sub < 0)
					continue;
				empty_dir(sub, depth - 1);
				close(sub);
				if (unlinkat(dfd, e->d_name, AT_REMOVEDIR) == 0)
					removed = 1;
			}
		}
		if (!removed)
			return;
	}
}

void qc_cleanup_run(void)
{
	for (int i = 0; i < QC_CLEANUP_MAX; i++) {
		if (!slots[i].used)
			continue;
		const char *p = slots[i].path;
		if (unlink(p) == 0)
			continue;
		int dfd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd < 0)
			continue;
		empty_dir(dfd, 4);
		close(dfd);
		rmdir(p);
	}
}
