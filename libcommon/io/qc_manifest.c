/*
 * qc_manifest.c - quant_manifest.json (see qc_manifest.h).
 *
 * In memory a manifest is plain C: arrays of files and tensors kept sorted by
 * name (binary search for lookups, memmove to insert: a 405B checkpoint has
 * about 1,100 tensors, so this is cheap), and history and token sets in
 * insertion order. JSON is built only to read or write, with jansson for
 * parsing and qc_json for the deterministic dump.
 */
#include "qc_manifest.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_io.h"
#include "qc_json.h"
#include "qc_vec.h"

#define MANIFEST_FORMAT "qtoolkit-manifest"
#define MANIFEST_VERSION 1
/* the manifest's hash of itself (qc_manifest.h) */
#define SELF_KEY "self_xxh3_128"
#define SELF_ZERO "00000000000000000000000000000000"

typedef struct hist_entry {
	char *tool, *version;
	char **argv;
	int argc;
} hist_entry;

typedef struct tset_entry {
	char *role;
	qc_h128 hash;
} tset_entry;

typedef struct file_entry {
	char *name;
	uint64_t size;
	qc_h128 hash;
} file_entry;

typedef struct tensor_entry {
	char *name;
	qc_dtype dt;
	int ndim;
	int64_t shape[QC_MAX_DIMS];
	uint64_t hash;
} tensor_entry;

struct qc_manifest {
	hist_entry *hist;
	size_t n_hist, cap_hist;
	tset_entry *tsets;
	size_t n_tsets, cap_tsets;
	file_entry *files;          /* sorted by name (strcmp) */
	size_t n_files, cap_files;
	tensor_entry *tensors;      /* sorted by name (strcmp) */
	size_t n_tensors, cap_tensors;
	char *base_fp, *base_src;   /* base_fp NULL when unset; base_src may be NULL */
	char fingerprint[33];       /* "" when unset */
};

// ---------------------------------------------------------------- memory

static int oom(void)
{
	return qc_seterr(QC_ENOMEM, "cannot build manifest: out of memory");
}

static void hist_clear(hist_entry *h)
{
	free(h->tool);
	free(h->version);
	for (int i = 0; i < h->argc; i++)
		free(h->argv[i]);
	free(h->argv);
}

static void clear_carried(qc_manifest *m)
{
	for (size_t i = 0; i < m->n_hist; i++)
		hist_clear(&m->hist[i]);
	m->n_hist = 0;
	for (size_t i = 0; i < m->n_tsets; i++)
		free(m->tsets[i].role);
	m->n_tsets = 0;
	free(m->base_fp);
	free(m->base_src);
	m->base_fp = m->base_src = NULL;
}

qc_manifest *qc_manifest_new(void)
{
	return calloc(1, sizeof(qc_manifest));
}

void qc_manifest_free(qc_manifest *m)
{
	if (!m)
		return;
	clear_carried(m);
	free(m->hist);
	free(m->tsets);
	for (size_t i = 0; i < m->n_files; i++)
		free(m->files[i].name);
	free(m->files);
	for (size_t i = 0; i < m->n_tensors; i++)
		free(m->tensors[i].name);
	free(m->tensors);
	free(m);
}

// ---------------------------------------------------------------- building

