/* test_io.c - sinks, sources (plain, stdin, zstd), whole files, mmap, atomic
 * output and path helpers. */
#include "tutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "qc_err.h"
#include "qc_io.h"

/* Deterministic filler so that misplaced bytes show up as mismatches. */
static unsigned char *pattern(size_t n, unsigned seed)
{
	unsigned char *p = malloc(n ? n : 1);
	assert_non_null(p);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		p[i] = (unsigned char)x;
	}
	return p;
}

static int count_entries(const char *dir)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "exit $(ls -A '%s' | wc -l)", dir);
	return WEXITSTATUS(system(cmd));
}

// ---------------------------------------------------------------- sinks

static void test_sinks(void **state)
{
	(void)state;
	char *path = tu_path("sink.bin");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	qc_sink s;
	qc_sink_fd(&s, fd, path);
	assert_int_equal(qc_sink_write(&s, "abc", 3), 0);
	assert_int_equal(qc_sink_zeros(&s, 5000), 0);
	assert_int_equal(qc_sink_write(&s, "z", 1), 0);
	assert_int_equal(s.written, 5004);
	close(fd);
	size_t len;
	unsigned char *got = tu_read(path, &len);
	assert_int_equal(len, 5004);
	assert_memory_equal(got, "abc", 3);
	for (size_t i = 3; i < 5003; i++)
		assert_int_equal(got[i], 0);
	assert_int_equal(got[5003], 'z');
	free(got);

	/* a write to a closed descriptor is QC_EIO naming the sink */
	qc_sink_fd(&s, fd, "closed.bin");
	tu_assert_rc(qc_sink_write(&s, "x", 1), QC_EIO);
	assert_non_null(strstr(qc_errmsg(), "write error on 'closed.bin'"));

	qc_membuf b = { 0 };
	qc_sink_membuf(&s, &b, "mem");
	for (int i = 0; i < 1000; i++)
		assert_int_equal(qc_sink_write(&s, "0123456789", 10), 0);
	assert_int_equal(b.len, 10000);
	assert_int_equal(b.data[b.len], 0);
	assert_memory_equal(b.data + 9990, "0123456789", 10);
	qc_membuf_free(&b);
	assert_null(b.data);
	free(path);
}

// ---------------------------------------------------------------- sources

static void test_source_plain(void **state)
{
	(void)state;
	size_t n = (3u << 20) + 123;   /* spans several internal buffers */
	unsigned char *data = pattern(n, 1), *buf = malloc(n);
	char *path = tu_path("plain.bin");
	tu_write(path, data, n);
	qc_source *s;
	assert_int_equal(qc_source_open(&s, path), 0);
	assert_false(qc_source_compressed(s));
	assert_string_equal(qc_source_name(s), path);
	/* small reads, then a skip (lseek), then a large read, then EOF */
	assert_int_equal(qc_source_read_full(s, buf, 10), 0);
	assert_memory_equal(buf, data, 10);
	assert_int_equal(qc_source_skip(s, 1000000), 0);
	assert_int_equal(qc_source_offset(s), 1000010);
	assert_int_equal(qc_source_read_full(s, buf, n - 1000010 - 5), 0);
	assert_memory_equal(buf, data + 1000010, n - 1000010 - 5);
	size_t got;
	assert_int_equal(qc_source_read(s, buf, 100, &got), 0);
	assert_int_equal(got, 5);
	assert_int_equal(qc_source_read(s, buf, 100, &got), 0);
	assert_int_equal(got, 0);
	tu_assert_rc(qc_source_read_full(s, buf, 1), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "unexpected end of"));
	qc_source_close(s);

	/* skipping past the end of a regular file is a short stream */
	assert_int_equal(qc_source_open(&s, path), 0);
	tu_assert_rc(qc_source_skip(s, n + 1), QC_EFORMAT);
	qc_source_close(s);

	/* missing file and directory */
	tu_assert_rc(qc_source_open(&s, "/nonexistent/x.tar"), QC_EIO);
	assert_string_equal(qc_errmsg(), "cannot open '/nonexistent/x.tar': No such file or directory");
	tu_assert_rc(qc_source_open(&s, tu_tmpdir()), QC_EIO);
	assert_non_null(strstr(qc_errmsg(), "Is a directory"));
	qc_source_close(NULL);
	free(data);
	free(buf);
	free(path);
}

/* stdin through a pipe: not seekable, so skip reads and discards. */
static void test_source_stdin_pipe(void **state)
{
	(void)state;
	size_t n = 40000;               /* fits the pipe buffer: no writer thread needed */
	unsigned char *data = pattern(n, 2), *buf = malloc(n);
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], data, n), (ssize_t)n);
	close(p[1]);
	int saved = dup(0);
	assert_int_equal(dup2(p[0], 0), 0);
	close(p[0]);
	qc_source *s;
	assert_int_equal(qc_source_open(&s, "-"), 0);
	assert_string_equal(qc_source_name(s), "<stdin>");
	assert_int_equal(qc_source_skip(s, 30000), 0);
	assert_int_equal(qc_source_read_full(s, buf, 9000), 0);
	assert_memory_equal(buf, data + 30000, 9000);
	tu_assert_rc(qc_source_skip(s, 1001), QC_EFORMAT);
	assert_string_equal(qc_errmsg(), "unexpected end of '<stdin>'");
	qc_source_close(s);
	dup2(saved, 0);
	close(saved);
	free(data);
	free(buf);
}

