/*
 * qc_ckpt.c - checkpoint reader: a HuggingFace directory or a tar stream
 * behind one interface (see qc_ckpt.h). The layout rules it shares with the
 * writer are in qc_ckpt_layout.c; qc_ckpt_copy, which joins reader and
 * writer, is in qc_ckpt_copy.c (so neither needs the other to link).
 *
 * Directory: every shard is mapped and its header validated at open, the
 * index is checked against the shards both ways, and tensors are views into
 * the mappings. Nothing is copied.
 *
 * Stream: a sequential pass over the tar. Each member's header is read
 * (pending) before its data, so the reader can decide per member what to do
 * with the bytes: load a small file, hold a shard in memory, spill it to a
 * temporary file and map it, hash it and let it go (hash passes), list it,
 * or hand it to a writer (qcat). Shard headers are validated before their
 * data is read, and the layer-order rule is applied to every shard, so a
 * stream is judged the same whatever the consumer asks for. The rules a
 * directory is held to at open (config.json, index agreement) are checked
 * when the end of the stream is reached.
 */
#include "qc_ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include <jansson.h>

#include "qc_ckpt_int.h"
#include "qc_err.h"
#include "qc_io.h"
#include "qc_pool.h"
#include "qc_st.h"
#include "qc_tar.h"
#include "qc_vec.h"

/* Largest small file (tokenizer.json is ~10 MB) and index we load whole. */
#define SMALL_MAX ((size_t)1 << 30)
#define INDEX_MAX ((size_t)256 << 20)
#define DEFAULT_MEM_LIMIT ((uint64_t)4 << 30)
/* Threads of the hash pass over a directory (see hash_members). */
#define HASH_THREADS 4

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}


// ---------------------------------------------------------------- reader state

enum { MK_FILE, MK_SHARD, MK_INDEX, MK_MANIFEST };

struct member {
	char *name;
	int kind;
	uint64_t size;
	char *data;             /* small files, once loaded (NUL-terminated) */
	int loaded;
	int hashed;
	qc_h128 hash;
	int shard;              /* MK_SHARD: index into ck->sh */
};

struct shard {
	int member;
	qc_st *st;              /* with data; NULL when the data is gone */
	const unsigned char *img;   /* the file image st reads (borrowed) */
	int lo, hi;             /* group range */
	size_t first, count;    /* its tensors: ck->t[first .. first+count) */
	size_t live;            /* tensors not released */
	int in_mem;             /* counted in ck->held */
	int mapped;             /* img is a mapping (madvise-able) */
	char *spill;            /* spill file path */
	int gone;               /* data released or consumed */
};

struct tensor {
	char *name;
	int group;
	int shard;
	size_t idx;             /* index in the shard (data order) */
	qc_dtype dt;
	int ndim;
	int64_t shape[QC_MAX_DIMS];
	size_t nbytes;
	int released;
	int holds;              /* qc_ckpt_hold count: a release waits for 0 */
	int release_wanted;     /* released while held */
	int hashed;
	uint64_t hash;
};

enum { MODE_HOLD, MODE_DROP, MODE_LIST, MODE_COPY };

struct qc_ckpt {
	char *name;             /* the path as given, "<stdin>" for "-" */
	int stream;
	uint64_t mem_limit;
	char *tmpdir;
	int hash_tensors;

	struct member *m;
	size_t nm, capm;
	struct shard *sh;
	size_t nsh, capsh;
	struct tensor *t;
	size_t nt, capt;
	size_t *tab;            /* open addressing: tensor index + 1 */
	size_t tabcap;

	json_t *index;          /* parsed index document, once seen */
	json_t *wmap;           /* its weight_map (borrowed from index) */

	/* stream */
	qc_source *src;
	qc_tar_reader *tar;
	int pending;            /* a member header was read, its data not yet */
	char *pm_name;
	uint64_t pm_size;
	int eof;                /* end reached and the end checks passed */
	int fail;               /* sticky error of a stream that broke */
	int complete;           /* highest complete group */
	uint64_t held;          /* bytes of shards held in memory */
	char *spilldir;
	unsigned char *chunk;   /* QC_CKPT_CHUNK bytes */
	int touched;            /* tensors were read: copy/list refuse */
	const char *want_name;  /* what the current read-forward is for */
	int want_group;

	/* answers owned by ck */
	qc_manifest *man;
	int man_done;
	const char **gnames;
	size_t ngnames;
	const char **allnames;
	size_t nallnames;
	const char **fnames;
	size_t nfnames;
};

#define NO_GROUP INT_MIN

static int nomem(void)
{
	return qc_seterr(QC_ENOMEM, "out of memory");
}

/* A malformed checkpoint: "invalid checkpoint '<name>': <detail>". */
static int bad(const qc_ckpt *ck, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(const qc_ckpt *ck, const char *fmt, ...)
{
	char d[800];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d, sizeof d, fmt, ap);
	va_end(ap);
	return qc_seterr(QC_EFORMAT, "invalid checkpoint '%s': %s", ck->name, d);
}

static size_t name_hash(const char *s)
{
	return (size_t)qc_xxh3_64(s, strlen(s));
}

static size_t tab_slot(const qc_ckpt *ck, const char *name)
{
	size_t mask = ck->tabcap - 1, i = name_hash(name) & mask;
	while (ck->tab[i] && strcmp(ck->t[ck->tab[i] - 1].name, name) != 0)
		i = (i + 1) & mask;
	return i;
}

static struct tensor *find_tensor(const qc_ckpt *ck, const char *name)
{
	if (!ck->tabcap)
		return NULL;
	size_t s = tab_slot(ck, name);
	return ck->tab[s] ? &ck->t[ck->tab[s] - 1] : NULL;
}

static int tab_grow(qc_ckpt *ck, size_t need)
{
	if (2 * need <= ck->tabcap)
		return 0;
	size_t cap = ck->tabcap ? ck->tabcap : 256;
	while (cap < 2 * need)
		cap *= 2;
	size_t *tab = calloc(cap, sizeof *tab);
	if (!tab)
		return nomem();
	free(ck->tab);
	ck->tab = tab;
	ck->tabcap = cap;
	for (size_t i = 0; i < ck->nt; i++)
		ck->tab[tab_slot(ck, ck->t[i].name)] = i + 1;
	return 0;
}

static struct member *find_member(const qc_ckpt *ck, const char *name)
{
	for (size_t i = 0; i < ck->nm; i++)
		if (strcmp(ck->m[i].name, name) == 0)
			return &ck->m[i];
	return NULL;
}

static int member_kind(const char *name)
{
	switch (qc_ckpt__rank(name)) {
	case QC_RANK_SHARD: return MK_SHARD;
	case QC_RANK_INDEX: return MK_INDEX;
	case QC_RANK_MANIFEST: return MK_MANIFEST;
	default: return MK_FILE;
	}
}

static struct member *add_member(qc_ckpt *ck, const char *name, uint64_t size)
{
	if (qc_grow((void **)&ck->m, &ck->capm, ck->nm + 1, sizeof *ck->m))
		return NULL;
	struct member *m = &ck->m[ck->nm];
	memset(m, 0, sizeof *m);
	m->name = strdup(name);
	if (!m->name) {
		nomem();
		return NULL;
	}
	m->kind = member_kind(name);
	m->size = size;
	m->shard = -1;
	ck->nm++;
	return m;
}

