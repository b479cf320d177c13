/* test_tar.c - the ustar/pax writer against GNU tar, and the reader on our
 * own streams, on GNU tar's (posix, gnu and ustar formats, "./" prefixes),
 * on hand-made headers (base-256 sizes, >8 GiB pax sizes), and on broken or
 * hostile archives. */
#include "tutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "qc_err.h"
#include "qc_io.h"
#include "qc_tar.h"

static char long_name[151];

static void init_long_name(void)
{
	memset(long_name, 'n', 150);
	memcpy(long_name + 140, ".json", 5);
	long_name[150] = 0;
}

/* A small archive: four members, one empty, one exactly one block, one long name. */
static unsigned char *make_tar(size_t *len)
{
	qc_membuf b = { 0 };
	qc_sink s;
	qc_sink_membuf(&s, &b, "mem");
	char block[512];
	memset(block, 'b', sizeof block);
	assert_int_equal(qc_tar_write_file(&s, "config.json", "{\"a\": 1}\n", 9), 0);
	assert_int_equal(qc_tar_write_file(&s, "empty.txt", "", 0), 0);
	assert_int_equal(qc_tar_write_file(&s, "block.bin", block, 512), 0);
	assert_int_equal(qc_tar_write_file(&s, long_name, "long", 4), 0);
	assert_int_equal(qc_tar_write_end(&s), 0);
	assert_int_equal(b.len % 512, 0);
	*len = b.len;
	return b.data;
}

/* Read every member of the file at path into "name=size:content;" form. */
static int list_tar(const char *path, char *out, size_t cap)
{
	qc_source *src;
	qc_tar_reader *r;
	int rc = qc_source_open(&src, path);
	if (rc)
		return rc;
	assert_int_equal(qc_tar_reader_new(&r, src), 0);
	out[0] = 0;
	qc_tar_member m;
	while ((rc = qc_tar_next(r, &m)) == 1) {
		char data[64] = "";
		size_t want = m.size < 16 ? (size_t)m.size : 16;
		rc = qc_tar_read_full(r, data, want);
		if (rc)
			break;
		data[want] = 0;
		size_t used = strlen(out);
		snprintf(out + used, cap - used, "%s=%llu:%s;", m.name, (unsigned long long)m.size, data);
	}
	qc_tar_reader_free(r);
	qc_source_close(src);
	return rc;
}

static void test_write_read(void **state)
{
	(void)state;
	size_t len;
	unsigned char *t = make_tar(&len);
	/* 4 headers + 1 pax header + pax data + 3 data blocks + 2 end blocks */
	assert_int_equal(len, 512 * 11);
	/* deterministic header fields, byte for byte where they are fixed */
	assert_memory_equal(t + 100, "0000644\0" "0000000\0" "0000000\0", 24);
	assert_memory_equal(t + 124, "00000000011\0" "00000000000\0", 24);
	assert_memory_equal(t + 257, "ustar\0" "00", 8);
	for (int i = 265; i < 512; i++)
		assert_int_equal(t[i], 0);
	/* the same members give the same bytes */
	size_t len2;
	unsigned char *t2 = make_tar(&len2);
	assert_int_equal(len, len2);
	assert_memory_equal(t, t2, len);
	free(t2);

	char *path = tu_path("a.tar");
	tu_write(path, t, len);
	char got[1024], expect[1024];
	assert_int_equal(list_tar(path, got, sizeof got), 0);
	snprintf(expect, sizeof expect,
	         "config.json=9:{\"a\": 1}\n;empty.txt=0:;block.bin=512:bbbbbbbbbbbbbbbb;%s=4:long;", long_name);
	assert_string_equal(got, expect);

	/* the same through zstd */
	size_t cap = ZSTD_compressBound(len);
	unsigned char *z = malloc(cap);
	size_t zn = ZSTD_compress(z, cap, t, len, 3);
	assert_false(ZSTD_isError(zn));
	char *zpath = tu_path("a.tar.zst");
	tu_write(zpath, z, zn);
	assert_int_equal(list_tar(zpath, got, sizeof got), 0);
	assert_string_equal(got, expect);

	/* GNU tar lists and extracts what we write */
	char cmd[8192];
	snprintf(cmd, sizeof cmd,
	         "cd '%s' && mkdir -p x && tar -C x -xf a.tar && test $(wc -c < x/block.bin) = 512 && "
	         "test \"$(tar tvf a.tar | awk '{print $1, $2, $3, $6}' | head -1)\" = "
	         "'-rw-r--r-- 0/0 9 config.json' && test -f x/%s && test \"$(cat x/config.json)\" = '{\"a\": 1}'",
	         tu_tmpdir(), long_name);
	assert_int_equal(system(cmd), 0);
	free(z);
	free(zpath);
	free(path);
	free(t);
}

