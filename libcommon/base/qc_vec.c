/* qc_vec.c - growable arrays (see qc_vec.h). */
#include "qc_vec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"

int qc_grow_alloc(void **p, size_t *cap, size_t need, size_t elem)
{
	QC_ASSERT(elem > 0);
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 16;
	while (c < need) {
		if (c > SIZE_MAX / 2)
			goto nomem;
		c *= 2;
	}
	if (c > SIZE_MAX / elem)
		goto nomem;
	void *q = realloc(*p, c * elem);
	if (!q)
		goto nomem;
	memset((char *)q + *cap * elem, 0, (c - *cap) * elem);
	*p = q;
	*cap = c;
	return 0;
nomem:
	return qc_seterr(QC_ENOMEM, "out of memory (growing an array to %zu elements of %zu bytes)",
	                 need, elem);
}