/* The index says where each tensor lives; a shard must agree. */
static int check_index_entry(const qc_ckpt *ck, const char *tensor, const char *file)
{
	if (!ck->wmap)
		return 0;
	json_t *v = json_object_get(ck->wmap, tensor);
	if (!v)
		return bad(ck, "tensor '%s' in '%s' is not listed in '%s'", tensor, file, QC_CKPT_INDEX_NAME);
	if (strcmp(json_string_value(v), file) != 0)
		return bad(ck, "'%s' puts tensor '%s' in '%s', but '%s' holds it", QC_CKPT_INDEX_NAME,
		           tensor, json_string_value(v), file);
	return 0;
}

/* Register a validated shard header: its tensors, the order rule, index
 * agreement. st may be header-only; it is not kept. */
static int register_shard(qc_ckpt *ck, struct member *mb, const qc_st *st, int check_order)
{
	size_t n = qc_st_count(st);
	int lo = INT_MAX, hi = INT_MIN;
	if (check_order) {
		size_t badi = 0;
		int r = qc_ckpt__order(&ck->complete, st, &badi, &lo, &hi);
		if (r == -2)
			return bad(ck, "bad %s '%s' in '%s'", QC_CKPT_META_GROUPS,
			           qc_st_meta(st, QC_CKPT_META_GROUPS), mb->name);
		if (r == -1) {
			char gd[48];
			const char *tn = qc_st_at(st, badi)->name;
			return bad(ck, "out of layer order: tensor '%s' in '%s' comes after the stream completed %s "
			           "(untar the stream and pass the directory instead)", tn, mb->name,
			           qc_ckpt__group_desc(qc_ckpt_group_of(tn), gd));
		}
	}
	QC_TRY(qc_grow((void **)&ck->sh, &ck->capsh, ck->nsh + 1, sizeof *ck->sh));
	QC_TRY(qc_grow((void **)&ck->t, &ck->capt, ck->nt + n, sizeof *ck->t));
	QC_TRY(tab_grow(ck, ck->nt + n));
	struct shard *s = &ck->sh[ck->nsh];
	memset(s, 0, sizeof *s);
	s->member = (int)(mb - ck->m);
	s->first = ck->nt;
	for (size_t i = 0; i < n; i++) {
		const qc_tensor *v = qc_st_at(st, i);
		if (find_tensor(ck, v->name)) {
			const struct tensor *o = find_tensor(ck, v->name);
			return bad(ck, "tensor '%s' is in both '%s' and '%s'", v->name,
			           ck->m[ck->sh[o->shard].member].name, mb->name);
		}
		QC_TRY(check_index_entry(ck, v->name, mb->name));
		struct tensor *t = &ck->t[ck->nt];
		memset(t, 0, sizeof *t);
		t->name = strdup(v->name);
		if (!t->name)
			return nomem();
		t->group = qc_ckpt_group_of(v->name);
		t->shard = (int)ck->nsh;
		t->idx = i;
		t->dt = v->dtype;
		t->ndim = v->ndim;
		memcpy(t->shape, v->shape, sizeof t->shape);
		t->nbytes = v->nbytes;
		ck->tab[tab_slot(ck, t->name)] = ck->nt + 1;
		ck->nt++;
		s->count++;
		lo = t->group < lo ? t->group : lo;
		hi = t->group > hi ? t->group : hi;
	}
	s->lo = lo;
	s->hi = hi;
	s->live = n;
	mb->shard = (int)ck->nsh;
	ck->nsh++;
	return 0;
}

/* Parse the index (for a directory, check that every file it names exists). */
static int parse_index(qc_ckpt *ck, const char *data, size_t len)
{
	json_error_t err;
	json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &err);
	if (!root)
		return bad(ck, "bad JSON in '%s': %s (line %d)", QC_CKPT_INDEX_NAME, err.text, err.line);
	int rc = 0;
	json_t *wm = json_object_get(root, "weight_map"), *meta = json_object_get(root, "metadata");
	if (!json_is_object(root) || !json_is_object(wm)) {
		rc = bad(ck, "'%s' has no \"weight_map\" object", QC_CKPT_INDEX_NAME);
		goto out;
	}
	if (meta && !json_is_object(meta) && !json_is_null(meta)) {
		rc = bad(ck, "\"metadata\" in '%s' is not an object", QC_CKPT_INDEX_NAME);
		goto out;
	}
	const char *k;
	json_t *v;
	json_object_foreach(wm, k, v) {
		if (!json_is_string(v)) {
			rc = bad(ck, "'%s' maps tensor '%s' to something that is not a file name",
			         QC_CKPT_INDEX_NAME, k);
			goto out;
		}
		const char *f = json_string_value(v);
		if (!qc_safe_filename(f)) {
			rc = bad(ck, "'%s' names the unsafe file '%s' for tensor '%s' (shards must be plain "
			         "file names in the checkpoint)", QC_CKPT_INDEX_NAME, f, k);
			goto out;
		}
		if (!ends_with(f, ".safetensors")) {
			rc = bad(ck, "'%s' names '%s' for tensor '%s', which is not a .safetensors file",
			         QC_CKPT_INDEX_NAME, f, k);
			goto out;
		}
	}
	ck->index = root;
	ck->wmap = wm;
	root = NULL;
	/* shards seen before the index (hand-made streams) must agree with it */
	for (size_t i = 0; i < ck->nt && rc == 0; i++)
		rc = check_index_entry(ck, ck->t[i].name, ck->m[ck->sh[ck->t[i].shard].member].name);
out:
	json_decref(root);
	return rc;
}

/* The rules a whole checkpoint obeys (checked at open for a directory, at
 * the end for a stream). */
static int check_whole(qc_ckpt *ck)
{
	if (!find_member(ck, "config.json"))
		return bad(ck, "no config.json");
	if (ck->nsh == 0)
		return bad(ck, "no safetensors files");
	if (ck->wmap) {
		if (json_object_size(ck->wmap) != ck->nt) {
			const char *k;
			json_t *v;
			json_object_foreach(ck->wmap, k, v) {
				if (!find_tensor(ck, k)) {
					const char *f = json_string_value(v);
					if (!find_member(ck, f))
						return bad(ck, "'%s' names '%s' for tensor '%s', but the file is missing",
						           QC_CKPT_INDEX_NAME, f, k);
					return bad(ck, "'%s' puts tensor '%s' in '%s', which does not hold it",
					           QC_CKPT_INDEX_NAME, k, f);
				}
			}
		}
		for (size_t i = 0; i < ck->nm; i++) {
			if (ck->m[i].kind != MK_SHARD)
				continue;
			/* every shard file must be one the index names */
			int named = 0;
			const char *k;
			json_t *v;
			json_object_foreach(ck->wmap, k, v)
				if (strcmp(json_string_value(v), ck->m[i].name) == 0) {
					named = 1;
					break;
				}
			if (!named)
				return bad(ck, "'%s' is not listed in '%s'", ck->m[i].name, QC_CKPT_INDEX_NAME);
		}
	} else {
		if (ck->nsh != 1 || strcmp(ck->m[ck->sh[0].member].name, "model.safetensors") != 0)
			return bad(ck, "%zu safetensors files but no '%s'", ck->nsh, QC_CKPT_INDEX_NAME);
	}
	return 0;
}

