/* qcalib - build calibration and evaluation token sets with the model's own
 * tokenizer (see man/qcalib.1). Reading, tokenizing and the file format are
 * in libcommon (qc_tok, qc_tokset); this file parses options, turns inputs
 * into documents, samples, and reports. */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qc_docs.h"
#include "qc_err.h"
#include "qc_hash.h"
#include "qc_io.h"
#include "qc_log.h"
#include "qc_rng.h"
#include "qc_tok.h"
#include "qc_tokset.h"
#include "tool.h"

static const char usage[] =
	"qcalib -m DIR [-n N] [-L LEN] [--seed S] [--mode pack|pad] [--split lines|docs|none]\n"
	"              [--field NAME | --template T] [--strict] [-o FILE] [FILE...]\n"
	"       qcalib -m DIR --random [-n N] [-L LEN] [--seed S] [-o FILE]\n"
	"       qcalib --show FILE [--decode K -m DIR]\n"
	"       qcalib -m DIR --encode FILE [--special]";

static const char help[] =
	"Build a token set (calibration or evaluation tokens, safetensors with\n"
	"input_ids I32 [N, L] and lengths I32 [N]) with the model's own tokenizer.\n"
	"\n"
	"Inputs (files, '-' for standard input, zstd-compressed files accepted):\n"
	"  -m, --model DIR       model directory (tokenizer.json or tokenizer.model, config.json)\n"
	"      --tokenizer DIR   take the tokenizer from DIR instead of -m\n"
	"      --split MODE      text files: lines (one document per line), docs\n"
	"                        (documents separated by blank lines, default), none\n"
	"      --field NAME      JSON Lines: the document is the string field NAME\n"
	"      --template T      JSON Lines: the document is T with {name} replaced by\n"
	"                        field name; \\n \\t \\\\ are escapes, {{ }} braces\n"
	"      --strict          a JSON line that is not an object or lacks a field\n"
	"                        is an error (default: skipped and counted)\n"
	"      --random          uniform random ids, special and added tokens excluded\n"
	"\n"
	"Shape and sampling:\n"
	"  -n N                  number of rows (default 128)\n"
	"  -L LEN                tokens per row (default 2048)\n"
	"      --seed S          seed of the shuffle and of --random (default 0)\n"
	"      --mode MODE       pack: documents shuffled, each followed by EOS,\n"
	"                        concatenated and cut into rows of LEN (default);\n"
	"                        pad: one shuffled document per row with the\n"
	"                        tokenizer's BOS/EOS rules, truncated or right-padded\n"
	"\n"
	"Output and inspection:\n"
	"  -o FILE               write the token set to FILE (default: standard output,\n"
	"                        which must not be a terminal)\n"
	"      --show FILE       print a summary of a token set\n"
	"      --decode K        with --show: print the text of row K (needs -m)\n"
	"      --encode FILE     print the ids of FILE's text on one line\n"
	"      --special         with --encode: apply the tokenizer's BOS/EOS rules\n"
	"  -q, --quiet           no report on standard error\n"
	"  -v, --verbose         more detail\n"
	"      --help            this help\n"
	"      --version         version\n"
	"\n"
	"Exit status: 0 success, 2 usage or input error.\n";

enum { MODE_PACK, MODE_PAD };

typedef struct opts {
	const char *model, *tokdir, *field, *tmpl, *out, *show, *encode;
	int split, mode, random, strict, special;
	int64_t n, len, decode;
	uint64_t seed;
} opts;

/* ------------------------------------------------------------------------ */
/* model directory                                                           */

static qc_tok *load_tokenizer(const char *dir, qc_h128 *hash)
{
	qc_tok *t;
	int rc = qc_tok_load(&t, dir);
	if (rc < 0)
		exit(tool_fail(rc));
	/* the file the tokenizer came from: tokenizer.json, or tokenizer.model */
	if (hash && (rc = qc_hash_file(qc_tok_file(t), hash, NULL)) < 0)
		exit(tool_fail(rc));
	return t;
}

/* ------------------------------------------------------------------------ */
/* --show, --encode                                                          */