static void test_source_zstd(void **state)
{
	(void)state;
	size_t n = (5u << 20) + 77;
	unsigned char *data = pattern(n, 3), *buf = malloc(n);
	/* patterned data barely compresses; append a long zero run that does */
	memset(data + n / 2, 0, n / 4);
	size_t half = n / 3;
	size_t cap = ZSTD_compressBound(n) + 64;
	unsigned char *z = malloc(cap);
	/* two concatenated frames form one stream, as `cat a.zst b.zst` does */
	size_t z1 = ZSTD_compress(z, cap, data, half, 3);
	assert_false(ZSTD_isError(z1));
	size_t z2 = ZSTD_compress(z + z1, cap - z1, data + half, n - half, 1);
	assert_false(ZSTD_isError(z2));
	char *path = tu_path("data.zst");
	tu_write(path, z, z1 + z2);

	qc_source *s;
	assert_int_equal(qc_source_open(&s, path), 0);
	assert_true(qc_source_compressed(s));
	assert_int_equal(qc_source_read_full(s, buf, 100), 0);
	assert_int_equal(qc_source_skip(s, 1000), 0);
	assert_int_equal(qc_source_read_full(s, buf + 1100, n - 1100), 0);
	assert_memory_equal(buf, data, 100);
	assert_memory_equal(buf + 1100, data + 1100, n - 1100);
	assert_int_equal(qc_source_offset(s), n);
	size_t got;
	assert_int_equal(qc_source_read(s, buf, 10, &got), 0);
	assert_int_equal(got, 0);
	qc_source_close(s);

	/* truncated: the stream ends inside the second frame */
	tu_write(path, z, z1 + z2 - 7);
	assert_int_equal(qc_source_open(&s, path), 0);
	int rc = qc_source_read_full(s, buf, n);
	tu_assert_rc(rc, QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), path));
	qc_source_close(s);

	/* corrupt: garbage after a valid frame */
	memcpy(z + z1, "garbage!garbage!", 12);
	tu_write(path, z, z1 + 12);
	assert_int_equal(qc_source_open(&s, path), 0);
	tu_assert_rc(qc_source_read_full(s, buf, n), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "zstd"));
	qc_source_close(s);

	/* files shorter than the magic are plain */
	tu_write(path, "ab", 2);
	assert_int_equal(qc_source_open(&s, path), 0);
	assert_false(qc_source_compressed(s));
	assert_int_equal(qc_source_read(s, buf, 10, &got), 0);
	assert_int_equal(got, 2);
	qc_source_close(s);
	free(z);
	free(data);
	free(buf);
	free(path);
}

// ---------------------------------------------------------------- whole files, mmap