// ---------------------------------------------------------------- directory

static _Thread_local const qc_ckpt *sort_ck;
static int cmp_canon(const void *a, const void *b)
{
	const struct member *x = a, *y = b;
	int rx = qc_ckpt__rank(x->name), ry = qc_ckpt__rank(y->name);
	if (rx != ry)
		return rx < ry ? -1 : 1;
	if (rx == QC_RANK_SHARD && x->shard >= 0 && y->shard >= 0) {
		const struct shard *sx = &sort_ck->sh[x->shard], *sy = &sort_ck->sh[y->shard];
		if (sx->lo != sy->lo)
			return sx->lo < sy->lo ? -1 : 1;
		if (sx->hi != sy->hi)
			return sx->hi < sy->hi ? -1 : 1;
	}
	return strcmp(x->name, y->name);
}

/* Put ck->m in canonical order, keeping shard <-> member links. */
static void sort_members(qc_ckpt *ck)
{
	sort_ck = ck;
	qsort(ck->m, ck->nm, sizeof *ck->m, cmp_canon);
	for (size_t i = 0; i < ck->nm; i++)
		if (ck->m[i].shard >= 0)
			ck->sh[ck->m[i].shard].member = (int)i;
}

static int cmp_member_name(const void *a, const void *b)
{
	return strcmp(((const struct member *)a)->name, ((const struct member *)b)->name);
}

static char *member_path(const qc_ckpt *ck, const char *name)
{
	return qc_path_join(ck->name, name);
}

static int open_dir(qc_ckpt *ck)
{
	DIR *d = opendir(ck->name);
	if (!d)
		return qc_seterr(QC_EIO, "cannot open directory '%s':", ck->name);
	int rc = 0;
	struct dirent *e;
	while ((errno = 0, e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || !qc_safe_filename(e->d_name))
			continue;
		char *p = member_path(ck, e->d_name);
		struct stat st;
		if (!p) {
			rc = nomem();
			break;
		}
		int ok = stat(p, &st) == 0;
		free(p);
		if (!ok || !S_ISREG(st.st_mode))
			continue;       /* subdirectories, dangling links: not members */
		if (!add_member(ck, e->d_name, (uint64_t)st.st_size)) {
			rc = QC_ENOMEM;
			break;
		}
	}
	if (rc == 0 && errno)
		rc = qc_seterr(QC_EIO, "cannot read directory '%s':", ck->name);
	closedir(d);
	if (rc)
		return rc;
	if (!find_member(ck, "config.json"))
		return bad(ck, "no config.json (not a checkpoint directory)");
	/* by name, so that what is checked first (and reported) does not depend
	 * on the file system's directory order */
	qsort(ck->m, ck->nm, sizeof *ck->m, cmp_member_name);

	/* the index, when present, says which files are shards */
	struct member *im = find_member(ck, QC_CKPT_INDEX_NAME);
	if (im) {
		char *p = member_path(ck, im->name), *data = NULL;
		size_t len;
		if (!p)
			return nomem();
		rc = qc_read_file(p, INDEX_MAX, &data, &len);
		free(p);
		if (rc)
			return rc;
		rc = parse_index(ck, data, len);
		free(data);
		if (rc)
			return rc;
		const char *k;
		json_t *v;
		json_object_foreach(ck->wmap, k, v) {
			const char *f = json_string_value(v);
			if (!find_member(ck, f))
				return bad(ck, "'%s' names '%s' for tensor '%s', but '%s/%s' is missing",
				           QC_CKPT_INDEX_NAME, f, k, ck->name, f);
		}
	}
	/* open every shard: map, validate, register */
	for (size_t i = 0; i < ck->nm; i++) {
		struct member *mb = &ck->m[i];
		if (mb->kind != MK_SHARD)
			continue;
		if (!ck->wmap && strcmp(mb->name, "model.safetensors") != 0)
			return bad(ck, "'%s' is not model.safetensors and there is no '%s'", mb->name,
			           QC_CKPT_INDEX_NAME);
		char *p = member_path(ck, mb->name);
		if (!p)
			return nomem();
		const void *map;
		size_t len;
		rc = qc_map(p, &map, &len);
		qc_st *st = NULL;
		if (rc == 0)
			rc = qc_st_open_mapped(&st, map, len, p);
		free(p);
		if (rc)
			return rc;
		rc = register_shard(ck, mb, st, 0);
		if (rc) {
			qc_st_close(st);
			return rc;
		}
		struct shard *s = &ck->sh[mb->shard];
		s->st = st;
		s->img = map;
		s->mapped = 1;
	}
	QC_TRY(check_whole(ck));
	sort_members(ck);
	return 0;
}

// ---------------------------------------------------------------- stream

/* A stream that failed stays failed: the position in it is lost. */
static int stream_fail(qc_ckpt *ck, int rc)
{
	if (rc < 0 && !ck->fail)
		ck->fail = rc;
	return rc;
}

/* Make sure a member header is pending, or the end was reached.
 * Returns 1 (pending), 0 (end), or an error. */
static int next_header(qc_ckpt *ck)
{
	if (ck->fail)
		return qc_seterr(ck->fail, "cannot read on in '%s' after an earlier error", ck->name);
	if (ck->eof)
		return 0;
	if (ck->pending)
		return 1;
	qc_tar_member tm;
	int r = qc_tar_next(ck->tar, &tm);
	if (r < 0)
		return stream_fail(ck, r);
	if (r == 0) {
		int rc = check_whole(ck);
		if (rc)
			return stream_fail(ck, rc);
		ck->eof = 1;
		ck->complete = INT_MAX;
		return 0;
	}
	if (find_member(ck, tm.name))
		return stream_fail(ck, bad(ck, "tar member '%s' appears twice", tm.name));
	free(ck->pm_name);
	ck->pm_name = strdup(tm.name);
	if (!ck->pm_name)
		return stream_fail(ck, nomem());
	ck->pm_size = tm.size;
	ck->pending = 1;
	return 1;
}

static int pending_kind(const qc_ckpt *ck)
{
	return member_kind(ck->pm_name);
}

/*
 * Read the rest of the current member, size bytes in all of which the first
 * hlen (head) were read already, into a malloc'd buffer with extra bytes
 * spare at the end. The buffer grows as the data arrives (doubling from one
 * chunk) instead of being allocated at the size the tar header claims: a
 * stream that lies about a size ends with "truncated" having allocated at
 * most twice what it delivered. Large reallocs move pages (mremap), they do
 * not copy them. hw, when not NULL, hashes what arrives.
 */
