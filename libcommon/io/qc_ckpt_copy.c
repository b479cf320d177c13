/* qc_ckpt_copy.c - qc_ckpt_copy: every member of a checkpoint, byte for
 * byte, into a verbatim writer. The reader hands members to a sink of two
 * functions (qc_ckpt_int.h); this file points them at the writer, so the
 * reader and the writer link without each other. */
#include "qc_ckpt.h"

#include "qc_ckpt_int.h"

static int sink_file(void *ctx, const char *name, const void *data, size_t len)
{
	return qc_ckw_add_file(ctx, name, data, len);
}

static int sink_member(void *ctx, const char *name, uint64_t size, qc_ckw_fill_fn fill,
                       void *fill_ctx)
{
	return qc_ckw_add_member(ctx, name, size, fill, fill_ctx);
}

int qc_ckpt_copy(qc_ckpt *ck, qc_ckpt_writer *w)
{
	qc_ckpt_msink sink = { w, sink_file, sink_member };
	return qc_ckpt__copy_members(ck, &sink);
}