/* Archives made by GNU tar in its three formats, with "./" prefixes. */
static void test_gnu_tar(void **state)
{
	(void)state;
	char cmd[8192];
	const char *d = tu_tmpdir();
	snprintf(cmd, sizeof cmd,
	         "cd '%s' && rm -rf g && mkdir g && printf abc > g/config.json && printf 0123456789 > g/%s && "
	         "tar --format=posix -C g -cf posix.tar config.json %s && "
	         "tar --format=gnu -C g -cf gnu.tar . && "
	         "tar --format=ustar -C g -cf ustar.tar config.json",
	         d, long_name, long_name);
	assert_int_equal(system(cmd), 0);
	char *p = tu_path("posix.tar"), got[1024], expect[1024];
	assert_int_equal(list_tar(p, got, sizeof got), 0);
	snprintf(expect, sizeof expect, "config.json=3:abc;%s=10:0123456789;", long_name);
	assert_string_equal(got, expect);
	free(p);
	/* GNU format: "./" directory entry, "./config.json", 'L' long name; order is readdir's */
	p = tu_path("gnu.tar");
	assert_int_equal(list_tar(p, got, sizeof got), 0);
	assert_non_null(strstr(got, "config.json=3:abc;"));
	snprintf(expect, sizeof expect, "%s=10:0123456789;", long_name);
	assert_non_null(strstr(got, expect));
	free(p);
	p = tu_path("ustar.tar");
	assert_int_equal(list_tar(p, got, sizeof got), 0);
	assert_string_equal(got, "config.json=3:abc;");
	free(p);
}

/* Recompute a header's checksum after editing it. */
static void fix_checksum(unsigned char *h)
{
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
}

/* Sizes beyond 11 octal digits: pax "size" from our writer, base-256 from GNU. */
static void test_big_sizes(void **state)
{
	(void)state;
	uint64_t big = 9ull << 30;      /* 9 GiB: needs pax */
	qc_membuf b = { 0 };
	qc_sink s;
	qc_sink_membuf(&s, &b, "mem");
	assert_int_equal(qc_tar_write_header(&s, "model.safetensors", big), 0);
	assert_int_equal(b.len, 3 * 512);
	assert_int_equal(b.data[156], 'x');
	assert_non_null(strstr((char *)b.data + 512, "19 size=9663676416\n"));
	assert_memory_equal(b.data + 1024 + 124, "00000000000\0", 12);   /* as GNU tar writes */
	assert_int_equal(qc_sink_write(&s, "0123456789", 10), 0);   /* then the stream stops */
	char *path = tu_path("big.tar");
	tu_write(path, b.data, b.len);
	qc_source *src;
	qc_tar_reader *r;
	qc_tar_member m;
	assert_int_equal(qc_source_open(&src, path), 0);
	assert_int_equal(qc_tar_reader_new(&r, src), 0);
	assert_int_equal(qc_tar_next(r, &m), 1);
	assert_string_equal(m.name, "model.safetensors");
	assert_int_equal(m.size, big);
	char buf[16];
	assert_int_equal(qc_tar_read_full(r, buf, 10), 0);
	assert_int_equal(qc_tar_remaining(r), big - 10);
	size_t got;
	tu_assert_rc(qc_tar_read(r, buf, 16, &got), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "tar member 'model.safetensors' is truncated"));
	qc_tar_reader_free(r);
	qc_source_close(src);

	/* base-256 (GNU) size of 8 GiB + 5, stream cut after the header: skipping
	 * to the next member reports the truncated member */
	b.len = 0;
	assert_int_equal(qc_tar_write_header(&s, "w.safetensors", 5), 0);
	unsigned char *h = b.data;
	memset(h + 124, 0, 12);
	h[124] = 0x80;
	uint64_t v = (8ull << 30) + 5;
	for (int i = 0; i < 8; i++)
		h[135 - i] = (unsigned char)(v >> (8 * i));
	fix_checksum(h);
	tu_write(path, b.data, 512);
	assert_int_equal(qc_source_open(&src, path), 0);
	assert_int_equal(qc_tar_reader_new(&r, src), 0);
	assert_int_equal(qc_tar_next(r, &m), 1);
	assert_int_equal(m.size, v);
	tu_assert_rc(qc_tar_next(r, &m), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "'w.safetensors' is truncated"));
	qc_tar_reader_free(r);
	qc_source_close(src);
	qc_membuf_free(&b);
	free(path);
}