static int read_member(qc_ckpt *ck, const void *head, size_t hlen, uint64_t size, size_t extra,
                       qc_hwalk *hw, unsigned char **out)
{
	size_t cap = QC_CKPT_CHUNK;
	if (size + extra < cap)
		cap = (size_t)size + extra;
	if (cap < hlen + extra)
		cap = hlen + extra;
	unsigned char *buf = malloc(cap ? cap : 1);
	if (!buf)
		return qc_seterr(QC_ENOMEM, "cannot hold '%s' (%llu bytes) in memory", ck->pm_name,
		                 (unsigned long long)size);
	if (hlen)
		memcpy(buf, head, hlen);
	uint64_t off = hlen;
	while (off < size) {
		size_t k = size - off < QC_CKPT_CHUNK ? (size_t)(size - off) : QC_CKPT_CHUNK;
		if (off + k + extra > cap) {
			uint64_t want = (uint64_t)cap * 2;
			if (want > size + extra)
				want = size + extra;
			unsigned char *nb = realloc(buf, (size_t)want);
			if (!nb) {
				free(buf);
				return qc_seterr(QC_ENOMEM, "cannot hold '%s' (%llu bytes) in memory",
				                 ck->pm_name, (unsigned long long)size);
			}
			buf = nb;
			cap = (size_t)want;
		}
		int rc = qc_tar_read_full(ck->tar, buf + off, k);
		if (rc) {
			free(buf);
			return rc;
		}
		if (hw)
			qc_hwalk_feed(hw, buf + off, k);
		off += k;
	}
	*out = buf;
	return 0;
}

/* A small member (file, index, manifest): loaded whole, hashed. */
static int take_small(qc_ckpt *ck, int mode, qc_ckpt_list_fn fn, void *ctx, const qc_ckpt_msink *w)
{
	if (ck->pm_size > SMALL_MAX)
		return bad(ck, "tar member '%s' is too large for a small file (%llu bytes)", ck->pm_name,
		           (unsigned long long)ck->pm_size);
	unsigned char *ubuf = NULL;
	int rc = read_member(ck, NULL, 0, ck->pm_size, 1, NULL, &ubuf);
	if (rc)
		return rc;
	char *data = (char *)ubuf;
	data[ck->pm_size] = 0;
	struct member *mb = add_member(ck, ck->pm_name, ck->pm_size);
	if (!mb) {
		free(data);
		return QC_ENOMEM;
	}
	mb->data = data;
	mb->loaded = 1;
	mb->hash = qc_xxh3_128(data, (size_t)mb->size);
	mb->hashed = 1;
	ck->pending = 0;
	if (mb->kind == MK_INDEX)
		QC_TRY(parse_index(ck, data, (size_t)mb->size));
	if (mode == MODE_LIST && fn)
		return fn(ctx, mb->name, mb->size, NULL);
	if (mode == MODE_COPY)
		return w->add_file(w->ctx, mb->name, data, (size_t)mb->size);
	return 0;
}

/* Does the shard hold what the current request needs? */
static int shard_needed(const qc_ckpt *ck, const qc_st *st)
{
	for (size_t i = 0; i < qc_st_count(st); i++) {
		const char *n = qc_st_at(st, i)->name;
		if (ck->want_name && strcmp(n, ck->want_name) == 0)
			return 1;
		if (ck->want_group != NO_GROUP && qc_ckpt_group_of(n) <= ck->want_group)
			return 1;
	}
	return 0;
}

struct copy_ctx {
	qc_ckpt *ck;
	const unsigned char *head;  /* prefix + header */
	size_t head_len;
	uint64_t size;
};

static int copy_fill(void *vctx, qc_sink *sink)
{
	struct copy_ctx *c = vctx;
	QC_TRY(qc_sink_write(sink, c->head, c->head_len));
	uint64_t left = c->size - c->head_len;
	while (left > 0) {
		size_t k = left < QC_CKPT_CHUNK ? (size_t)left : QC_CKPT_CHUNK;
		QC_TRY(qc_tar_read_full(c->ck->tar, c->ck->chunk, k));
		QC_TRY(qc_sink_write(sink, c->ck->chunk, k));
		left -= k;
	}
	return 0;
}

/* Record the hashes a walk computed for shard s. */
static void store_hashes(qc_ckpt *ck, struct shard *s, qc_hwalk *hw, int file)
{
	struct member *mb = &ck->m[s->member];
	qc_h128 fh;
	qc_hwalk_finish(hw, &fh);
	if (file && hw->file) {
		mb->hash = fh;
		mb->hashed = 1;
	}
	if (hw->t)
		for (size_t i = 0; i < s->count; i++) {
			ck->t[s->first + i].hash = hw->out[i];
			ck->t[s->first + i].hashed = 1;
		}
}

