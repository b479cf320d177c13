/*
 * qc_recipe_int.h - internals shared by the files of the recipe module; not
 * part of its interface (qc_recipe.h). Names use a double underscore.
 *
 * The recipe in memory: every tool invocation is a qc_recipe__call (a tool
 * of the table and the option values the recipe gave it, as strings already
 * checked against the table); the Makefile and the card are made from
 * these.
 */
#ifndef QC_RECIPE_INT_H
#define QC_RECIPE_INT_H

#include <stddef.h>

#include "qc_recipe.h"

/* ---- the step table (qc_recipe_tools.c) ---- */

typedef enum {
	QC_RT_FLAG,     /* true: the option alone; false: left out */
	QC_RT_INT,      /* a whole number in [min, max], or one of words */
	QC_RT_FLOAT,    /* a finite number in [min, max], or one of words */
	QC_RT_WORD,     /* one of words */
	QC_RT_SIZE,     /* a byte size: 16GB, 500MB, 2GiB, 4096 */
	QC_RT_TEXT,     /* any text without control characters */
	QC_RT_LIST,     /* a list of texts (or one), the option once per item */
} qc_rt_type;

typedef struct qc_rt_opt {
	const char *key;        /* the recipe key */
	const char *flag;       /* the command-line option ("--scheme", "-n") */
	qc_rt_type type;
	const char *words;      /* space-separated accepted words, or NULL */
	double min, max;        /* QC_RT_INT, QC_RT_FLOAT */
} qc_rt_opt;

typedef enum {
	QC_RT_STEP_QUANT,       /* a step that writes a naive-quantized checkpoint */
	QC_RT_STEP_DENSE,       /* a step that writes a checkpoint in the model's dtype */
	QC_RT_MODEL,            /* qsynth */
	QC_RT_TOKENS,           /* qcalib */
	QC_RT_PACK,             /* qpack */
	QC_RT_VERIFY,           /* qverify */
} qc_rt_role;

typedef enum {
	QC_RT_CALIB_NONE,       /* the tool reads no token set */
	QC_RT_CALIB_ALWAYS,     /* --calib is required */
	QC_RT_CALIB_DEFAULT,    /* --calib <the recipe's calib> unless `calib: none` */
	QC_RT_CALIB_OPTIONAL,   /* --calib only when the recipe names a set */
} qc_rt_calib;

/* How one llm-compressor modifier key maps onto a step option. */
typedef enum {
	QC_LC_OPT,              /* the value (through map) is option `to` */
	QC_LC_NOEFFECT,         /* accepted, changes nothing here (placement, memory) */
	QC_LC_ONLY,             /* accepted only with the values in map (as `a=` entries) */
	QC_LC_SPECIAL,          /* handled by code: mappings, ignore */
} qc_lc_how;

typedef struct qc_lc_key {
	const char *key;        /* the modifier's key ("dampening_frac") */
	qc_lc_how how;
	const char *to;         /* QC_LC_OPT: the recipe key of the step */
	const char *map;        /* "from=to ..." value map (null, true, false
	                           match YAML's), or NULL to pass the value on */
	const char *why;        /* QC_LC_NOEFFECT: why (for the documentation) */
} qc_lc_key;

/* An llm-compressor modifier that maps onto the tool. */
typedef struct qc_lc_mod {
	const char *name;       /* "GPTQModifier" */
	int family;             /* 0 any, 1 integer weights only, 2 FP8 only */
	const char *preset;     /* step options it sets ("method=rtn"), or NULL */
	const qc_lc_key *keys;  /* its own keys beyond the quantization keys
	                           (targets ignore scheme config_groups
	                           kv_cache_scheme), NULL-terminated */
	int quant_keys;         /* 1: it takes the quantization keys */
} qc_lc_mod;

typedef struct qc_rt_tool {
	const char *name;       /* "qgptq" */
	qc_rt_role role;
	const qc_rt_opt *opts;  /* its own keys, NULL-key terminated */
	const qc_rt_opt *common;/* keys shared with other tools, or NULL */
	qc_rt_calib calib;
	const char *need_calib; /* conditions under which a token set is needed
	                           ("!method=rtn", "act=static kv-cache"), "*": always */
	const char *dense_flag; /* a flag key that makes a QUANT step write a
	                           dense checkpoint ("scales-only"), or NULL */
	const char *force;      /* the option that replaces an output ("-f", "--force") */
	int resume;             /* 1: takes --resume for a directory output */
	const char *kv_key;     /* the flag that writes KV-cache scales, or NULL */
	const char *same_output;/* keys that do not change what the tool writes (its
	                           man page says so): left out of the command's hash,
	                           so changing them remakes nothing */
	const qc_lc_mod *lc;    /* llm-compressor modifiers, NULL-name terminated */
} qc_rt_tool;

