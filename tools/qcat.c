/* qcat - read any checkpoint (directory, tar, tar.zst or '-') and write it as
 * a directory or a tar stream, list it, or check it against its manifest
 * (see man/qcat.1). Everything is in libcommon (qc_ckpt): this file parses
 * options and maps results to exit statuses. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qc_ckpt.h"
#include "qc_err.h"
#include "qc_log.h"
#include "tool.h"

static const char usage[] =
	"qcat [-fqv] -o OUT CHECKPOINT\n"
	"       qcat --list CHECKPOINT\n"
	"       qcat [-v] --verify CHECKPOINT";

static const char help[] =
	"Copy a checkpoint between its directory and stream forms, list it, or\n"
	"check it against its manifest. CHECKPOINT is a directory, a tar file\n"
	"(zstd-compressed or not), or '-' for a tar stream on standard input.\n"
	"\n"
	"  -o, --output OUT      write the checkpoint to directory OUT, or as a tar\n"
	"                        stream to standard output with '-' (not a terminal);\n"
	"                        every file is copied byte for byte, in stream order\n"
	"  -f, --force           replace OUT if it exists\n"
	"  -l, --list            print one line per member and per tensor\n"
	"      --verify          check every file and tensor against quant_manifest.json\n"
	"  -q, --quiet           print nothing but errors\n"
	"  -v, --verbose         report what was done on standard error\n"
	"      --help            this help\n"
	"      --version         version\n"
	"\n"
	"Exit status: 0 success (--verify: everything matches), 1 --verify found a\n"
	"mismatch, 2 usage or input error (unreadable or malformed checkpoint).\n";

struct list_ctx {
	FILE *out;
	uint64_t members, tensors, bytes;
};

/* --list: "file NAME SIZE", "shard NAME SIZE", "tensor NAME DTYPE SHAPE SHARD",
 * tab-separated. */
static int list_line(void *vctx, const char *member, uint64_t size, const qc_tensor *t)
{
	struct list_ctx *c = vctx;
	if (t) {
		char sh[192];
		qc_shape_str(sh, sizeof sh, t->ndim, t->shape);
		fprintf(c->out, "tensor\t%s\t%s\t%s\t%s\n", t->name, qc_dtype_name(t->dtype), sh, member);
		c->tensors++;
	} else {
		size_t n = strlen(member);
		int shard = n > 12 && strcmp(member + n - 12, ".safetensors") == 0;
		fprintf(c->out, "%s\t%s\t%" PRIu64 "\n", shard ? "shard" : "file", member, size);
		c->members++;
		c->bytes += size;
	}
	return ferror(c->out) ? qc_seterr(QC_EIO, "write error on '<stdout>'") : 0;
}

/* Counting sink statistics for -v on conversions. */
static int count_line(void *vctx, const char *member, uint64_t size, const qc_tensor *t)
{
	(void)member;
	struct list_ctx *c = vctx;
	if (!t) {
		c->members++;
		c->bytes += size;
	}
	return 0;
}

static int do_copy(const char *in, const char *out, int force)
{
	qc_ckpt *ck;
	qc_ckpt_writer *w;
	qc_ckw_opts wo = { .verbatim = 1, .no_history = 1, .force = force };
	int rc = qc_ckpt_open(&ck, in, NULL);
	if (rc)
		return tool_fail(rc);
	rc = qc_ckw_open(&w, out, &wo);
	if (rc == 0) {
		rc = qc_ckpt_copy(ck, w);
		if (rc)
			qc_ckw_abort(w);
		else
			rc = qc_ckw_close(w);
	}
	qc_ckpt_close(ck);
	if (rc)
		return tool_fail(rc);
	if (strcmp(out, "-") == 0 && tool_close_stdout())
		return 2;
	if (qc_log_level() >= QC_LOG_DETAIL) {
		/* a second, cheap pass over what was written (headers only) */
		struct list_ctx c = { 0 };
		if (strcmp(out, "-") != 0 && qc_ckpt_open(&ck, out, NULL) == 0) {
			if (qc_ckpt_list(ck, count_line, &c) == 0)
				qc_log(QC_LOG_DETAIL, "wrote %" PRIu64 " files (%" PRIu64 " bytes) to '%s'",
				       c.members, c.bytes, out);
			qc_ckpt_close(ck);
		} else {
			qc_log(QC_LOG_DETAIL, "wrote '%s' as a tar stream to <stdout>", in);
		}
	}
	return 0;
}

static int do_list(const char *in)
{
	qc_ckpt *ck;
	struct list_ctx c = { .out = stdout };
	int rc = qc_ckpt_open(&ck, in, NULL);
	if (rc == 0)
		rc = qc_ckpt_list(ck, list_line, &c);
	if (ck)
		qc_ckpt_close(ck);
	if (rc)
		return tool_fail(rc);
	return tool_close_stdout();
}

static int do_verify(const char *in)
{
	qc_ckpt *ck;
	int rc = qc_ckpt_open(&ck, in, NULL);
	if (rc == 0)
		rc = qc_ckpt_verify(ck);
	if (rc == 0 && qc_log_level() >= QC_LOG_DETAIL) {
		const qc_manifest *m;
		if (qc_ckpt_manifest(ck, &m) == 0 && m)
			qc_log(QC_LOG_DETAIL, "'%s': %zu files and %zu tensors match the manifest",
			       qc_ckpt_name(ck), qc_manifest_file_count(m), qc_manifest_tensor_count(m));
	}
	if (ck)
		qc_ckpt_close(ck);
	return rc ? tool_fail(rc) : 0;
}

int main(int argc, char **argv)
{
	enum { OPT_HELP = 256, OPT_VERSION, OPT_VERIFY };
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		{ "list", no_argument, NULL, 'l' },
		{ "verify", no_argument, NULL, OPT_VERIFY },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ 0 },
	};
	const char *out = NULL;
	int force = 0, list = 0, verify = 0, level = QC_LOG_INFO, c;
	tool_init(argc, argv);
	while ((c = getopt_long(argc, argv, ":o:flqv", longopts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'f': force = 1; break;
		case 'l': list = 1; break;
		case OPT_VERIFY: verify = 1; break;
		case 'q': level = QC_LOG_ERROR; break;
		case 'v': level = level < QC_LOG_DEBUG ? level + 1 : level; break;
		case OPT_HELP:
			printf("usage: %s\n\n%s", usage, help);
			return tool_close_stdout();
		case OPT_VERSION: tool_version();
		case ':': tool_usage_error(usage, "option '%s' needs an argument", argv[optind - 1]);
		default: tool_bad_option(usage, argv);
		}
	}
	qc_log_set_level(level);
	if (optind + 1 != argc)
		tool_usage_error(usage, optind == argc ? "no checkpoint given" : "more than one checkpoint given");
	if (!!out + list + verify != 1)
		tool_usage_error(usage, out || list || verify ? "-o, --list and --verify exclude each other"
		                                              : "nothing to do: give -o OUT, --list or --verify");
	if (force && !out)
		tool_usage_error(usage, "-f goes with -o");
	const char *in = argv[optind];
	if (strcmp(in, "-") == 0 && isatty(STDIN_FILENO)) {
		tool_err("refusing to read a checkpoint stream from a terminal");
		return 2;
	}
	if (out)
		return do_copy(in, out, force);
	if (list)
		return do_list(in);
	return do_verify(in);
}