static int is_hex(const char *s, size_t n)
{
	size_t i = 0;
	for (; s[i] && i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return i == n && s[i] == 0;
}

int qc_manifest_add_history(qc_manifest *m, const char *tool, const char *version,
                            int argc, char *const *argv)
{
	if (!tool || !*tool || !version || argc < 0 || (argc > 0 && !argv))
		return qc_seterr(QC_EINVAL, "cannot add history entry: tool, version and argv are required");
	QC_TRY(qc_grow((void **)&m->hist, &m->cap_hist, m->n_hist + 1, sizeof *m->hist));
	hist_entry h = { strdup(tool), strdup(version), calloc((size_t)argc + 1, sizeof(char *)), 0 };
	int bad = !h.tool || !h.version || !h.argv;
	for (int i = 0; !bad && i < argc; i++, h.argc++)
		bad = !(h.argv[i] = strdup(argv[i] ? argv[i] : ""));
	if (bad) {
		hist_clear(&h);
		return oom();
	}
	m->hist[m->n_hist++] = h;
	return 0;
}

int qc_manifest_set_base(qc_manifest *m, const char *fingerprint_hex, const char *source)
{
	if (!fingerprint_hex || !is_hex(fingerprint_hex, 32))
		return qc_seterr(QC_EINVAL, "invalid base fingerprint '%.40s': expected 32 lower-case hex digits",
		                 fingerprint_hex ? fingerprint_hex : "(null)");
	char *fp = strdup(fingerprint_hex);
	char *src = source ? strdup(source) : NULL;
	if (!fp || (source && !src)) {
		free(fp);
		free(src);
		return oom();
	}
	free(m->base_fp);
	free(m->base_src);
	m->base_fp = fp;
	m->base_src = src;
	return 0;
}

int qc_manifest_add_token_set(qc_manifest *m, const char *role, qc_h128 hash)
{
	if (!role || !*role)
		return qc_seterr(QC_EINVAL, "cannot add token set: role is required");
	QC_TRY(qc_grow((void **)&m->tsets, &m->cap_tsets, m->n_tsets + 1, sizeof *m->tsets));
	char *r = strdup(role);
	if (!r)
		return oom();
	m->tsets[m->n_tsets++] = (tset_entry){ r, hash };
	return 0;
}

/* Index of name in a sorted array of n entries whose first member is the
 * name, or the insertion point as -(pos + 1). */
static ptrdiff_t find_sorted(const void *arr, size_t n, size_t elem, const char *name)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *k = *(char *const *)((const char *)arr + mid * elem);
		int c = strcmp(k, name);
		if (c == 0)
			return (ptrdiff_t)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -(ptrdiff_t)lo - 1;
}

/* Find or insert name's slot; *fresh says whether it was inserted (with
 * the name set and the rest zeroed). */
static int upsert(void **arr, size_t *n, size_t *cap, size_t elem, const char *name, size_t *at,
                  int *fresh)
{
	ptrdiff_t i = find_sorted(*arr, *n, elem, name);
	if (i >= 0) {
		*at = (size_t)i;
		*fresh = 0;
		return 0;
	}
	size_t pos = (size_t)(-i - 1);
	char *copy = strdup(name);
	if (!copy)
		return oom();
	int rc = qc_grow(arr, cap, *n + 1, elem);
	if (rc) {
		free(copy);
		return rc;
	}
	char *base = *arr;
	memmove(base + (pos + 1) * elem, base + pos * elem, (*n - pos) * elem);
	memset(base + pos * elem, 0, elem);
	*(char **)(base + pos * elem) = copy;
	(*n)++;
	*at = pos;
	*fresh = 1;
	return 0;
}

int qc_manifest_set_file(qc_manifest *m, const char *name, uint64_t size, qc_h128 hash)
{
	/* names are joined to the checkpoint directory by verifiers: plain
	 * names only, as the checkpoint writer makes them */
	if (!name || !qc_safe_filename(name))
		return qc_seterr(QC_EINVAL, "cannot record file '%.256s': not a plain file name",
		                 name ? name : "(null)");
	if (strcmp(name, QC_MANIFEST_NAME) == 0)
		return qc_seterr(QC_EINVAL, "cannot record file '%s': the manifest does not list itself",
		                 name);
	if (size > (uint64_t)INT64_MAX)
		return qc_seterr(QC_EINVAL, "cannot record file '%s': size out of range", name);
	size_t at;
	int fresh;
	QC_TRY(upsert((void **)&m->files, &m->n_files, &m->cap_files, sizeof *m->files, name, &at, &fresh));
	m->files[at].size = size;
	m->files[at].hash = hash;
	return 0;
}