/* A shard member: header first, then the data according to mode. */
static int take_shard(qc_ckpt *ck, int mode, qc_ckpt_list_fn fn, void *ctx, const qc_ckpt_msink *w)
{
	uint64_t size = ck->pm_size;
	unsigned char prefix[8];
	qc_st *hst = NULL, *st = NULL;
	unsigned char *head = NULL, *buf = NULL;
	int rc = 0, fd = -1;
	char *spill = NULL;
	qc_hwalk hw = { 0 };
	if (size < 8)
		return bad(ck, "invalid safetensors file '%s': truncated to %llu bytes", ck->pm_name,
		           (unsigned long long)size);
	QC_TRY(qc_tar_read_full(ck->tar, prefix, 8));
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | prefix[i];
	/* a length that does not fit is refused before anything is allocated */
	if (n < 2 || n > QC_ST_MAX_HEADER || n > size - 8)
		return qc_st_open_header(&hst, NULL, n > SIZE_MAX ? SIZE_MAX : (size_t)n, size, ck->pm_name);
	size_t head_len = 8 + (size_t)n;
	head = malloc(head_len);
	if (!head)
		return nomem();
	memcpy(head, prefix, 8);
	if ((rc = qc_tar_read_full(ck->tar, head + 8, (size_t)n)) != 0)
		goto out;
	if ((rc = qc_st_open_header(&hst, head + 8, (size_t)n, size, ck->pm_name)) != 0)
		goto out;
	struct member *mb = add_member(ck, ck->pm_name, size);
	if (!mb) {
		rc = QC_ENOMEM;
		goto out;
	}
	ck->pending = 0;
	if ((rc = register_shard(ck, mb, hst, 1)) != 0)
		goto out;
	struct shard *s = &ck->sh[mb->shard];
	if (!ck->chunk && !(ck->chunk = malloc(QC_CKPT_CHUNK))) {
		rc = nomem();
		goto out;
	}

	if (mode == MODE_LIST) {
		if (fn && (rc = fn(ctx, mb->name, size, NULL)) != 0)
			goto out;
		for (size_t i = 0; fn && i < qc_st_count(hst); i++)
			if ((rc = fn(ctx, mb->name, size, qc_st_at(hst, i))) != 0)
				goto out;
		s->gone = 1;            /* qc_tar_next skips the data */
		goto out;
	}
	if (mode == MODE_COPY) {
		struct copy_ctx c = { ck, head, head_len, size };
		rc = w->add_member(w->ctx, mb->name, size, copy_fill, &c);
		s->gone = 1;
		goto out;
	}
	int hashing = mode == MODE_DROP || ck->hash_tensors;
	if (hashing && (rc = qc_hwalk_init(&hw, hst, 1, 1)) != 0)
		goto out;
	if (hashing)
		qc_hwalk_feed(&hw, head, head_len);
	uint64_t left = size - head_len;

	if (mode == MODE_DROP) {
		while (left > 0) {
			size_t k = left < QC_CKPT_CHUNK ? (size_t)left : QC_CKPT_CHUNK;
			if ((rc = qc_tar_read_full(ck->tar, ck->chunk, k)) != 0)
				goto out;
			qc_hwalk_feed(&hw, ck->chunk, k);
			left -= k;
		}
		store_hashes(ck, s, &hw, 1);
		s->gone = 1;
		goto out;
	}

	/* MODE_HOLD: memory when needed (and not alone over the limit) or when it
	 * fits under the limit with what is held already; else spill. */
	int needed = shard_needed(ck, hst);
	int in_mem = needed ? size <= ck->mem_limit : ck->held + size <= ck->mem_limit;
	if (in_mem) {
		if ((rc = read_member(ck, head, head_len, size, 0, hashing ? &hw : NULL, &buf)) != 0)
			goto out;
		rc = qc_st_open_mem(&st, buf, (size_t)size, 1, mb->name);
		s->img = buf;
		buf = NULL;             /* owned by st now, even on failure */
		if (rc)
			goto out;
		s->in_mem = 1;
		ck->held += size;
	} else {
		if (!ck->spilldir && (rc = qc_mkdtemp(&ck->spilldir, ck->tmpdir, "qckpt-spill-")) != 0)
			goto out;
		spill = qc_path_join(ck->spilldir, mb->name);
		if (!spill) {
			rc = nomem();
			goto out;
		}
		fd = open(spill, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			rc = qc_seterr(QC_EIO, "cannot create spill file '%s':", spill);
			goto out;
		}
		qc_sink sk;
		qc_sink_fd(&sk, fd, spill);
		rc = qc_sink_write(&sk, head, head_len);
		while (rc == 0 && left > 0) {
			size_t k = left < QC_CKPT_CHUNK ? (size_t)left : QC_CKPT_CHUNK;
			if ((rc = qc_tar_read_full(ck->tar, ck->chunk, k)) != 0)
				break;
			if (hashing)
				qc_hwalk_feed(&hw, ck->chunk, k);
			rc = qc_sink_write(&sk, ck->chunk, k);
			left -= k;
		}
		if (close(fd) != 0 && rc == 0)
			rc = qc_seterr(QC_EIO, "write error on spill file '%s':", spill);
		fd = -1;
		const void *map = NULL;
		size_t len = 0;
		if (rc == 0)
			rc = qc_map(spill, &map, &len);
		if (rc == 0)
			rc = qc_st_open_mapped(&st, map, len, mb->name);
		if (rc) {
			unlink(spill);
			goto out;
		}
		s->img = map;
		s->mapped = 1;
		s->spill = spill;
		spill = NULL;
	}
	if (hashing)
		store_hashes(ck, s, &hw, 1);
	s->st = st;
	st = NULL;
out:
	if (fd >= 0) {
		close(fd);
		unlink(spill);
	}
	qc_hwalk_release(&hw);
	free(spill);
	free(buf);
	free(head);
	qc_st_close(hst);
	qc_st_close(st);
	return rc;
}

/* Process the pending member; 0 or an error (which breaks the stream). */
static int take_pending(qc_ckpt *ck, int mode, qc_ckpt_list_fn fn, void *ctx, const qc_ckpt_msink *w)
{
	int rc = pending_kind(ck) == MK_SHARD ? take_shard(ck, mode, fn, ctx, w)
	                                      : take_small(ck, mode, fn, ctx, w);
	return stream_fail(ck, rc);
}

/* Read one member forward in HOLD mode; 1 when one was read, 0 at the end. */
static int step_hold(qc_ckpt *ck)
{
	int r = next_header(ck);
	if (r <= 0)
		return r;
	QC_TRY(take_pending(ck, MODE_HOLD, NULL, NULL, NULL));
	return 1;
}

static int open_stream(qc_ckpt *ck, const char *path)
{
	QC_TRY(qc_source_open(&ck->src, path));
	QC_TRY(qc_tar_reader_new(&ck->tar, ck->src));
	ck->complete = QC_GROUP_PRE - 1;
	/* the small files before the first shard */
	for (;;) {
		int r = next_header(ck);
		if (r < 0)
			return r;
		if (r == 0 || pending_kind(ck) == MK_SHARD)
			return 0;
		QC_TRY(take_pending(ck, MODE_HOLD, NULL, NULL, NULL));
	}
}

// ---------------------------------------------------------------- open / close

int qc_ckpt_open(qc_ckpt **out, const char *path, const qc_ckpt_opts *opts)
{
	*out = NULL;
	qc_ckpt *ck = calloc(1, sizeof *ck);
	if (!ck)
		return nomem();
	int rc = 0;
	ck->want_group = NO_GROUP;
	ck->mem_limit = opts && opts->stream_mem_limit ? opts->stream_mem_limit : DEFAULT_MEM_LIMIT;
	ck->hash_tensors = opts ? opts->hash_tensors : 0;
	ck->stream = strcmp(path, "-") == 0 || !qc_is_dir(path);
	ck->name = strdup(strcmp(path, "-") == 0 ? "<stdin>" : path);
	if (!ck->name || (opts && opts->tmpdir && !(ck->tmpdir = strdup(opts->tmpdir)))) {
		rc = nomem();
		goto fail;
	}
	rc = ck->stream ? open_stream(ck, path) : open_dir(ck);
	if (rc)
		goto fail;
	*out = ck;
	return 0;
fail:
	qc_ckpt_close(ck);
	return rc;
}

static void shard_drop(qc_ckpt *ck, struct shard *s)
{
	if (s->in_mem)
		ck->held -= ck->m[s->member].size;
	s->in_mem = 0;
	qc_st_close(s->st);
	s->st = NULL;
	s->img = NULL;
	if (s->spill) {
		unlink(s->spill);
		free(s->spill);
		s->spill = NULL;
	}
	s->gone = 1;
}

void qc_ckpt_close(qc_ckpt *ck)
{
	if (!ck)
		return;
	for (size_t i = 0; i < ck->nsh; i++)
		shard_drop(ck, &ck->sh[i]);
	for (size_t i = 0; i < ck->nm; i++) {
		free(ck->m[i].name);
		free(ck->m[i].data);
	}
	for (size_t i = 0; i < ck->nt; i++)
		free(ck->t[i].name);
	if (ck->spilldir)
		qc_rmtree(ck->spilldir);
	qc_tar_reader_free(ck->tar);
	qc_source_close(ck->src);
	json_decref(ck->index);
	qc_manifest_free(ck->man);
	free(ck->spilldir);
	free(ck->chunk);
	free(ck->pm_name);
	free(ck->m);
	free(ck->sh);
	free(ck->t);
	free(ck->tab);
	free(ck->gnames);
	free(ck->allnames);
	free(ck->fnames);
	free(ck->tmpdir);
	free(ck->name);
	free(ck);
}

const char *qc_ckpt_name(const qc_ckpt *ck) { return ck->name; }
int qc_ckpt_is_stream(const qc_ckpt *ck) { return ck->stream; }

