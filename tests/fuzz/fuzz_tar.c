/* fuzz_tar.c - the tar stream reader (ustar, GNU and pax headers, long
 * names, sizes, zstd frames), then the same bytes as a checkpoint stream
 * (members in order, shards, index, manifest, the verification pass). */
#include "fuzz.h"
#include "qc_ckpt.h"
#include "qc_tar.h"

static void tar_pass(const char *path)
{
	qc_source *src = NULL;
	if (qc_source_open(&src, path) != 0)
		return;
	qc_tar_reader *r = NULL;
	if (qc_tar_reader_new(&r, src) == 0) {
		qc_tar_member m;
		char buf[4096];
		/* read some members, skip others: both paths of qc_tar_next */
		for (int k = 0; qc_tar_next(r, &m) == 1; k++) {
			if (!qc_safe_filename(m.name))
				abort();
			if (k % 2)
				continue;
			size_t got;
			do {
				if (qc_tar_read(r, buf, sizeof buf, &got) != 0)
					break;
			} while (got == sizeof buf);
		}
		qc_tar_reader_free(r);
	}
	qc_source_close(src);
}

static void ckpt_pass(const char *path)
{
	qc_ckpt_opts o = {.stream_mem_limit = 1 << 20, .tmpdir = NULL, .hash_tensors = 1};
	qc_ckpt *ck = NULL;
	if (qc_ckpt_open(&ck, path, &o) != 0)
		return;
	if (qc_ckpt_read_all(ck) == 0) {
		const char *const *names;
		size_t n;
		if (qc_ckpt_tensor_names(ck, &names, &n) == 0)
			for (size_t i = 0; i < n; i++) {
				const qc_tensor *t;
				if (qc_ckpt_get(ck, names[i], &t) == 0)
					qc_ckpt_release(ck, names[i]);
			}
		qc_ckpt_verify(ck);
	}
	qc_ckpt_close(ck);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int fd = fuzz_memfile(data, size, path);
	tar_pass(path);
	ckpt_pass(path);
	close(fd);
	return 0;
}