int qc_manifest_set_tensor(qc_manifest *m, const char *name, qc_dtype dt, int ndim,
                           const int64_t *shape, uint64_t hash)
{
	if (!name || !*name)
		return qc_seterr(QC_EINVAL, "cannot record tensor: empty name");
	if (dt <= QC_DT_INVALID || dt >= QC_DT_COUNT)
		return qc_seterr(QC_EINVAL, "cannot record tensor '%s': invalid dtype", name);
	if (ndim < 0 || ndim > QC_MAX_DIMS || (ndim > 0 && !shape))
		return qc_seterr(QC_EINVAL, "cannot record tensor '%s': %d dimensions (at most %d)", name,
		                 ndim, QC_MAX_DIMS);
	for (int i = 0; i < ndim; i++)
		if (shape[i] < 0)
			return qc_seterr(QC_EINVAL, "cannot record tensor '%s': negative dimension", name);
	size_t at;
	int fresh;
	QC_TRY(upsert((void **)&m->tensors, &m->n_tensors, &m->cap_tensors, sizeof *m->tensors, name,
	              &at, &fresh));
	tensor_entry *t = &m->tensors[at];
	t->dt = dt;
	t->ndim = ndim;
	memset(t->shape, 0, sizeof t->shape);
	if (ndim)
		memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
	t->hash = hash;
	return 0;
}

int qc_manifest_inherit(qc_manifest *dst, const qc_manifest *src)
{
	/* build into a scratch manifest first so that dst is untouched on failure */
	qc_manifest *tmp = qc_manifest_new();
	int rc = tmp ? 0 : oom();
	for (size_t i = 0; rc == 0 && i < src->n_hist; i++)
		rc = qc_manifest_add_history(tmp, src->hist[i].tool, src->hist[i].version,
		                             src->hist[i].argc, src->hist[i].argv);
	for (size_t i = 0; rc == 0 && i < src->n_tsets; i++)
		rc = qc_manifest_add_token_set(tmp, src->tsets[i].role, src->tsets[i].hash);
	if (rc == 0 && src->base_fp)
		rc = qc_manifest_set_base(tmp, src->base_fp, src->base_src);
	if (rc) {
		qc_manifest_free(tmp);
		return rc;
	}
	/* swap the carried parts */
	clear_carried(dst);
	free(dst->hist);
	free(dst->tsets);
	dst->hist = tmp->hist;
	dst->n_hist = tmp->n_hist;
	dst->cap_hist = tmp->cap_hist;
	dst->tsets = tmp->tsets;
	dst->n_tsets = tmp->n_tsets;
	dst->cap_tsets = tmp->cap_tsets;
	dst->base_fp = tmp->base_fp;
	dst->base_src = tmp->base_src;
	tmp->hist = NULL;
	tmp->tsets = NULL;
	tmp->n_hist = tmp->n_tsets = 0;
	tmp->base_fp = tmp->base_src = NULL;
	qc_manifest_free(tmp);
	return 0;
}

// ---------------------------------------------------------------- fingerprint

int qc_manifest_fingerprint(const qc_manifest *m, char out[33])
{
	/* tensors are already sorted by name; each contributes
	 * "name\0dtype\0d0,d1,...\0<xxh3_64 hex>\n" */
	qc_hasher *h = qc_hasher_new();
	if (!h)
		return oom();
	for (size_t i = 0; i < m->n_tensors; i++) {
		const tensor_entry *t = &m->tensors[i];
		char dims[QC_MAX_DIMS * 21 + 1], hex[17];
		size_t off = 0;
		dims[0] = 0;
		for (int d = 0; d < t->ndim; d++)
			off += (size_t)snprintf(dims + off, sizeof dims - off, d ? ",%lld" : "%lld",
			                        (long long)t->shape[d]);
		const char *dt = qc_dtype_name(t->dt);
		qc_hasher_update(h, t->name, strlen(t->name) + 1);
		qc_hasher_update(h, dt, strlen(dt) + 1);
		qc_hasher_update(h, dims, off + 1);
		qc_hasher_update(h, qc_h64_hex(t->hash, hex), 16);
		qc_hasher_update(h, "\n", 1);
	}
	qc_h128_hex(qc_hasher_digest128(h), out);
	qc_hasher_free(h);
	return 0;
}