// ---------------------------------------------------------------- files

static int load_member(qc_ckpt *ck, struct member *mb)
{
	if (mb->loaded)
		return 0;
	char *p = member_path(ck, mb->name);
	if (!p)
		return nomem();
	size_t len;
	int rc = qc_read_file(p, SMALL_MAX, &mb->data, &len);
	free(p);
	if (rc)
		return rc;
	mb->size = len;
	mb->loaded = 1;
	return 0;
}

int qc_ckpt_file(qc_ckpt *ck, const char *name, const void **data, size_t *len)
{
	*data = NULL;
	*len = 0;
	struct member *mb = find_member(ck, name);
	while (!mb && ck->stream) {
		int r = step_hold(ck);
		if (r < 0)
			return r;
		if (r == 0)
			break;
		mb = find_member(ck, name);
	}
	if (!mb || mb->kind == MK_SHARD)
		return qc_seterr(QC_ENOTFOUND, "no file '%s' in '%s'", name, ck->name);
	QC_TRY(load_member(ck, mb));
	*data = mb->data;
	*len = (size_t)mb->size;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void build_fnames(qc_ckpt *ck)
{
	size_t n = 0;
	const char **a = malloc((ck->nm ? ck->nm : 1) * sizeof *a);
	if (!a)
		return;             /* the count reads 0; nothing else to do */
	for (size_t i = 0; i < ck->nm; i++)
		if (ck->m[i].kind == MK_FILE)
			a[n++] = ck->m[i].name;
	qsort(a, n, sizeof *a, cmp_str);
	free(ck->fnames);
	ck->fnames = a;
	ck->nfnames = n;
}

size_t qc_ckpt_file_count(const qc_ckpt *ck)
{
	build_fnames((qc_ckpt *)ck);
	return ck->nfnames;
}

const char *qc_ckpt_file_name(const qc_ckpt *ck, size_t i)
{
	if (!ck->fnames)
		build_fnames((qc_ckpt *)ck);
	return i < ck->nfnames ? ck->fnames[i] : NULL;
}

// ---------------------------------------------------------------- tensors

int qc_ckpt_get(qc_ckpt *ck, const char *name, const qc_tensor **out)
{
	*out = NULL;
	ck->touched = 1;
	struct tensor *t = find_tensor(ck, name);
	if (!t && ck->stream) {
		ck->want_name = name;
		for (;;) {
			int r = step_hold(ck);
			if (r <= 0) {
				ck->want_name = NULL;
				if (r < 0)
					return r;
				break;
			}
			if ((t = find_tensor(ck, name)) != NULL)
				break;
		}
		ck->want_name = NULL;
	}
	if (!t)
		return qc_seterr(QC_ENOTFOUND, "no tensor '%s' in '%s'", name, ck->name);
	struct shard *s = &ck->sh[t->shard];
	if (t->released && ck->stream)
		return qc_seterr(QC_EINVAL, "tensor '%s' of '%s' was already released", name, ck->name);
	if (!s->st)
		return qc_seterr(QC_EINVAL, "tensor '%s' of '%s' is no longer available (the stream "
		                 "was read past it without keeping it)", name, ck->name);
	*out = qc_st_at(s->st, t->idx);
	return 0;
}

static void drop_pages(const qc_tensor *v)
{
	static long page;
	if (!page)
		page = sysconf(_SC_PAGESIZE);
	if (page <= 0 || !v || v->nbytes == 0)
		return;
	uintptr_t b = (uintptr_t)v->data, e = b + v->nbytes;
	uintptr_t b1 = (b + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
	uintptr_t e1 = e & ~((uintptr_t)page - 1);
	if (e1 > b1)
		(void)madvise((void *)b1, e1 - b1, MADV_DONTNEED);
}

int qc_ckpt_hold(qc_ckpt *ck, const char *name)
{
	struct tensor *t = find_tensor(ck, name);
	if (!t)
		return qc_seterr(QC_ENOTFOUND, "no tensor '%s' in '%s'", name, ck->name);
	if (t->released && ck->stream)
		return qc_seterr(QC_EINVAL, "tensor '%s' of '%s' was already released", name, ck->name);
	t->holds++;
	return 0;
}

void qc_ckpt_unhold(qc_ckpt *ck, const char *name)
{
	struct tensor *t = find_tensor(ck, name);
	if (!t || t->holds == 0)
		return;
	if (--t->holds == 0 && t->release_wanted) {
		t->release_wanted = 0;
		qc_ckpt_release(ck, name);
	}
}

void qc_ckpt_release(qc_ckpt *ck, const char *name)
{
	struct tensor *t = find_tensor(ck, name);
	if (!t || t->released)
		return;
	if (t->holds > 0) { /* a holder still reads it: released at the last unhold */
		t->release_wanted = 1;
		return;
	}
	t->released = 1;
	struct shard *s = &ck->sh[t->shard];
	if (s->live)
		s->live--;
	/* a stream shard is freed when the last of its tensors is released; a
	 * directory keeps its mappings (the page cache owns that memory) but
	 * drops the tensor's whole pages from this process, so that reading a
	 * checkpoint layer by layer keeps about one layer resident (the pages
	 * come back from the page cache if the tensor is read again) */
	if (ck->stream && s->live == 0 && s->st)
		shard_drop(ck, s);
	else if (!ck->stream && s->st)
		drop_pages(qc_st_at(s->st, t->idx));
}

int qc_ckpt_group_names(qc_ckpt *ck, int group, const char *const **names, size_t *n)
{
	*names = NULL;
	*n = 0;
	ck->touched = 1;
	if (ck->stream) {
		ck->want_group = group;
		while (ck->complete < group) {
			int r = step_hold(ck);
			if (r < 0) {
				ck->want_group = NO_GROUP;
				return r;
			}
			if (r == 0)
				break;
		}
		ck->want_group = NO_GROUP;
	}
	size_t k = 0;
	for (size_t i = 0; i < ck->nt; i++)
		k += ck->t[i].group == group;
	const char **a = malloc((k ? k : 1) * sizeof *a);
	if (!a)
		return nomem();
	k = 0;
	for (size_t i = 0; i < ck->nt; i++)
		if (ck->t[i].group == group)
			a[k++] = ck->t[i].name;
	qsort(a, k, sizeof *a, cmp_str);
	free(ck->gnames);
	ck->gnames = a;
	ck->ngnames = k;
	*names = a;
	*n = k;
	return 0;
}

int qc_ckpt_read_all(qc_ckpt *ck)
{
	if (!ck->stream)
		return 0;
	ck->touched = 1;
	int r;
	while ((r = step_hold(ck)) > 0)
		;
	return r;
}

int qc_ckpt_tensor_names(qc_ckpt *ck, const char *const **names, size_t *n)
{
	const char **a = malloc((ck->nt ? ck->nt : 1) * sizeof *a);
	*names = NULL;
	*n = 0;
	if (!a)
		return nomem();
	for (size_t i = 0; i < ck->nt; i++)
		a[i] = ck->t[i].name;
	qsort(a, ck->nt, sizeof *a, cmp_str);
	free(ck->allnames);
	ck->allnames = a;
	ck->nallnames = ck->nt;
	*names = a;
	*n = ck->nt;
	return 0;
}

// ---------------------------------------------------------------- hashing, manifest

int qc_ckpt_manifest(qc_ckpt *ck, const qc_manifest **out)
{
	*out = NULL;
	if (ck->man_done) {
		*out = ck->man;
		return 0;
	}
	const void *data;
	size_t len;
	int rc = qc_ckpt_file(ck, QC_MANIFEST_NAME, &data, &len);
	if (rc == QC_ENOTFOUND) {
		ck->man_done = 1;
		return 0;
	}
	/* the manifest is a stream's last member: read on to the end-of-archive
	 * blocks, so that a stream cut after it is an error like any other cut */
	if (rc == 0 && ck->stream)
		rc = qc_ckpt_read_all(ck);
	if (rc)
		return rc;
	rc = qc_manifest_parse(&ck->man, data, len);
	if (rc)
		return qc_errctx(rc, "cannot read '%s' of '%s'", QC_MANIFEST_NAME, ck->name);
	ck->man_done = 1;
	*out = ck->man;
	return 0;
}

/* Hash a shard whose whole image is at hand (directory map, held stream
 * shard), one pass for the file and its tensors. */
static int hash_image(qc_ckpt *ck, struct shard *s)
{
	qc_hwalk hw;
	QC_TRY(qc_hwalk_init(&hw, s->st, 1, 1));
	uint64_t size = ck->m[s->member].size;
	if (s->mapped)
		(void)madvise((void *)s->img, (size_t)size, MADV_SEQUENTIAL);
	for (uint64_t off = 0; off < size; off += QC_CKPT_CHUNK) {
		size_t k = size - off < QC_CKPT_CHUNK ? (size_t)(size - off) : QC_CKPT_CHUNK;
		qc_hwalk_feed(&hw, s->img + off, k);
	}
	store_hashes(ck, s, &hw, 1);
	qc_hwalk_release(&hw);
	return 0;
}

/* Hash one member that has no hash yet (see hash_all). */
static int hash_member(qc_ckpt *ck, struct member *mb)
{
	if (mb->kind == MK_SHARD) {
		struct shard *s = &ck->sh[mb->shard];
		if (mb->hashed && (s->count == 0 || ck->t[s->first].hashed))
			return 0;
		if (!s->st)
			return qc_seterr(QC_EINVAL, "cannot hash '%s' of '%s': its tensors were released "
			                 "before they were hashed", mb->name, ck->name);
		return hash_image(ck, s);
	}
	if (mb->hashed)
		return 0;
	if (ck->stream || mb->loaded) {
		QC_TRY(load_member(ck, mb));
		mb->hash = qc_xxh3_128(mb->data, (size_t)mb->size);
	} else {
		/* directory files are read in blocks, not kept */
		char *p = member_path(ck, mb->name);
		if (!p)
			return nomem();
		int rc = qc_hash_file(p, &mb->hash, &mb->size);
		free(p);
		QC_TRY(rc);
	}
	mb->hashed = 1;
	return 0;
}

/* Directory members are hashed by a few threads, one member at a time each:
 * one thread alone leaves the device idle while it hashes (reads overlap
 * with hashing only across threads). Every member's fields belong to the
 * one thread that took it. */
struct hash_job {
	qc_ckpt *ck;
	size_t next;            /* next member to take (under lock) */
	int stop;               /* a part failed: take no more */
	pthread_mutex_t lock;
};

static int hash_part(void *arg, int part, int nparts)
{
	(void)part;
	(void)nparts;
	struct hash_job *j = arg;
	for (;;) {
		pthread_mutex_lock(&j->lock);
		size_t i = j->next++;
		int stop = j->stop;
		pthread_mutex_unlock(&j->lock);
		if (stop || i >= j->ck->nm)
			return 0;
		int rc = hash_member(j->ck, &j->ck->m[i]);
		if (rc) {
			pthread_mutex_lock(&j->lock);
			j->stop = 1;
			pthread_mutex_unlock(&j->lock);
			return rc;
		}
	}
}

static int hash_members(qc_ckpt *ck)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	size_t nt = ncpu < 1 ? 1 : ncpu > HASH_THREADS ? HASH_THREADS : (size_t)ncpu;
	if (nt > ck->nm)
		nt = ck->nm;
	if (ck->stream || nt <= 1) {
		for (size_t i = 0; i < ck->nm; i++)
			QC_TRY(hash_member(ck, &ck->m[i]));
		return 0;
	}
	struct hash_job j = { .ck = ck };
	pthread_mutex_init(&j.lock, NULL);
	/* the failure (code and message) of the lowest-numbered part that had one */
	int rc = qc_pool_run((int)nt, hash_part, &j);
	pthread_mutex_destroy(&j.lock);
	return rc;
}

/* Every member and tensor hashed (reading a stream through). */
static int hash_all(qc_ckpt *ck)
{
	QC_TRY(hash_members(ck));
	if (ck->stream) {
		ck->touched = 1;
		for (;;) {
			int r = next_header(ck);
			if (r < 0)
				return r;
			if (r == 0)
				break;
			QC_TRY(take_pending(ck, MODE_DROP, NULL, NULL, NULL));
		}
	}
	return 0;
}

int qc_ckpt_hash(qc_ckpt *ck, qc_manifest *m)
{
	QC_TRY(hash_all(ck));
	for (size_t i = 0; i < ck->nm; i++) {
		const struct member *mb = &ck->m[i];
		if (mb->kind != MK_MANIFEST)
			QC_TRY(qc_manifest_set_file(m, mb->name, mb->size, mb->hash));
	}
	for (size_t i = 0; i < ck->nt; i++) {
		const struct tensor *t = &ck->t[i];
		QC_TRY(qc_manifest_set_tensor(m, t->name, t->dt, t->ndim, t->shape, t->hash));
	}
	return 0;
}

int qc_ckpt_fingerprint(qc_ckpt *ck, char out[33])
{
	qc_manifest *m = qc_manifest_new();
	if (!m)
		return nomem();
	int rc = qc_ckpt_hash(ck, m);
	if (rc == 0)
		rc = qc_manifest_fingerprint(m, out);
	qc_manifest_free(m);
	return rc;
}

static int mismatch(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int mismatch(const char *fmt, ...)
{
	char d[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d, sizeof d, fmt, ap);
	va_end(ap);
	return qc_seterr(QC_EINTEGRITY, "%s", d);
}

static int same_shape(int na, const int64_t *a, int nb, const int64_t *b)
{
	if (na != nb)
		return 0;
	for (int i = 0; i < na; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

int qc_ckpt_verify(qc_ckpt *ck)
{
	if (!ck->stream && !find_member(ck, QC_MANIFEST_NAME))
		return qc_seterr(QC_ENOTFOUND, "cannot verify '%s': it has no %s", ck->name, QC_MANIFEST_NAME);
	QC_TRY(hash_all(ck));
	const qc_manifest *man;
	QC_TRY(qc_ckpt_manifest(ck, &man));
	if (!man)
		return qc_seterr(QC_ENOTFOUND, "cannot verify '%s': it has no %s", ck->name, QC_MANIFEST_NAME);
	char a[33], b[33], sa[160], sb[160];
	for (size_t i = 0; i < ck->nm; i++) {
		const struct member *mb = &ck->m[i];
		if (mb->kind == MK_MANIFEST)
			continue;
		uint64_t size;
		qc_h128 h;
		if (qc_manifest_file(man, mb->name, &size, &h) != 0)
			return mismatch("file '%s' of '%s' is not in the manifest", mb->name, ck->name);
		if (mb->kind == MK_SHARD) {
			const struct shard *s = &ck->sh[mb->shard];
			for (size_t k = 0; k < s->count; k++) {
				const struct tensor *t = &ck->t[s->first + k];
				qc_dtype dt;
				int nd;
				int64_t shape[QC_MAX_DIMS];
				uint64_t th;
				if (qc_manifest_tensor(man, t->name, &dt, &nd, shape, &th) != 0)
					return mismatch("tensor '%s' in '%s' is not in the manifest", t->name, mb->name);
				if (dt != t->dt || !same_shape(nd, shape, t->ndim, t->shape)) {
					qc_shape_str(sa, sizeof sa, t->ndim, t->shape);
					qc_shape_str(sb, sizeof sb, nd, shape);
					return mismatch("tensor '%s' in '%s' is %s %s, the manifest records %s %s",
					                t->name, mb->name, qc_dtype_name(t->dt), sa,
					                qc_dtype_name(dt), sb);
				}
				if (th != t->hash)
					return mismatch("tensor '%s' in '%s' does not match the manifest "
					                "(xxh3_64 %s, recorded %s)", t->name, mb->name,
					                qc_h64_hex(t->hash, a), qc_h64_hex(th, b));
			}
		}
		if (size != mb->size)
			return mismatch("file '%s' of '%s' does not match the manifest (%llu bytes, "
			                "recorded %llu)", mb->name, ck->name,
			                (unsigned long long)mb->size, (unsigned long long)size);
		if (!qc_h128_eq(h, mb->hash))
			return mismatch("file '%s' of '%s' does not match the manifest (xxh3_128 %s, "
			                "recorded %s)", mb->name, ck->name, qc_h128_hex(mb->hash, a),
			                qc_h128_hex(h, b));
	}
	for (size_t i = 0; i < qc_manifest_file_count(man); i++) {
		const char *f = qc_manifest_file_name(man, i);
		if (!find_member(ck, f))
			return mismatch("file '%s' listed in the manifest is missing from '%s'", f, ck->name);
	}
	for (size_t i = 0; i < qc_manifest_tensor_count(man); i++) {
		const char *t = qc_manifest_tensor_name(man, i);
		if (!find_tensor(ck, t))
			return mismatch("tensor '%s' listed in the manifest is missing from '%s'", t, ck->name);
	}
	return 0;
}

// ---------------------------------------------------------------- members: list and copy

/* A directory whose shards, in canonical order, would break the layer-order
 * rule cannot be written as a stream. */
static int dir_streamable(const qc_ckpt *ck)
{
	int complete = QC_GROUP_PRE - 1;
	for (size_t i = 0; i < ck->nm; i++) {
		const struct member *mb = &ck->m[i];
		if (mb->kind != MK_SHARD)
			continue;
		size_t badi;
		int r = qc_ckpt__order(&complete, ck->sh[mb->shard].st, &badi, NULL, NULL);
		if (r == -2)
			return bad(ck, "bad %s in '%s'", QC_CKPT_META_GROUPS, mb->name);
		if (r == -1) {
			char gd[48];
			const char *tn = qc_st_at(ck->sh[mb->shard].st, badi)->name;
			return bad(ck, "its shards cannot be streamed in layer order: '%s' holds tensor '%s' "
			           "of %s after earlier shards completed it (re-shard it by layer)", mb->name, tn,
			           qc_ckpt__group_desc(qc_ckpt_group_of(tn), gd));
		}
	}
	return 0;
}

int qc_ckpt_list(qc_ckpt *ck, qc_ckpt_list_fn fn, void *ctx)
{
	if (ck->touched)
		return qc_seterr(QC_EINVAL, "cannot list '%s': tensors were already read", ck->name);
	ck->touched = 1;
	if (!ck->stream) {
		for (size_t i = 0; i < ck->nm; i++) {
			const struct member *mb = &ck->m[i];
			QC_TRY(fn(ctx, mb->name, mb->size, NULL));
			if (mb->kind != MK_SHARD)
				continue;
			const qc_st *st = ck->sh[mb->shard].st;
			for (size_t k = 0; k < qc_st_count(st); k++) {
				qc_tensor v = *qc_st_at(st, k);
				v.data = NULL;
				QC_TRY(fn(ctx, mb->name, mb->size, &v));
			}
		}
		return 0;
	}
	/* members read at open first, then the rest as it comes */
	for (size_t i = 0; i < ck->nm; i++)
		QC_TRY(fn(ctx, ck->m[i].name, ck->m[i].size, NULL));
	for (;;) {
		int r = next_header(ck);
		if (r < 0)
			return r;
		if (r == 0)
			return 0;
		QC_TRY(take_pending(ck, MODE_LIST, fn, ctx, NULL));
	}
}

struct map_fill {
	const unsigned char *data;
	uint64_t size;
	const char *path;
};

static int map_fill(void *vctx, qc_sink *sink)
{
	struct map_fill *f = vctx;
	return qc_sink_write(sink, f->data, (size_t)f->size);
}

int qc_ckpt__copy_members(qc_ckpt *ck, const qc_ckpt_msink *w)
{
	if (ck->touched)
		return qc_seterr(QC_EINVAL, "cannot copy '%s': tensors were already read", ck->name);
	ck->touched = 1;
	if (!ck->stream) {
		QC_TRY(dir_streamable(ck));
		for (size_t i = 0; i < ck->nm; i++) {
			struct member *mb = &ck->m[i];
			if (mb->kind == MK_SHARD) {
				struct shard *s = &ck->sh[mb->shard];
				struct map_fill f = { s->img, mb->size, mb->name };
				(void)madvise((void *)s->img, (size_t)mb->size, MADV_SEQUENTIAL);
				QC_TRY(w->add_member(w->ctx, mb->name, mb->size, map_fill, &f));
				continue;
			}
			/* small files: mapped rather than loaded, so big extras cost nothing */
			char *p = member_path(ck, mb->name);
			if (!p)
				return nomem();
			const void *map;
			size_t len;
			int rc = qc_map(p, &map, &len);
			free(p);
			QC_TRY(rc);
			struct map_fill f = { map, len, mb->name };
			rc = w->add_member(w->ctx, mb->name, len, map_fill, &f);
			qc_unmap(map, len);
			QC_TRY(rc);
		}
		return 0;
	}
	for (size_t i = 0; i < ck->nm; i++)
		QC_TRY(w->add_file(w->ctx, ck->m[i].name, ck->m[i].data, (size_t)ck->m[i].size));
	for (;;) {
		int r = next_header(ck);
		if (r < 0)
			return r;
		if (r == 0)
			return 0;
		QC_TRY(take_pending(ck, MODE_COPY, NULL, NULL, w));
	}
}