static int do_show(const opts *o)
{
	qc_tokset *ts;
	int rc = qc_tokset_open(&ts, o->show);
	if (rc < 0)
		return tool_fail(rc);
	int64_t n = qc_tokset_rows(ts);
	if (o->decode >= 0) {
		if (o->decode >= n) {
			qc_tokset_close(ts);
			tool_usage_error(usage, "--decode %" PRId64 ": '%s' has rows 0 to %" PRId64, o->decode,
			                 o->show, n - 1);
		}
		qc_h128 h;
		qc_tok *t = load_tokenizer(o->tokdir, &h);
		char *text;
		size_t tl;
		int same;
		rc = qc_tokset_decode_row(ts, t, h, o->decode, &text, &tl, &same);
		qc_tok_free(t);
		qc_tokset_close(ts);
		if (rc < 0)
			return tool_fail(rc);
		if (!same)
			qc_log(QC_LOG_INFO, "warning: '%s' was made with another tokenizer than '%s'", o->show,
			       o->tokdir);
		fwrite(text, 1, tl, stdout);
		putchar('\n');
		free(text);
		return tool_close_stdout();
	}
	char *text = qc_tokset_describe(ts);
	qc_tokset_close(ts);
	if (!text)
		return tool_fail(qc_seterr(QC_ENOMEM, "out of memory"));
	fputs(text, stdout);
	free(text);
	return tool_close_stdout();
}