const char *qc_manifest_get_fingerprint(const qc_manifest *m)
{
	return m->fingerprint[0] ? m->fingerprint : NULL;
}

int qc_manifest_update_fingerprint(qc_manifest *m)
{
	return qc_manifest_fingerprint(m, m->fingerprint);
}

// ---------------------------------------------------------------- lookups

int qc_manifest_file(const qc_manifest *m, const char *name, uint64_t *size, qc_h128 *hash)
{
	ptrdiff_t i = find_sorted(m->files, m->n_files, sizeof *m->files, name);
	if (i < 0)
		return qc_seterr(QC_ENOTFOUND, "file '%s' is not in the manifest", name);
	if (size)
		*size = m->files[i].size;
	if (hash)
		*hash = m->files[i].hash;
	return 0;
}

int qc_manifest_tensor(const qc_manifest *m, const char *name, qc_dtype *dt, int *ndim,
                       int64_t shape[QC_MAX_DIMS], uint64_t *hash)
{
	ptrdiff_t i = find_sorted(m->tensors, m->n_tensors, sizeof *m->tensors, name);
	if (i < 0)
		return qc_seterr(QC_ENOTFOUND, "tensor '%s' is not in the manifest", name);
	const tensor_entry *t = &m->tensors[i];
	if (dt)
		*dt = t->dt;
	if (ndim)
		*ndim = t->ndim;
	if (shape)
		memcpy(shape, t->shape, sizeof t->shape);
	if (hash)
		*hash = t->hash;
	return 0;
}

size_t qc_manifest_file_count(const qc_manifest *m) { return m->n_files; }
size_t qc_manifest_tensor_count(const qc_manifest *m) { return m->n_tensors; }
size_t qc_manifest_history_count(const qc_manifest *m) { return m->n_hist; }
size_t qc_manifest_token_set_count(const qc_manifest *m) { return m->n_tsets; }
const char *qc_manifest_base(const qc_manifest *m) { return m->base_fp; }
const char *qc_manifest_base_source(const qc_manifest *m) { return m->base_src; }

const char *qc_manifest_file_name(const qc_manifest *m, size_t i)
{
	return i < m->n_files ? m->files[i].name : NULL;
}

const char *qc_manifest_tensor_name(const qc_manifest *m, size_t i)
{
	return i < m->n_tensors ? m->tensors[i].name : NULL;
}

const char *qc_manifest_history_tool(const qc_manifest *m, size_t i)
{
	return i < m->n_hist ? m->hist[i].tool : NULL;
}

const char *qc_manifest_history_version(const qc_manifest *m, size_t i)
{
	return i < m->n_hist ? m->hist[i].version : NULL;
}

int qc_manifest_history_argv(const qc_manifest *m, size_t i, int *argc, char *const **argv)
{
	if (i >= m->n_hist)
		return qc_seterr(QC_ENOTFOUND, "history entry %zu is not in the manifest", i);
	*argc = m->hist[i].argc;
	*argv = m->hist[i].argv;
	return 0;
}

int qc_manifest_token_set(const qc_manifest *m, size_t i, const char **role, qc_h128 *hash)
{
	if (i >= m->n_tsets)
		return qc_seterr(QC_ENOTFOUND, "token set %zu is not in the manifest", i);
	if (role)
		*role = m->tsets[i].role;
	if (hash)
		*hash = m->tsets[i].hash;
	return 0;
}

// ---------------------------------------------------------------- to JSON

/*
 * jansson's set_new and append_new functions always take the value's reference, also
 * when they fail (a NULL container, a NULL value from a failed allocation),
 * so every value below is handed over exactly once and the results are
 * combined with '|' (not '||', which would skip a hand-over and leak).
 */
static json_t *hex128(qc_h128 h)
{
	char s[33];
	return json_string(qc_h128_hex(h, s));
}