/* Broken and hostile archives: each is one QC_EFORMAT with a clear message. */
static void expect_bad(const char *what, const unsigned char *t, size_t len, const char *msg)
{
	char *path = tu_path("bad.tar");
	tu_write(path, t, len);
	qc_source *src;
	qc_tar_reader *r;
	qc_tar_member m;
	assert_int_equal(qc_source_open(&src, path), 0);
	assert_int_equal(qc_tar_reader_new(&r, src), 0);
	int rc;
	char buf[4096];
	while ((rc = qc_tar_next(r, &m)) == 1) {
		size_t got;
		if ((rc = qc_tar_read(r, buf, sizeof buf, &got)) != 0)
			break;
	}
	if (rc != QC_EFORMAT || !strstr(qc_errmsg(), msg) || !strstr(qc_errmsg(), path)) {
		print_error("%s: rc %d, message '%s', expected '%s'\n", what, rc, qc_errmsg(), msg);
		fail();
	}
	qc_tar_reader_free(r);
	qc_source_close(src);
	free(path);
}

static unsigned char *one_member(const char *name, char type, size_t *len)
{
	qc_membuf b = { 0 };
	qc_sink s;
	qc_sink_membuf(&s, &b, "mem");
	assert_int_equal(qc_tar_write_file(&s, "placeholder", "data", 4), 0);
	assert_int_equal(qc_tar_write_end(&s), 0);
	memset(b.data, 0, 100);
	memcpy(b.data, name, strlen(name) < 100 ? strlen(name) : 100);
	b.data[156] = (unsigned char)type;
	fix_checksum(b.data);
	*len = b.len;
	return b.data;
}