extern const qc_rt_tool qc_recipe__tools[];
/* The tool called name, or NULL. */
const qc_rt_tool *qc_recipe__tool(const char *name);
/* The option of t called key (its own or common), or NULL. */
const qc_rt_opt *qc_recipe__opt(const qc_rt_tool *t, const char *key);
/* 1 when word is one of the space-separated words. */
int qc_recipe__word_in(const char *word, const char *words);

/* ---- the recipe in memory ---- */

typedef struct qc_recipe__val {
	const qc_rt_opt *opt;
	char **v;               /* the values (one but for QC_RT_LIST) */
	int n;
} qc_recipe__val;

#define QC_RECIPE__MAXOPT 32     /* more than any tool's keys */

typedef struct qc_recipe__call {
	const qc_rt_tool *tool;
	qc_recipe__val vals[QC_RECIPE__MAXOPT];
	int n_vals;
	int line, col;          /* where the recipe set it up (1-based), for messages */
} qc_recipe__call;

enum { QC_SRC_PATH, QC_SRC_SYNTH };                 /* model */
enum { QC_TOK_TEXT, QC_TOK_RANDOM, QC_TOK_FILE };   /* token sets */

typedef struct qc_recipe__tokens {
	char *name;             /* "calib", "eval", or a name under tokens */
	int source;             /* QC_TOK_* */
	char *path;             /* the file: work/NAME.st, or the given one */
	qc_recipe__call call;   /* qcalib's options (not QC_TOK_FILE) */
	char **files;           /* QC_TOK_TEXT inputs */
	int n_files;
	int used;               /* some variant reads it */
} qc_recipe__tokens;

typedef struct qc_recipe__step {
	qc_recipe__call call;
	char *calib;            /* the token set's name, or NULL */
	int pipe;               /* stream the output into the next command */
	int dense;              /* writes a dense checkpoint */
} qc_recipe__step;

typedef struct qc_recipe__variant {
	char *name;
	qc_recipe__step *steps;
	int n_steps;
	char **formats;         /* release formats */
	int n_formats;
	qc_recipe__call pack;   /* qpack's options but the format */
	qc_recipe__call verify; /* qverify's options */
	char *eval;             /* the evaluation token set's name, or NULL */
	char *tools;            /* qc_recipe_variant_tools */
	char *release_dir;
	int line, col;
} qc_recipe__variant;

typedef struct qc_recipe__var {
	char *name, *value;
	int set;                /* given by the caller */
} qc_recipe__var;

struct qc_recipe {
	qc_recipe_kind kind;
	char *file;             /* as named */
	char *text;             /* the file's bytes, for the card */
	size_t text_len;
	char *name;             /* the recipe's name (for the card) */
	char *model_name;       /* the model's name (for the card) */
	int model_source;       /* QC_SRC_* */
	char *model_path;       /* the checkpoint the steps read */
	qc_recipe__call synth;  /* QC_SRC_SYNTH */
	qc_recipe__tokens *tokens;
	int n_tokens, cap_tokens;
	qc_recipe__variant *variants;
	int n_variants, cap_variants;
	qc_recipe__var *vars;
	int n_vars, cap_vars;
	char **overrides;       /* "NAME=value" as given */
	int n_overrides;
	int jobs;
	int progress;           /* 1: the tools show progress (no -q) */
	int resume;             /* 1: quantizers get --resume */
	int gates_off;          /* GATES=off: measured, not gated */
	/* everything malloc'd for the recipe, freed with it */
	void **owned;
	size_t n_owned, cap_owned;
};

/* Keep p (malloc'd) to free with r; returns p, or NULL (QC_ENOMEM set) with
 * p freed when it cannot be recorded or p is NULL. */
