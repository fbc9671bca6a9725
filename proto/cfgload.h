/* cfgload: reads one YAML config file and loads it against a libcyaml schema; every
 * refusal, of shape or (through the check helpers) of meaning, reads
 * "<file>:<line>: <field>: <why>", its line taken from libyaml's own node marks. */
#pragma once

#include <cyaml/cyaml.h>
#include <stdbool.h>

#include "lserr.h"

#define CFGLOAD_STR_MAX 4095 /* PATH_MAX - 1: the longest path, URL or inline key we keep */
#define CFGLOAD_FIELD_MAX 512
#define CFGLOAD_Q_MAX 100

/* Schema pieces both configs use. Numbers are read as strings, so that "1.5" or "60s"
 * are refused (libcyaml's strtoull would take their prefix) and an absent value is NULL. */
#define CFGLOAD_REQ_STR(k, st, m) CYAML_FIELD_STRING_PTR(k, CYAML_FLAG_POINTER, st, m, 1, CFGLOAD_STR_MAX)
#define CFGLOAD_OPT_STR(k, st, m) \
        CYAML_FIELD_STRING_PTR(k, CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, st, m, 1, CFGLOAD_STR_MAX)
extern const cyaml_schema_value_t cfgload_str_entry;

struct cfgload;

/* Reads path and loads it against schema (mappings, lists and strings only). On
 * success *ret owns the bytes, their libyaml document (for lines) and libcyaml's
 * tree (cfgload_raw) until cfgload_free, and later refusals go to err. On failure
 * err says why and *ret is untouched. */
int cfgload_open(const char *path, const cyaml_schema_value_t *schema, lserr *err, struct cfgload **ret);
const void *cfgload_raw(const struct cfgload *ld);
struct cfgload *cfgload_free(struct cfgload *ld);
static inline void cfgload_freep(struct cfgload **ld)
{
        cfgload_free(*ld);
}

/* Refusals: each fills err once and returns LS_ECONFIG (-ENOMEM for nomem). bad puts
 * field on its own line; bad_at on the line of at (a field that is missing is shown
 * on the line of the setting that makes it necessary). A path absent from the file
 * falls back to the nearest part of it that is there. */
int cfgload_nomem(const struct cfgload *ld);
int cfgload_bad(const struct cfgload *ld, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
int cfgload_bad_at(const struct cfgload *ld, const char *at, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* A value from the file, quoted, cut short and without control bytes, for a message. */
const char *cfgload_quote(char buf[static CFGLOAD_Q_MAX], const char *s);
/* A field path ("groups[2].name") formatted into buf; returns buf. */
const char *cfgload_field(char buf[static CFGLOAD_FIELD_MAX], const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* strdup that records a failure in *oom, so a run of copies is checked once. NULL stays NULL. */
char *cfgload_strdup(const char *s, bool *oom);

/* Checks on one value; each returns 0 or refuses field. */
int cfgload_check_name(const struct cfgload *ld, const char *field, const char *s);
/* One line of text, and not a YAML null spelled out (libcyaml hands over "null"). */
int cfgload_check_text(const struct cfgload *ld, const char *field, const char *s);
/* tcp://, tls+tcp:// or ipc://; dial: the URL is connected to, so it needs a host. */
int cfgload_check_url(const struct cfgload *ld, const char *field, const char *url, bool dial);
/* "lockstep-pub-v1 <base64>" inline, or the path of a .pub file. */
int cfgload_check_pubkey(const struct cfgload *ld, const char *field, const char *s);
/* A whole decimal number in min..max; s NULL (absent) gives def. */
int cfgload_check_num(const struct cfgload *ld, const char *field, const char *s, unsigned def, unsigned min,
                      unsigned max, unsigned *ret);
/* true/yes/on or false/no/off; s NULL (absent) gives def. */
int cfgload_check_bool(const struct cfgload *ld, const char *field, const char *s, int def, int *ret);