static json_t *build_json(const qc_manifest *m)
{
	json_t *root = json_object();
	json_t *files = json_object(), *tensors = json_object();
	json_t *history = json_array(), *tsets = json_array();
	int fail = 0;
	char hex[17];
	for (size_t i = 0; i < m->n_files; i++) {
		const file_entry *f = &m->files[i];
		json_t *o = json_object();
		fail |= json_object_set_new(o, "size", json_integer((json_int_t)f->size)) |
		        json_object_set_new(o, "xxh3_128", hex128(f->hash));
		fail |= json_object_set_new(files, f->name, o);
	}
	for (size_t i = 0; i < m->n_tensors; i++) {
		const tensor_entry *t = &m->tensors[i];
		json_t *o = json_object(), *shape = json_array();
		for (int d = 0; d < t->ndim; d++)
			fail |= json_array_append_new(shape, json_integer(t->shape[d]));
		fail |= json_object_set_new(o, "shape", shape) |
		        json_object_set_new(o, "dtype", json_string(qc_dtype_name(t->dt))) |
		        json_object_set_new(o, "xxh3_64", json_string(qc_h64_hex(t->hash, hex)));
		fail |= json_object_set_new(tensors, t->name, o);
	}
	for (size_t i = 0; i < m->n_hist; i++) {
		const hist_entry *h = &m->hist[i];
		json_t *o = json_object(), *argv = json_array();
		for (int k = 0; k < h->argc; k++)
			fail |= json_array_append_new(argv, json_string(h->argv[k]));
		fail |= json_object_set_new(o, "argv", argv) |
		        json_object_set_new(o, "tool", json_string(h->tool)) |
		        json_object_set_new(o, "version", json_string(h->version));
		fail |= json_array_append_new(history, o);
	}
	for (size_t i = 0; i < m->n_tsets; i++) {
		json_t *o = json_object();
		fail |= json_object_set_new(o, "role", json_string(m->tsets[i].role)) |
		        json_object_set_new(o, "xxh3_128", hex128(m->tsets[i].hash));
		fail |= json_array_append_new(tsets, o);
	}
	if (m->base_fp) {
		json_t *o = json_object();
		fail |= json_object_set_new(o, "fingerprint", json_string(m->base_fp));
		if (m->base_src)
			fail |= json_object_set_new(o, "source", json_string(m->base_src));
		fail |= json_object_set_new(root, "base", o);
	}
	if (m->fingerprint[0])
		fail |= json_object_set_new(root, "fingerprint", json_string(m->fingerprint));
	fail |= json_object_set_new(root, "files", files) |
	        json_object_set_new(root, "tensors", tensors) |
	        json_object_set_new(root, "history", history) |
	        json_object_set_new(root, "token_sets", tsets) |
	        json_object_set_new(root, "format", json_string(MANIFEST_FORMAT)) |
	        json_object_set_new(root, "version", json_integer(MANIFEST_VERSION)) |
	        json_object_set_new(root, SELF_KEY, json_string(SELF_ZERO));
	if (fail) {
		json_decref(root);
		return NULL;
	}
	return root;
}

/* Where the 32 hex digits of the self hash start in a manifest's bytes: the
 * top-level key is the only one at two spaces of indent (the layout is
 * fixed), so a file name or argv that holds the key's text cannot be taken
 * for it. -1 when absent. */
static long self_hash_at(const char *json, size_t len)
{
	static const char key[] = "\n  \"" SELF_KEY "\": \"";
	size_t k = sizeof key - 1;
	for (size_t i = 0; i + k + 32 <= len; i++)
		if (json[i] == '\n' && memcmp(json + i, key, k) == 0)
			return (long)(i + k);
	return -1;
}

int qc_manifest_to_json(const qc_manifest *m, char **json, size_t *len)
{
	json_t *root = build_json(m);
	if (!root)
		return qc_seterr(QC_ENOMEM, "cannot write manifest: out of memory "
		                            "(or a string that is not valid UTF-8)");
	size_t n;
	int rc = qc_json_dump(root, json, &n);
	json_decref(root);
	if (rc)
		return rc;
	/* the hash of these bytes with its own digits as zeros goes in place
	 * of the zeros */
	long at = self_hash_at(*json, n);
	if (at < 0) {
		free(*json);
		*json = NULL;
		return qc_seterr(QC_EINTERNAL, "manifest self hash: key not found in the written JSON");
	}
	char hex[33];
	qc_h128_hex(qc_xxh3_128(*json, n), hex);
	memcpy(*json + at, hex, 32);
	if (len)
		*len = n;
	return 0;
}

