/* test_limits.c - resource limits of the stream readers: a tar member whose
 * header claims more bytes than the stream delivers is refused as truncated
 * without allocating the claimed size first (the address space of the test
 * is limited below that size, so an allocation up front fails with
 * QC_ENOMEM instead). Shape products that overflow are refused. */
#include "tutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qc_ckpt.h"
#include "qc_dtype.h"
#include "qc_err.h"
#include "qc_io.h"
#include "qc_st.h"
#include "qc_tar.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

#define GIB ((uint64_t)1 << 30)

/* A stream: config.json, then a member `name` claiming `claim` bytes of
 * which only `head` (hlen bytes) follow before the stream ends. */
static char *cut_stream(const char *file, const char *name, uint64_t claim, const void *head,
                        size_t hlen)
{
	static const char config[] = "{\"architectures\": [\"LlamaForCausalLM\"]}\n";
	qc_membuf b = { 0 };
	qc_sink s;
	qc_sink_membuf(&s, &b, "mem");
	assert_int_equal(qc_tar_write_file(&s, "config.json", config, sizeof config - 1), 0);
	assert_int_equal(qc_tar_write_header(&s, name, claim), 0);
	assert_int_equal(qc_sink_write(&s, head, hlen), 0);
	assert_int_equal(qc_sink_zeros(&s, 4096), 0);
	char *p = tu_path(file);
	tu_write(p, b.data, b.len);
	qc_membuf_free(&b);
	return p;
}

/* Open the stream and read every tensor in a child whose address space is
 * limited to `as` bytes; the child's exit status is the error class (0 ok,
 * 1 QC_EFORMAT, 2 QC_ENOMEM, 3 other). */
static int read_limited(const char *path, uint64_t as)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = { as, as };
		setrlimit(RLIMIT_AS, &rl);
		qc_ckpt *ck = NULL;
		int rc = qc_ckpt_open(&ck, path, NULL);
		if (rc == 0)
			rc = qc_ckpt_read_all(ck);
		if (rc == 0) {
			const qc_tensor *t;
			rc = qc_ckpt_get(ck, "model.embed_tokens.weight", &t);
		}
		qc_ckpt_close(ck);
		_exit(rc == 0 ? 0 : rc == QC_EFORMAT ? 1 : rc == QC_ENOMEM ? 2 : 3);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void test_claimed_sizes(void **state)
{
	(void)state;
	if (UNDER_ASAN)
		skip();   /* the sanitizer's shadow memory needs more address space */
	/* a small file claiming 900 MiB (under the 1 GiB small-file bound) */
	char *p = cut_stream("small.tar", "tokenizer.json", 900 << 20, "{}", 2);
	assert_int_equal(read_limited(p, 600 << 20), 1);
	free(p);
	/* a shard whose valid header claims 3 GiB of data */
	uint64_t size = 3 * GIB;
	char json[200];
	int n = snprintf(json, sizeof json,
	                 "{\"model.embed_tokens.weight\":{\"dtype\":\"U8\",\"shape\":[%llu],"
	                 "\"data_offsets\":[0,%llu]}}",
	                 (unsigned long long)(size - 8 - 0), (unsigned long long)(size - 8 - 0));
	/* the data length depends on the header length: fix it up once */
	uint64_t dlen = size - 8 - (uint64_t)n;
	n = snprintf(json, sizeof json,
	             "{\"model.embed_tokens.weight\":{\"dtype\":\"U8\",\"shape\":[%llu],"
	             "\"data_offsets\":[0,%llu]}}",
	             (unsigned long long)dlen, (unsigned long long)dlen);
	assert_int_equal(size - 8 - (uint64_t)n, dlen);
	unsigned char head[256];
	for (int i = 0; i < 8; i++)
		head[i] = (unsigned char)((uint64_t)n >> (8 * i));
	memcpy(head + 8, json, (size_t)n);
	p = cut_stream("shard.tar", "model.safetensors", size, head, 8 + (size_t)n);
	assert_int_equal(read_limited(p, GIB), 1);
	free(p);
}

/* Shapes whose element count or byte size overflows 64 bits are refused by
 * the reader (and the helpers say so with -1). */
static void test_shape_overflow(void **state)
{
	(void)state;
	int64_t big[3] = { (int64_t)1 << 31, (int64_t)1 << 31, 4 };
	assert_int_equal(qc_numel(3, big), -1);
	int64_t half[2] = { (int64_t)1 << 31, (int64_t)1 << 31 };
	assert_true(qc_numel(2, half) > 0);
	assert_int_equal(qc_nbytes(QC_DT_F64, qc_numel(2, half)), -1);
	const char *json = "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
	                   "\"data_offsets\":[0,0]}}";
	size_t n = strlen(json);
	unsigned char *img = calloc(1, 8 + n);
	assert_non_null(img);
	for (int i = 0; i < 8; i++)
		img[i] = (unsigned char)((uint64_t)n >> (8 * i));
	memcpy(img + 8, json, n);
	qc_st *st;
	tu_assert_rc(qc_st_open_mem(&st, img, 8 + n, 1, "overflow"), QC_EFORMAT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_claimed_sizes),
		cmocka_unit_test(test_shape_overflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
