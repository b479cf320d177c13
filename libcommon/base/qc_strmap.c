/* qc_strmap.c - string -> int32 hash map (see qc_strmap.h). */
#include "qc_strmap.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "qc_err.h"
#include "qc_vec.h"

#define EMPTY UINT32_MAX       /* off of a free slot */

struct qc_strmap_slot {
	uint64_t h;
	uint32_t off, len;         /* key in the arena; off == EMPTY: free */
	int32_t val;
};

/* Double the table (64 slots to start) and re-insert every key. */
static int sm_rehash(qc_strmap *m)
{
	size_t nc = m->cap ? m->cap * 2 : 64;
	qc_strmap_slot *ns = malloc(nc * sizeof *ns);
	if (!ns)
		return qc_seterr(QC_ENOMEM, "out of memory (a string map of %zu slots)", nc);
	for (size_t i = 0; i < nc; i++)
		ns[i].off = EMPTY;
	for (size_t i = 0; i < m->cap; i++) {
		if (m->slots[i].off == EMPTY)
			continue;
		size_t j = m->slots[i].h & (nc - 1);
		while (ns[j].off != EMPTY)
			j = (j + 1) & (nc - 1);
		ns[j] = m->slots[i];
	}
	free(m->slots);
	m->slots = ns;
	m->cap = nc;
	return 0;
}

/* The slot of key (hash h): the one holding it, or the free one where the
 * probe ends. m->cap > 0. */
static size_t sm_find(const qc_strmap *m, uint64_t h, const void *key, size_t len)
{
	size_t j = h & (m->cap - 1);
	for (;; j = (j + 1) & (m->cap - 1)) {
		const qc_strmap_slot *s = &m->slots[j];
		if (s->off == EMPTY ||
		    (s->h == h && s->len == len && memcmp(m->keys + s->off, key, len) == 0))
			return j;
	}
}

int32_t qc_strmap_get(const qc_strmap *m, const void *key, size_t len)
{
	if (!m->cap)
		return -1;
	const qc_strmap_slot *s = &m->slots[sm_find(m, XXH3_64bits(key, len), key, len)];
	return s->off == EMPTY ? -1 : s->val;
}

int qc_strmap_put(qc_strmap *m, const void *key, size_t len, int32_t val)
{
	if (val < 0)
		return qc_seterr(QC_EINVAL, "a string map value must be >= 0, not %d", (int)val);
	if ((m->count + 1) * 4 > m->cap * 3)
		QC_TRY(sm_rehash(m));
	uint64_t h = XXH3_64bits(key, len);
	qc_strmap_slot *s = &m->slots[sm_find(m, h, key, len)];
	if (s->off != EMPTY) {
		s->val = val;
		return 0;
	}
	if (len >= EMPTY - 1 - m->keys_n)
		return qc_seterr(QC_EUNSUPPORTED, "the keys of a string map would pass 4 GiB");
	QC_TRY(qc_grow((void **)&m->keys, &m->keys_cap, m->keys_n + len + 1, 1));
	if (len)
		memcpy(m->keys + m->keys_n, key, len);
	m->keys[m->keys_n + len] = 0;
	*s = (qc_strmap_slot){ h, (uint32_t)m->keys_n, (uint32_t)len, val };
	m->keys_n += len + 1;
	m->count++;
	return 0;
}

size_t qc_strmap_count(const qc_strmap *m)
{
	return m->count;
}

int qc_strmap_next(const qc_strmap *m, size_t *pos, const char **key, size_t *len, int32_t *val)
{
	for (; *pos < m->cap; (*pos)++) {
		const qc_strmap_slot *s = &m->slots[*pos];
		if (s->off == EMPTY)
			continue;
		*key = m->keys + s->off;
		*len = s->len;
		*val = s->val;
		(*pos)++;
		return 1;
	}
	return 0;
}

void qc_strmap_clear(qc_strmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		m->slots[i].off = EMPTY;
	m->count = 0;
	m->keys_n = 0;
}

void qc_strmap_free(qc_strmap *m)
{
	free(m->keys);
	free(m->slots);
	memset(m, 0, sizeof *m);
}