// ---------------------------------------------------------------- parse

static int malformed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int malformed(const char *fmt, ...)
{
	char what[700];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	return qc_seterr(QC_EFORMAT, "malformed manifest: %s", what);
}

/* Only the listed keys are allowed in o. */
static int check_keys(json_t *o, const char *where, const char *const *allowed)
{
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v) {
		int ok = 0;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = strcmp(*a, key) == 0;
		if (!ok)
			return malformed("unknown key '%s' in %s", key, where);
	}
	return 0;
}

/* A manifest that records its own hash must have exactly those bytes. */
static int check_self_hash(const char *json, size_t len, const char *stored)
{
	long at = self_hash_at(json, len);
	if (at < 0 || memcmp(json + at, stored, 32) != 0)
		return malformed("'%s' is not where the manifest's layout puts it", SELF_KEY);
	char *copy = malloc(len);
	if (!copy)
		return oom();
	memcpy(copy, json, len);
	memcpy(copy + at, SELF_ZERO, 32);
	char hex[33];
	qc_h128_hex(qc_xxh3_128(copy, len), hex);
	free(copy);
	if (memcmp(hex, stored, 32) != 0)
		return qc_seterr(QC_EINTEGRITY, "manifest self hash '%.32s' does not match its bytes "
		                 "(computed '%s'): the manifest was changed after it was written",
		                 stored, hex);
	return 0;
}

static int get_hex128(json_t *o, const char *key, const char *where, qc_h128 *out)
{
	json_t *v = json_object_get(o, key);
	if (!v)
		return malformed("missing key '%s' in %s", key, where);
	if (!json_is_string(v) || !is_hex(json_string_value(v), 32))
		return malformed("'%s' in %s must be 32 lower-case hex digits", key, where);
	return qc_h128_parse(json_string_value(v), out);
}

/* One entry of a section, an object whose keys were checked: name is its
 * name (files, tensors) or NULL (history, token sets, which are numbered);
 * where names it in messages ("file 'x'", "history entry 3"). */
typedef int (*entry_fn)(qc_manifest *m, const char *name, json_t *o, const char *where);

/* A section of the document: an object of named entries (named) or an array
 * of entries; each entry must be an object with only the listed keys, and
 * goes to fn in document order. what is the entry's kind in messages. */
static int parse_section(qc_manifest *m, json_t *sec, const char *section, int named,
                         const char *what, const char *const *keys, entry_fn fn)
{
	if (named ? !json_is_object(sec) : !json_is_array(sec))
		return malformed("'%s' must be %s", section, named ? "an object" : "an array");
	void *it = named ? json_object_iter(sec) : NULL;
	for (size_t i = 0; named ? it != NULL : i < json_array_size(sec); i++) {
		const char *name = named ? json_object_iter_key(it) : NULL;
		json_t *o = named ? json_object_iter_value(it) : json_array_get(sec, i);
		char where[320];
		if (named)
			snprintf(where, sizeof where, "%s '%.256s'", what, name);
		else
			snprintf(where, sizeof where, "%s %zu", what, i);
		if (!json_is_object(o))
			return malformed("%s must be an object", where);
		QC_TRY(check_keys(o, where, keys));
		QC_TRY(fn(m, name, o, where));
		if (named)
			it = json_object_iter_next(sec, it);
	}
	return 0;
}