static void test_bad_archives(void **state)
{
	(void)state;
	size_t len;
	unsigned char *t = make_tar(&len);
	unsigned char *c = malloc(len);

	memcpy(c, t, len);
	c[512 * 2 + 10] ^= 1;               /* a name byte of the second header */
	expect_bad("bad checksum", c, len, "bad tar header checksum at offset 1024");
	memcpy(c, t, len);
	c[3] ^= 0x20;
	expect_bad("bad first checksum", c, len, "not a tar stream");
	expect_bad("truncated member", t, 512 + 5, "tar member 'config.json' is truncated");
	expect_bad("truncated header", t, 512 * 2 + 100, "partial header block");
	expect_bad("no end marker", t, 512 * 2, "no end-of-archive blocks");
	expect_bad("empty input", t, 0, "empty input");
	memset(c, 0x5a, len);
	expect_bad("not a tar", c, len, "not a tar stream");

	static const struct { const char *name; char type; const char *msg; } names[] = {
		{ "../x", '0', "unsafe member name '../x'" },
		{ "/etc/passwd", '0', "unsafe member name '/etc/passwd'" },
		{ "sub/config.json", '0', "unsafe member name 'sub/config.json'" },
		{ "./../x", '0', "unsafe member name './../x'" },
		{ "..", '0', "unsafe member name '..'" },
		{ "link", '2', "unsupported type '2'" },
		{ "hard", '1', "unsupported type '1'" },
		{ "dev", '3', "unsupported type '3'" },
		{ "sub/", '5', "unsafe member name 'sub/'" },
		{ "subdir", '5', "unsupported type '5'" },
	};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		unsigned char *o = one_member(names[i].name, names[i].type, &len);
		expect_bad(names[i].name, o, len, names[i].msg);
		free(o);
	}

	/* a pax path that climbs out, and malformed pax records */
	static const struct { const char *rec; const char *msg; } pax[] = {
		{ "16 path=../evil\n", "unsafe member name '../evil'" },
		{ "15 path=../evil\n", "malformed pax record" },
		{ "99 path=x\n", "malformed pax record" },
		{ "x path=y\n", "malformed pax record" },
		{ "12 size=12a\n", "bad pax size" },
		{ "10 novalue\n", "malformed pax record" },
	};
	for (size_t i = 0; i < sizeof pax / sizeof *pax; i++) {
		qc_membuf b = { 0 };
		qc_sink s;
		qc_sink_membuf(&s, &b, "mem");
		size_t rl = strlen(pax[i].rec);
		assert_int_equal(qc_tar_write_header(&s, "pax", rl), 0);
		b.data[156] = 'x';
		fix_checksum(b.data);
		assert_int_equal(qc_sink_write(&s, pax[i].rec, rl), 0);
		assert_int_equal(qc_tar_write_pad(&s, rl), 0);
		assert_int_equal(qc_tar_write_file(&s, "f", "1", 1), 0);
		assert_int_equal(qc_tar_write_end(&s), 0);
		expect_bad(pax[i].rec, b.data, b.len, pax[i].msg);
		qc_membuf_free(&b);
	}

	/* a bad octal size */
	memcpy(c, t, len);
	memcpy(c + 124, "0000000009x\0", 12);
	fix_checksum(c);
	expect_bad("bad size", c, len, "bad size field");

	/* writer refuses unsafe names */
	qc_membuf b = { 0 };
	qc_sink s;
	qc_sink_membuf(&s, &b, "mem");
	tu_assert_rc(qc_tar_write_header(&s, "../x", 1), QC_EINVAL);
	tu_assert_rc(qc_tar_write_header(&s, "a/b", 1), QC_EINVAL);
	assert_int_equal(b.len, 0);
	free(c);
	free(t);
}

/* The end marker drains the rest of a pipe (GNU tar pads to 10 KiB records). */
static void test_end_drains(void **state)
{
	(void)state;
	size_t len;
	unsigned char *t = make_tar(&len);
	unsigned char *padded = calloc(1, len + 8192);
	memcpy(padded, t, len);
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], padded, len + 8192), (ssize_t)(len + 8192));
	close(p[1]);
	int saved = dup(0);
	dup2(p[0], 0);
	close(p[0]);
	qc_source *src;
	qc_tar_reader *r;
	qc_tar_member m;
	assert_int_equal(qc_source_open(&src, "-"), 0);
	assert_int_equal(qc_tar_reader_new(&r, src), 0);
	int n = 0, rc;
	while ((rc = qc_tar_next(r, &m)) == 1)
		n++;
	assert_int_equal(rc, 0);
	assert_int_equal(n, 4);
	assert_int_equal(qc_source_offset(src), len + 8192);
	assert_int_equal(qc_tar_next(r, &m), 0);
	qc_tar_reader_free(r);
	qc_source_close(src);
	dup2(saved, 0);
	close(saved);
	free(padded);
	free(t);
}

int main(void)
{
	init_long_name();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_read),
		cmocka_unit_test(test_gnu_tar),
		cmocka_unit_test(test_big_sizes),
		cmocka_unit_test(test_bad_archives),
		cmocka_unit_test(test_end_drains),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