void *qc_recipe__own(qc_recipe *r, void *p);
char *qc_recipe__strdup(qc_recipe *r, const char *s);
char *qc_recipe__printf(qc_recipe *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Add a value to a call (a list value appends). 0 or QC_ENOMEM. */
int qc_recipe__call_set(qc_recipe *r, qc_recipe__call *c, const qc_rt_opt *o, const char *v);
/* The first value of key in c, or NULL. */
const char *qc_recipe__call_get(const qc_recipe__call *c, const char *key);
/* 1 when the conditions (qc_rt_tool.need_calib syntax) hold for c. */
int qc_recipe__conds(const qc_recipe__call *c, const char *conds);

/* Check text against option o; 0, or QC_EFORMAT with "what" explained
 * (no position: the caller adds it). */
int qc_recipe__check_value(const qc_rt_opt *o, const char *text);

/* The token set called name, or NULL. */
qc_recipe__tokens *qc_recipe__find_tokens(const qc_recipe *r, const char *name);
/* Add a token set (name copied); NULL on out of memory. */
qc_recipe__tokens *qc_recipe__add_tokens(qc_recipe *r, const char *name);
/* Add a variant; NULL on out of memory. */
qc_recipe__variant *qc_recipe__add_variant(qc_recipe *r, const char *name);
/* Add a step to v; NULL on out of memory. */
qc_recipe__step *qc_recipe__add_step(qc_recipe *r, qc_recipe__variant *v, const qc_rt_tool *t);

/* 1 when s is a path make takes as a target and a shell as one word. */
int qc_recipe__path_ok(const char *s);
/* The value of variable name, or NULL. */
const char *qc_recipe__getvar(const qc_recipe *r, const char *name);

/* Declare variable name with default def (or the caller's override). */
int qc_recipe__declare(qc_recipe *r, const char *name, const char *def);

/* After parsing: the checks every recipe shares (chains, token sets,
 * release), and the derived names (paths, tool lists). */
int qc_recipe__finish(qc_recipe *r);

/* ---- the YAML tree (qc_recipe_yaml.c) ---- */

typedef struct qc_ynode qc_ynode;
typedef enum { QC_Y_SCALAR, QC_Y_SEQ, QC_Y_MAP } qc_ytype;
struct qc_ynode {
	qc_ytype type;
	int line, col;          /* 1-based */
	char *text;             /* QC_Y_SCALAR: the text as written */
	int plain;              /* QC_Y_SCALAR: not quoted, not a block scalar */
	qc_ynode **kids;        /* QC_Y_SEQ: items; QC_Y_MAP: key, value, key, value, ... */
	int n;                  /* items, or pairs for a map */
};

typedef struct qc_ydoc {
	qc_ynode *root;         /* NULL for an empty document */
	const char *file;
	qc_recipe *r;           /* for variables, and owner of the nodes */
} qc_ydoc;

/* Parse YAML text into d->root (one document; anchors and aliases are
 * resolved, duplicate keys refused). Errors name file:line:column. */
int qc_ydoc_parse(qc_ydoc *d, const char *text, size_t len);
/* QC_EFORMAT with "file:line:column: " and the message; returns the code. */
int qc_ydoc_err(const qc_ydoc *d, const qc_ynode *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The value of key in map n, or NULL. */
qc_ynode *qc_ynode_get(const qc_ynode *n, const char *key);
/* 1 for a scalar that is YAML's null (empty, ~, null). */
int qc_ynode_null(const qc_ynode *n);
/* A scalar's text with the variables expanded (owned by the recipe).
 * *out is NULL when the value is null, or consists of variables that
 * expand to nothing ("left out"). what names the key for messages. */
int qc_ydoc_text(qc_ydoc *d, const qc_ynode *n, const char *what, char **out);
/* 1 when text (expanded) is one of YAML's true or false words; *b set. */
int qc_recipe__bool(const char *text, int *b);

/* ---- llm-compressor recipes (qc_recipe_llmc.c) ---- */

/* 1 when the document's top level is an llm-compressor recipe. */
int qc_recipe__is_llmc(const qc_ynode *root);
int qc_recipe__parse_llmc(qc_ydoc *d);
/* The variables an llm-compressor recipe has, declared before parsing. */
int qc_recipe__llmc_vars(qc_recipe *r);

/* ---- commands (qc_recipe_make.c) ---- */

/* Shell-quote s into a malloc'd string (plain when it needs no quotes). */
char *qc_recipe__shq(const char *s);

#endif