static int do_encode(const opts *o)
{
	qc_tok *t = load_tokenizer(o->tokdir, NULL);
	char *data = NULL;
	size_t len;
	qc_h128 h;
	qc_ids ids = { 0 };
	int rc = qc_docs_read_input(o->encode, &data, &len, &h);
	if (rc == 0)
		rc = qc_tok_encode(t, data, len, o->special ? QC_TOK_ADD_SPECIAL : 0, &ids);
	if (rc == 0) {
		for (size_t i = 0; i < ids.n; i++)
			printf(i ? " %d" : "%d", ids.v[i]);
		putchar('\n');
	}
	qc_ids_release(&ids);
	free(data);
	qc_tok_free(t);
	return rc < 0 ? tool_fail(rc) : tool_close_stdout();
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */

static char *options_json(const opts *o)
{
	static const char *splits[] = { "lines", "docs", "none" };
	json_t *j = json_pack("{s:s, s:I, s:I, s:b, s:b}", "mode", o->mode == MODE_PACK ? "pack" : "pad",
	                      "n", (json_int_t)o->n, "length", (json_int_t)o->len, "random", o->random,
	                      "strict", o->strict);
	if (!o->random) {
		if (o->field || o->tmpl)
			json_object_set_new(j, o->field ? "field" : "template", json_string(o->field ? o->field : o->tmpl));
		else
			json_object_set_new(j, "split", json_string(splits[o->split]));
	}
	char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(j);
	if (!s) {
		tool_err("out of memory");
		exit(2);
	}
	return s;
}

static void parse(int argc, char **argv, opts *o, char ***files, int *nfiles)
{
	enum { O_TOK = 256, O_SPLIT, O_FIELD, O_TEMPLATE, O_STRICT, O_RANDOM, O_SEED, O_MODE, O_SHOW,
	       O_DECODE, O_ENCODE, O_SPECIAL, O_HELP, O_VERSION };
	static const struct option lo[] = {
		{ "model", required_argument, 0, 'm' }, { "tokenizer", required_argument, 0, O_TOK },
		{ "split", required_argument, 0, O_SPLIT }, { "field", required_argument, 0, O_FIELD },
		{ "template", required_argument, 0, O_TEMPLATE }, { "strict", no_argument, 0, O_STRICT },
		{ "random", no_argument, 0, O_RANDOM }, { "seed", required_argument, 0, O_SEED },
		{ "mode", required_argument, 0, O_MODE }, { "output", required_argument, 0, 'o' },
		{ "show", required_argument, 0, O_SHOW }, { "decode", required_argument, 0, O_DECODE },
		{ "encode", required_argument, 0, O_ENCODE }, { "special", no_argument, 0, O_SPECIAL },
		{ "quiet", no_argument, 0, 'q' }, { "verbose", no_argument, 0, 'v' },
		{ "help", no_argument, 0, O_HELP }, { "version", no_argument, 0, O_VERSION },
		{ 0, 0, 0, 0 },
	};
	int c, level = QC_LOG_INFO, split_set = 0;
	*o = (opts){ .split = QC_DOCS_PARAGRAPHS, .mode = MODE_PACK, .n = 128, .len = 2048, .decode = -1 };
	while ((c = getopt_long(argc, argv, "m:n:L:o:qv", lo, NULL)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case O_TOK: o->tokdir = optarg; break;
		case 'n': o->n = tool_parse_i64(usage, "-n", optarg, 1, 1 << 24); break;
		case 'L': o->len = tool_parse_i64(usage, "-L", optarg, 1, 1 << 24); break;
		case 'o': o->out = optarg; break;
		case 'q': level = QC_LOG_QUIET; break;
		case 'v': level = level < QC_LOG_DEBUG ? level + 1 : level; break;
		case O_SPLIT:
			split_set = 1;
			if (strcmp(optarg, "lines") == 0)
				o->split = QC_DOCS_LINES;
			else if (strcmp(optarg, "docs") == 0)
				o->split = QC_DOCS_PARAGRAPHS;
			else if (strcmp(optarg, "none") == 0)
				o->split = QC_DOCS_WHOLE;
			else
				tool_usage_error(usage, "--split must be lines, docs or none, not '%s'", optarg);
			break;
		case O_FIELD: o->field = optarg; break;
		case O_TEMPLATE: o->tmpl = optarg; break;
		case O_STRICT: o->strict = 1; break;
		case O_RANDOM: o->random = 1; break;
		case O_SEED: o->seed = (uint64_t)tool_parse_i64(usage, "--seed", optarg, 0, INT64_MAX); break;
		case O_MODE:
			if (strcmp(optarg, "pack") == 0)
				o->mode = MODE_PACK;
			else if (strcmp(optarg, "pad") == 0)
				o->mode = MODE_PAD;
			else
				tool_usage_error(usage, "--mode must be pack or pad, not '%s'", optarg);
			break;
		case O_SHOW: o->show = optarg; break;
		case O_DECODE: o->decode = tool_parse_i64(usage, "--decode", optarg, 0, INT64_MAX); break;
		case O_ENCODE: o->encode = optarg; break;
		case O_SPECIAL: o->special = 1; break;
		case O_HELP:
			printf("usage: %s\n\n%s", usage, help);
			exit(tool_close_stdout());
		case O_VERSION: tool_version();
		default: tool_bad_option(usage, argv);
		}
	}
	qc_log_set_level(level);
	*files = argv + optind;
	*nfiles = argc - optind;
	if (!o->tokdir)
		o->tokdir = o->model;
	if (o->show) {
		if (*nfiles || o->encode || o->random)
			tool_usage_error(usage, "--show takes no inputs and no --encode or --random");
		if (o->decode >= 0 && !o->tokdir)
			tool_usage_error(usage, "--decode needs the tokenizer: give -m DIR or --tokenizer DIR");
		return;
	}
	if (o->decode >= 0)
		tool_usage_error(usage, "--decode goes with --show FILE");
	if (!o->tokdir)
		tool_usage_error(usage, "no model: give -m DIR (or --tokenizer DIR)");
	if (o->encode) {
		if (*nfiles || o->random)
			tool_usage_error(usage, "--encode takes one FILE and no other inputs");
		return;
	}
	if (o->special)
		tool_usage_error(usage, "--special goes with --encode");
	if (o->field && o->tmpl)
		tool_usage_error(usage, "give --field or --template, not both");
	if ((o->field || o->tmpl) && split_set)
		tool_usage_error(usage, "--split is for text files, not with --field or --template");
	if (o->tmpl)
		if (qc_docs_check_template(o->tmpl) < 0)
			tool_usage_error(usage, "--template: %s", qc_errmsg());
	if (o->random && (*nfiles || o->field || o->tmpl || split_set || o->strict))
		tool_usage_error(usage, "--random takes no inputs");
	if (!o->random && *nfiles == 0)
		tool_usage_error(usage, "no inputs: give text or JSON Lines files, '-' for standard input, or --random");
	if (o->n > INT64_MAX / o->len || o->n * o->len > ((int64_t)1 << 31))
		tool_usage_error(usage, "-n times -L must be at most 2^31 tokens");
}

int main(int argc, char **argv)
{
	opts o;
	char **files;
	int nfiles;
	tool_init(argc, argv);
	parse(argc, argv, &o, &files, &nfiles);
	if (o.show)
		return do_show(&o);
	if (o.encode)
		return do_encode(&o);
	/* refuse before doing any work */
	if ((!o.out || strcmp(o.out, "-") == 0) && isatty(STDOUT_FILENO)) {
		tool_err("refusing to write a binary token set to a terminal; use -o FILE or a pipe");
		return 2;
	}

	qc_h128 tok_hash;
	qc_tok *t = load_tokenizer(o.tokdir, &tok_hash);
	qc_rows r = { 0 };
	json_t *sources = json_array();
	qc_docs d = { 0 };
	char *src = NULL, *optj = NULL;
	int st = 2, rc = 0;
	int64_t vocab;
	int32_t eos, pad;
	if ((rc = qc_docs_model_ids(o.model ? o.model : o.tokdir, t, &vocab, &eos, &pad)) < 0)
		goto out;

	if (!sources) {
		rc = qc_seterr(QC_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = qc_rows_alloc(&r, o.n, o.len)) < 0)
		goto out;
	int64_t used = 0, produced = 0;
	if (o.random) {
		int64_t below = qc_tok_vocab_size(t) < vocab ? qc_tok_vocab_size(t) : vocab;
		if ((rc = qc_rows_random(&r, t, below, o.seed)) < 0)
			goto out;
		produced = o.n * o.len;
	} else {
		for (int i = 0; i < nfiles; i++) {
			qc_h128 h;
			char hex[33];
			const char *name = strcmp(files[i], "-") == 0 ? "<stdin>" : files[i];
			if ((rc = qc_docs_add_input(&d, files[i], o.field, o.field ? NULL : o.tmpl, o.strict,
			                            (qc_docs_split)o.split, &h)) < 0)
				goto out;
			json_array_append_new(sources, json_pack("{s:s, s:s}", "name", name, "xxh3_128", qc_h128_hex(h, hex)));
		}

		if (d.records > 0)
			qc_log(QC_LOG_INFO, "%" PRId64 " records, %" PRId64 " skipped (%" PRId64
			       " not JSON objects, %" PRId64 " without the field)",
			       d.records, d.skipped_not_object + d.skipped_no_field, d.skipped_not_object,
			       d.skipped_no_field);
		if (d.n == 0) {
			tool_err("no text in the inputs: every input is empty%s",
			         o.field || o.tmpl ? " or every record was skipped" : " or blank");
			goto out;
		}
		qc_docs_shuffle(&d, o.seed);
		if (o.mode == MODE_PACK) {
			if (eos < 0) {
				tool_err("the tokenizer has no EOS token to separate documents; use --mode pad");
				goto out;
			}
			if ((rc = qc_rows_pack(&r, t, &d, eos, &used, &produced)) < 0)
				goto out;
			if (r.n == 0) {
				tool_err("not enough text for one row: %" PRId64 " tokens, -L is %" PRId64, produced, o.len);
				goto out;
			}
		} else {
			if ((rc = qc_rows_pad(&r, t, &d, pad, &used)) < 0)
				goto out;
			produced = qc_rows_tokens(&r);
		}
		qc_log(QC_LOG_INFO, "%zu documents, %" PRId64 " used, %" PRId64 " tokens", d.n, used, produced);
		if (r.n < o.n)
			qc_log(QC_LOG_INFO, "warning: the inputs fill only %" PRId64 " of %" PRId64 " rows", r.n, o.n);
	}

	src = json_dumps(sources, JSON_COMPACT);
	optj = options_json(&o);
	qc_tokset_spec spec = {
		.n = r.n, .l = o.len, .ids = r.ids, .lengths = r.lens, .vocab_size = vocab, .pad_id = pad,
		.bos_id = qc_tok_bos(t), .eos_id = eos, .tokenizer_hash = tok_hash, .seed = o.seed,
		.sources = src, .options = optj,
	};
	if (o.out && strcmp(o.out, "-") != 0) {
		rc = qc_tokset_save(&spec, o.out);
	} else {
		qc_sink s;
		qc_sink_fd(&s, STDOUT_FILENO, "<stdout>");
		rc = qc_tokset_emit(&spec, &s);
	}
	if (rc == 0) {
		qc_log(QC_LOG_INFO, "wrote %" PRId64 " rows of %" PRId64 " (%" PRId64 " tokens) to %s", r.n, o.len,
		       qc_rows_tokens(&r), o.out && strcmp(o.out, "-") != 0 ? o.out : "<stdout>");
		st = tool_close_stdout();
	}
out:
	if (rc < 0)
		st = tool_fail(rc);
	qc_docs_free(&d);
	free(src);
	free(optj);
	json_decref(sources);
	qc_rows_free(&r);
	qc_tok_free(t);
	return st;
}