static void test_read_file_and_map(void **state)
{
	(void)state;
	char *path = tu_path("small.txt");
	tu_write(path, "hello", 5);
	char *d;
	size_t len;
	assert_int_equal(qc_read_file(path, 100, &d, &len), 0);
	assert_int_equal(len, 5);
	assert_string_equal(d, "hello");
	free(d);
	tu_assert_rc(qc_read_file(path, 4, &d, &len), QC_EFORMAT);
	assert_null(d);
	assert_non_null(strstr(qc_errmsg(), "too large"));
	tu_assert_rc(qc_read_file("/nonexistent/f", 4, &d, &len), QC_EIO);
	assert_string_equal(qc_errmsg(), "cannot open '/nonexistent/f': No such file or directory");

	const void *m;
	assert_int_equal(qc_map(path, &m, &len), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(m, "hello", 5);
	qc_unmap(m, len);

	char *empty = tu_path("empty");
	tu_write(empty, "", 0);
	assert_int_equal(qc_map(empty, &m, &len), 0);
	assert_non_null(m);
	assert_int_equal(len, 0);
	qc_unmap(m, len);
	assert_int_equal(qc_read_file(empty, 10, &d, &len), 0);
	assert_int_equal(len, 0);
	assert_string_equal(d, "");
	free(d);
	tu_assert_rc(qc_map(tu_tmpdir(), &m, &len), QC_EIO);
	free(path);
	free(empty);
}

// ---------------------------------------------------------------- atomic output

static void test_atomic(void **state)
{
	(void)state;
	char *dir = tu_path("atomic");
	assert_int_equal(qc_mkdirs(dir, 0755), 0);
	char *path = qc_path_join(dir, "out.bin");

	/* commit: the final name appears with the content, nothing else left */
	qc_atomic a;
	assert_int_equal(qc_atomic_open(&a, path), 0);
	assert_int_equal(write(a.fd, "data", 4), 4);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(count_entries(dir), 1);
	assert_int_equal(qc_atomic_commit(&a), 0);
	qc_atomic_abort(&a);            /* no-op after commit */
	size_t len;
	char *got = tu_read(path, &len);
	assert_int_equal(len, 4);
	assert_memory_equal(got, "data", 4);
	free(got);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	assert_int_equal(count_entries(dir), 1);

	/* abort: the old file is untouched and the temporary is gone */
	assert_int_equal(qc_atomic_open(&a, path), 0);
	assert_int_equal(write(a.fd, "other", 5), 5);
	qc_atomic_abort(&a);
	got = tu_read(path, &len);
	assert_memory_equal(got, "data", 4);
	free(got);
	assert_int_equal(count_entries(dir), 1);

	/* replacing a file that is mapped leaves the mapping intact */
	const void *m;
	assert_int_equal(qc_map(path, &m, &len), 0);
	assert_int_equal(qc_write_file_atomic(path, "new contents", 12), 0);
	assert_memory_equal(m, "data", 4);
	qc_unmap(m, len);
	got = tu_read(path, &len);
	assert_int_equal(len, 12);
	free(got);

	/* a directory that does not exist */
	tu_assert_rc(qc_atomic_open(&a, "/nonexistent/dir/f"), QC_EIO);
	qc_atomic_abort(&a);
	free(path);
	free(dir);
}

// ---------------------------------------------------------------- paths

static void test_paths(void **state)
{
	(void)state;
	static const char *good[] = { "config.json", "model-00001-of-00002.safetensors", ".x", "a..b", "-" };
	static const char *bad[] = { "", ".", "..", "../x", "a/b", "/etc/passwd", "a\\b", "a\nb", "\x7f" };
	for (size_t i = 0; i < sizeof good / sizeof *good; i++)
		assert_true(qc_safe_filename(good[i]));
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_false(qc_safe_filename(bad[i]));
	assert_false(qc_safe_filename(NULL));
	char longname[300];
	memset(longname, 'a', 299);
	longname[299] = 0;
	assert_false(qc_safe_filename(longname));
	longname[255] = 0;
	assert_true(qc_safe_filename(longname));

	char *p = qc_path_join("a", "b");
	assert_string_equal(p, "a/b");
	free(p);
	p = qc_path_join("a/", "b");
	assert_string_equal(p, "a/b");
	free(p);

	char *root = tu_path("tree");
	char *deep = qc_path_join(root, "x/y/z");
	assert_int_equal(qc_mkdirs(deep, 0755), 0);
	assert_int_equal(qc_mkdirs(deep, 0755), 0);     /* idempotent */
	assert_true(qc_is_dir(deep));
	char *f = qc_path_join(deep, "file");
	tu_write(f, "1", 1);
	/* a symbolic link to a file outside the tree: rmtree removes the link only */
	char *outside = tu_path("outside");
	tu_write(outside, "keep", 4);
	char *link = qc_path_join(root, "x/link");
	assert_int_equal(symlink(outside, link), 0);
	char *dlink = qc_path_join(root, "dirlink");
	assert_int_equal(symlink(tu_tmpdir(), dlink), 0);
	assert_int_equal(qc_rmtree(root), 0);
	assert_false(qc_is_dir(root));
	assert_int_equal(access(outside, F_OK), 0);
	assert_int_equal(qc_rmtree(root), 0);           /* missing: not an error */
	tu_assert_rc(qc_rmtree("/"), QC_EINVAL);
	tu_assert_rc(qc_rmtree(""), QC_EINVAL);
	/* mkdirs over a file fails */
	tu_assert_rc(qc_mkdirs(outside, 0755), QC_EIO);

	char *t;
	assert_int_equal(qc_mkdtemp(&t, tu_tmpdir(), "spill-"), 0);
	assert_true(qc_is_dir(t));
	assert_non_null(strstr(t, "/spill-"));
	assert_int_equal(qc_rmtree(t), 0);
	free(t);
	tu_assert_rc(qc_mkdtemp(&t, "/nonexistent", "x"), QC_EIO);
	assert_null(t);
	free(root), free(deep), free(f), free(outside), free(link), free(dlink);
}

/* Writing "atomically" to a device must write to it, never rename a file
 * over it (which, as root, would replace /dev/null with a regular file). */
static void test_atomic_device(void **state)
{
	(void)state;
	struct stat st;
	if (stat("/dev/null", &st) != 0 || !S_ISCHR(st.st_mode))
		skip();
	assert_int_equal(qc_write_file_atomic("/dev/null", "hello", 5), 0);
	assert_int_equal(stat("/dev/null", &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	tu_assert_rc(qc_write_file_atomic(tu_tmpdir(), "x", 1), QC_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sinks),
		cmocka_unit_test(test_source_plain),
		cmocka_unit_test(test_source_stdin_pipe),
		cmocka_unit_test(test_source_zstd),
		cmocka_unit_test(test_read_file_and_map),
		cmocka_unit_test(test_atomic),
		cmocka_unit_test(test_atomic_device),
		cmocka_unit_test(test_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