static int parse_file(qc_manifest *m, const char *name, json_t *o, const char *where)
{
	json_t *size = json_object_get(o, "size");
	if (!size)
		return malformed("missing key '%s' in %s", "size", where);
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return malformed("'%s' in %s must be a non-negative integer", "size", where);
	qc_h128 h;
	QC_TRY(get_hex128(o, "xxh3_128", where, &h));
	if (!qc_safe_filename(name))
		return malformed("%s is not a plain file name", where);
	if (strcmp(name, QC_MANIFEST_NAME) == 0)
		return malformed("the manifest lists itself");
	return qc_manifest_set_file(m, name, (uint64_t)json_integer_value(size), h);
}

static int parse_tensor(qc_manifest *m, const char *name, json_t *o, const char *where)
{
	json_t *dt = json_object_get(o, "dtype"), *shape = json_object_get(o, "shape");
	json_t *h = json_object_get(o, "xxh3_64");
	if (!dt || !shape || !h)
		return malformed("missing key '%s' in %s", !dt ? "dtype" : !shape ? "shape" : "xxh3_64", where);
	qc_dtype d = json_is_string(dt) ? qc_dtype_from_name(json_string_value(dt)) : QC_DT_INVALID;
	if (d == QC_DT_INVALID)
		return malformed("'dtype' in %s must be a safetensors dtype name", where);
	if (!json_is_array(shape) || json_array_size(shape) > QC_MAX_DIMS)
		return malformed("'shape' in %s must be an array of at most 8 dimensions", where);
	int64_t dims[QC_MAX_DIMS];
	int nd = (int)json_array_size(shape);
	for (int i = 0; i < nd; i++) {
		json_t *v = json_array_get(shape, (size_t)i);
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return malformed("'shape' in %s must hold non-negative integers", where);
		dims[i] = json_integer_value(v);
	}
	uint64_t hv;
	if (!json_is_string(h) || !is_hex(json_string_value(h), 16))
		return malformed("'xxh3_64' in %s must be 16 lower-case hex digits", where);
	QC_TRY(qc_h64_parse(json_string_value(h), &hv));
	if (!*name)
		return malformed("empty tensor name");
	return qc_manifest_set_tensor(m, name, d, nd, dims, hv);
}

static int parse_history(qc_manifest *m, const char *name, json_t *o, const char *where)
{
	json_t *tool = json_object_get(o, "tool"), *ver = json_object_get(o, "version");
	json_t *argv = json_object_get(o, "argv");
	if (!json_is_string(tool) || !*json_string_value(tool))
		return malformed("'tool' in %s must be a non-empty string", where);
	if (!json_is_string(ver))
		return malformed("'version' in %s must be a string", where);
	if (!json_is_array(argv) || json_array_size(argv) > 1000000)
		return malformed("'argv' in %s must be an array of strings", where);
	size_t n = json_array_size(argv);
	char **a = calloc(n + 1, sizeof *a);
	if (!a)
		return oom();
	int rc = 0;
	for (size_t k = 0; k < n && rc == 0; k++) {
		json_t *s = json_array_get(argv, k);
		if (!json_is_string(s))
			rc = malformed("'argv' in %s must be an array of strings", where);
		else
			a[k] = (char *)json_string_value(s);   /* borrowed; add_history copies */
	}
	if (rc == 0)
		rc = qc_manifest_add_history(m, json_string_value(tool), json_string_value(ver), (int)n, a);
	free(a);
	return rc;
}

static int parse_token_set(qc_manifest *m, const char *name, json_t *o, const char *where)
{
	json_t *role = json_object_get(o, "role");
	if (!json_is_string(role) || !*json_string_value(role))
		return malformed("'role' in %s must be a non-empty string", where);
	qc_h128 h;
	QC_TRY(get_hex128(o, "xxh3_128", where, &h));
	return qc_manifest_add_token_set(m, json_string_value(role), h);
}

