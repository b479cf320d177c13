/*
 * qc_json.h - JSON written byte for byte the way HuggingFace writes it.
 *
 * transformers and huggingface_hub write config.json and
 * model.safetensors.index.json with Python's
 *     json.dumps(obj, indent=2, sort_keys=True) + "\n"
 * (ensure_ascii is left on). jansson's own dumper differs in the details that
 * make files byte-identical or not: floats (it prints 1e-05 as
 * 1.0000000000000001e-05, Python prints repr(): 1e-05, 500000.0), \u escapes
 * (upper- vs lower-case hex, DEL), so the toolkit writes its JSON files
 * through this module instead. Parsing stays with jansson.
 *
 * Output rules (those of CPython's json encoder with the options above):
 *  - objects with keys sorted by code point, arrays one element per line,
 *    two spaces per level, ", " never (",\n" and ": "), "{}" and "[]" when
 *    empty, one "\n" at the end of the document;
 *  - strings: \" \\ \n \r \t \b \f, every other byte outside 0x20..0x7E as
 *    \u00xx or, for non-ASCII UTF-8, \uxxxx (surrogate pairs above U+FFFF),
 *    lower-case hex;
 *  - integers as decimal; reals as Python's repr(): the shortest digits that
 *    read back to the same double, in exponent form ("1e-05", "1.5e+20")
 *    when the decimal exponent is below -4 or above 15, else fixed with at
 *    least one digit after the point ("0.0001", "500000.0", "-0.0").
 *
 * Thread-safe; no state.
 */
#ifndef QC_JSON_H
#define QC_JSON_H

#include <jansson.h>
#include <stddef.h>

/* Serialize j into a malloc'd, NUL-terminated string (len excludes the NUL).
 * Returns 0, QC_ENOMEM, or QC_EINVAL for a string that is not valid UTF-8
 * (jansson only makes such strings through json_stringn_nocheck). */
int qc_json_dump(const json_t *j, char **out, size_t *len);

/* Python's repr() of a finite double into buf (at most 25 bytes used). NaN
 * and infinities, which JSON cannot hold, give "NaN", "Infinity" and
 * "-Infinity" as Python's json module writes them. */
char *qc_json_repr_double(double x, char buf[32]);

#endif