static int parse_root(qc_manifest *m, json_t *root, const char *json, size_t len)
{
	static const char *const keys[] = { "base", "files", "fingerprint", "format", "history",
		                            SELF_KEY, "tensors", "token_sets", "version", NULL };
	if (!json_is_object(root))
		return malformed("the document must be a JSON object");
	json_t *format = json_object_get(root, "format");
	if (!json_is_string(format) || strcmp(json_string_value(format), MANIFEST_FORMAT) != 0)
		return malformed("'format' must be \"%s\"", MANIFEST_FORMAT);
	json_t *version = json_object_get(root, "version");
	if (!json_is_integer(version) || json_integer_value(version) < 1)
		return malformed("'version' must be a positive integer");
	if (json_integer_value(version) > MANIFEST_VERSION)
		return qc_seterr(QC_EUNSUPPORTED, "unsupported manifest version %lld (this toolkit reads "
		                 "version %d): upgrade the toolkit",
		                 (long long)json_integer_value(version), MANIFEST_VERSION);
	QC_TRY(check_keys(root, "the manifest", keys));
	json_t *self = json_object_get(root, SELF_KEY);
	if (self) {
		if (!json_is_string(self) || !is_hex(json_string_value(self), 32))
			return malformed("'%s' must be 32 lower-case hex digits", SELF_KEY);
		QC_TRY(check_self_hash(json, len, json_string_value(self)));
	}
	json_t *files = json_object_get(root, "files"), *tensors = json_object_get(root, "tensors");
	if (!files || !tensors)
		return malformed("missing key '%s' in %s", !files ? "files" : "tensors", "the manifest");
	static const char *const fkeys[] = { "size", "xxh3_128", NULL };
	static const char *const tkeys[] = { "dtype", "shape", "xxh3_64", NULL };
	static const char *const hkeys[] = { "argv", "tool", "version", NULL };
	static const char *const skeys[] = { "role", "xxh3_128", NULL };
	QC_TRY(parse_section(m, files, "files", 1, "file", fkeys, parse_file));
	QC_TRY(parse_section(m, tensors, "tensors", 1, "tensor", tkeys, parse_tensor));
	json_t *v;
	if ((v = json_object_get(root, "history")))
		QC_TRY(parse_section(m, v, "history", 0, "history entry", hkeys, parse_history));
	if ((v = json_object_get(root, "token_sets")))
		QC_TRY(parse_section(m, v, "token_sets", 0, "token set", skeys, parse_token_set));
	if ((v = json_object_get(root, "base"))) {
		static const char *const bkeys[] = { "fingerprint", "source", NULL };
		if (!json_is_object(v))
			return malformed("'%s' must be an object", "base");
		QC_TRY(check_keys(v, "'base'", bkeys));
		json_t *fp = json_object_get(v, "fingerprint"), *src = json_object_get(v, "source");
		if (!json_is_string(fp) || !is_hex(json_string_value(fp), 32))
			return malformed("'fingerprint' in 'base' must be 32 lower-case hex digits");
		if (src && !json_is_string(src))
			return malformed("'source' in 'base' must be a string");
		QC_TRY(qc_manifest_set_base(m, json_string_value(fp), src ? json_string_value(src) : NULL));
	}
	if ((v = json_object_get(root, "fingerprint"))) {
		if (!json_is_string(v) || !is_hex(json_string_value(v), 32))
			return malformed("'fingerprint' must be 32 lower-case hex digits");
		/* the stored fingerprint must be that of the tensors listed */
		char want[33];
		QC_TRY(qc_manifest_fingerprint(m, want));
		if (strcmp(want, json_string_value(v)) != 0)
			return qc_seterr(QC_EINTEGRITY, "manifest fingerprint '%s' does not match its "
			                 "tensors (computed '%s')", json_string_value(v), want);
		memcpy(m->fingerprint, want, sizeof want);
	}
	return 0;
}

int qc_manifest_parse(qc_manifest **out, const void *json, size_t len)
{
	json_error_t err;
	*out = NULL;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
	if (!root)
		return qc_seterr(QC_EFORMAT, "malformed manifest: invalid JSON at line %d, column %d: %s",
		                 err.line, err.column, err.text);
	qc_manifest *m = qc_manifest_new();
	int rc = m ? parse_root(m, root, json, len) : oom();
	json_decref(root);
	if (rc) {
		qc_manifest_free(m);
		return rc;
	}
	*out = m;
	return 0;
}
