/* cfgload: one config file from bytes to libcyaml's tree. A libyaml event pass refuses
 * what libcyaml would mishandle, libyaml's document is walked against the schema so
 * every refusal has its line, and only then does libcyaml load the same bytes. */
#include "cfgload.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "cleanup.h"
#include "names.h"

#define CFG_FILE_MAX (1024 * 1024)
#define KEY_MAX 128  /* no schema key comes close; longer ones are refused early */
#define DEPTH_MAX 16 /* the schemas nest 6 deep */
#define FIELD_MAX CFGLOAD_FIELD_MAX
#define WALK_PATH_MAX (DEPTH_MAX * (KEY_MAX + 16))
#define WHY_MAX 448
#define KNOWN_MAX 320 /* agent.yaml's keys are 207 characters */
#define Q_MAX CFGLOAD_Q_MAX

_Static_assert(FIELD_MAX <= WALK_PATH_MAX, "a field path must fit the walker's path");
_Static_assert(KEY_MAX == 128 && DEPTH_MAX == 16, "messages spell these out");

#define PUBKEY_PREFIX "lockstep-pub-v1 "

struct cfgload {
        char *file;
        char *buf;
        size_t len;
        unsigned n_lines;
        lserr *err;
        yaml_document_t doc; /* the same bytes as libyaml nodes, for their lines */
        bool have_doc;
        const cyaml_schema_value_t *schema;
        void *raw; /* libcyaml's tree */
};

const cyaml_schema_value_t cfgload_str_entry = {
        CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, CFGLOAD_STR_MAX),
};

/* libcyaml logs nothing (log_fn NULL): every refusal is found before it loads. */
static const cyaml_config_t cyaml_cfg = {
        .log_fn = NULL,
        .mem_fn = cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
        .flags = CYAML_CFG_NO_ALIAS,
};

/* ---- messages ---- */

static const char *startswith(const char *s, const char *prefix)
{
        size_t n = strlen(prefix);

        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

static unsigned clamp_line(const struct cfgload *ld, unsigned line)
{
        /* libyaml puts end-of-file problems on the line after the last one. */
        if (line > ld->n_lines)
                return ld->n_lines;
        return line ? line : 1;
}

int cfgload_nomem(const struct cfgload *ld)
{
        return lserr_set(ld->err, -ENOMEM, "%s: out of memory", ld->file);
}

/* The one place a refusal is written; field NULL or "" names none. */
static int report(const struct cfgload *ld, unsigned line, const char *field, const char *why)
{
        char f[FIELD_MAX];

        snprintf(f, sizeof(f), "%s", field ? field : "");
        for (size_t i = 0; f[i]; i++)
                if ((unsigned char)f[i] < 0x20 || f[i] == 0x7f)
                        f[i] = '?';
        line = clamp_line(ld, line);
        if (f[0])
                return lserr_set(ld->err, LS_ECONFIG, "%s:%u: %s: %s", ld->file, line, f, why);
        return lserr_set(ld->err, LS_ECONFIG, "%s:%u: %s", ld->file, line, why);
}

const char *cfgload_quote(char buf[static Q_MAX], const char *s)
{
        size_t o = 0;

        buf[o++] = '"';
        for (; *s && o < Q_MAX - 5; s++) {
                unsigned char ch = (unsigned char)*s;
                buf[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
        }
        if (*s) {
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o++] = '"';
        buf[o] = '\0';
        return buf;
}

const char *cfgload_field(char buf[static FIELD_MAX], const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, FIELD_MAX, fmt, ap);
        va_end(ap);
        return buf;
}

char *cfgload_strdup(const char *s, bool *oom)
{
        char *p;

        if (!s)
                return NULL;
        p = strdup(s);
        if (!p)
                *oom = true;
        return p;
}

/* ---- the event pass: what libcyaml would mishandle or hide ---- */

struct frame {
        bool seq;
        bool want_key;
        unsigned idx;
        size_t plen; /* length of this container's own path */
};

struct walker {
        const struct cfgload *ld;
        struct frame st[DEPTH_MAX];
        unsigned depth;
        unsigned docs;
        char path[WALK_PATH_MAX];
};

static int walk_refuse(const struct walker *k, unsigned line, const char *why)
{
        return report(k->ld, line, k->path, why);
}

static const char *event_anchor(const yaml_event_t *ev)
{
        switch (ev->type) {
        case YAML_SCALAR_EVENT:
                return (const char *)ev->data.scalar.anchor;
        case YAML_SEQUENCE_START_EVENT:
                return (const char *)ev->data.sequence_start.anchor;
        case YAML_MAPPING_START_EVENT:
                return (const char *)ev->data.mapping_start.anchor;
        default:
                return NULL;
        }
}

/* Names the node by its path, so that a refusal here (or a syntax error inside
 * it) can say where it is. */
static int walk_node(struct walker *k, const yaml_event_t *ev, unsigned line)
{
        struct frame *f;

        if (k->depth == 0) {
                k->path[0] = '\0';
                if (ev->type == YAML_SCALAR_EVENT && ev->data.scalar.length == 0)
                        return walk_refuse(k, line, "the file holds no settings");
                if (ev->type != YAML_MAPPING_START_EVENT)
                        return walk_refuse(k, line, "the top level must be a mapping (key: value lines)");
        } else {
                f = &k->st[k->depth - 1];
                if (f->seq) {
                        snprintf(k->path + f->plen, sizeof(k->path) - f->plen, "[%u]", f->idx++);
                } else if (f->want_key) {
                        k->path[f->plen] = '\0';
                        if (ev->type != YAML_SCALAR_EVENT)
                                return walk_refuse(k, line, "a mapping key must be a plain string");
                        if (ev->data.scalar.length > KEY_MAX)
                                return walk_refuse(k, line, "mapping key longer than 128 bytes");
                        snprintf(k->path + f->plen, sizeof(k->path) - f->plen, "%s%s", f->plen ? "." : "",
                                 (const char *)ev->data.scalar.value);
                        f->want_key = false;
                } else {
                        f->want_key = true;
                }
        }
        if (ev->type == YAML_ALIAS_EVENT)
                return walk_refuse(k, line, "YAML aliases (*name) are not supported");
        if (event_anchor(ev))
                return walk_refuse(k, line, "YAML anchors (&name) are not supported");
        if (ev->type != YAML_SEQUENCE_START_EVENT && ev->type != YAML_MAPPING_START_EVENT)
                return 0;
        if (k->depth == DEPTH_MAX)
                return walk_refuse(k, line, "nested deeper than 16 levels");
        k->st[k->depth++] = (struct frame){
                .seq = ev->type == YAML_SEQUENCE_START_EVENT,
                .want_key = true,
                .plen = strlen(k->path),
        };
        return 0;
}

/* 1 at the end of the stream, 0 to go on, or a refusal. */
static int walk_event(struct walker *k, const yaml_event_t *ev)
{
        unsigned line = (unsigned)ev->start_mark.line + 1;

        switch (ev->type) {
        case YAML_STREAM_END_EVENT:
                if (k->docs == 0)
                        return walk_refuse(k, 1, "the file holds no settings");
                return 1;
        case YAML_DOCUMENT_START_EVENT:
                /* libcyaml would silently ignore every document after the first. */
                k->path[0] = '\0';
                if (++k->docs > 1)
                        return walk_refuse(k, line, "more than one YAML document (\"---\"); only one is allowed");
                return 0;
        case YAML_ALIAS_EVENT:
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
                return walk_node(k, ev, line);
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
                k->depth--;
                return 0;
        default:
                return 0;
        }
}

static int walk_syntax(struct walker *k, const yaml_parser_t *p)
{
        char why[WHY_MAX];
        const char *problem = p->problem ? p->problem : "syntax error";

        if (p->error == YAML_MEMORY_ERROR)
                return cfgload_nomem(k->ld);
        k->path[k->depth ? k->st[k->depth - 1].plen : 0] = '\0';
        if (p->context)
                snprintf(why, sizeof(why), "invalid YAML: %s (%s from line %zu)", problem, p->context,
                         p->context_mark.line + 1);
        else
                snprintf(why, sizeof(why), "invalid YAML: %s", problem);
        return walk_refuse(k, (unsigned)p->problem_mark.line + 1, why);
}

/* Syntax errors with the path they are in, aliases, anchors, extra documents,
 * non-scalar keys and deep nesting: refused here, before libyaml's document
 * (which resolves aliases and forgets anchors) is built from the same bytes. */
static int screen(const struct cfgload *ld)
{
        _cleanup_(yaml_parser_delete) yaml_parser_t p = { 0 };
        struct walker k = { .ld = ld };
        yaml_event_t ev;
        int r = 0;

        if (!yaml_parser_initialize(&p))
                return cfgload_nomem(ld);
        yaml_parser_set_input_string(&p, (const unsigned char *)ld->buf, ld->len);
        while (r == 0) {
                if (!yaml_parser_parse(&p, &ev))
                        return walk_syntax(&k, &p);
                r = walk_event(&k, &ev);
                yaml_event_delete(&ev);
        }
        return r < 0 ? r : 0;
}

static int load_document(struct cfgload *ld)
{
        _cleanup_(yaml_parser_delete) yaml_parser_t p = { 0 };

        if (!yaml_parser_initialize(&p))
                return cfgload_nomem(ld);
        yaml_parser_set_input_string(&p, (const unsigned char *)ld->buf, ld->len);
        if (!yaml_parser_load(&p, &ld->doc)) {
                /* The same bytes just passed the event pass: only memory can run out. */
                assert(p.error == YAML_MEMORY_ERROR);
                return cfgload_nomem(ld);
        }
        ld->have_doc = true;
        return 0;
}

/* ---- lines from the document ---- */

static const yaml_node_t *node_at(const struct cfgload *ld, int id)
{
        const yaml_document_t *d = &ld->doc;

        assert(id >= 1 && id <= d->nodes.top - d->nodes.start);
        return d->nodes.start + id - 1;
}

static unsigned node_line(const yaml_node_t *n)
{
        return (unsigned)n->start_mark.line + 1;
}

static const yaml_node_pair_t *pair_find(const struct cfgload *ld, const yaml_node_t *map, const char *key,
                                         size_t len)
{
        const yaml_node_pair_t *p;

        for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
                const yaml_node_t *k = node_at(ld, p->key);

                /* strlen, as libcyaml compares keys with strcmp. */
                if (k->type == YAML_SCALAR_NODE && strlen((const char *)k->data.scalar.value) == len &&
                    memcmp(k->data.scalar.value, key, len) == 0)
                        return p;
        }
        return NULL;
}

/* Line of path ("a.b[2].c"): a mapping field is on its key's line, a list item on
 * its own; the part of the path that is not in the file is dropped. */
static unsigned path_line(const struct cfgload *ld, const char *path)
{
        const yaml_node_t *n = ld->doc.nodes.start;
        unsigned line = node_line(n);
        const char *p = path;

        while (*p) {
                if (*p == '[') {
                        char *end;
                        unsigned long i = strtoul(p + 1, &end, 10);

                        if (*end != ']' || n->type != YAML_SEQUENCE_NODE ||
                            i >= (unsigned long)(n->data.sequence.items.top - n->data.sequence.items.start))
                                break;
                        n = node_at(ld, n->data.sequence.items.start[i]);
                        line = node_line(n);
                        p = end + 1;
                } else {
                        const yaml_node_pair_t *pair;
                        size_t len;

                        p += *p == '.';
                        len = strcspn(p, ".[");
                        if (n->type != YAML_MAPPING_NODE || !(pair = pair_find(ld, n, p, len)))
                                break;
                        line = node_line(node_at(ld, pair->key));
                        n = node_at(ld, pair->value);
                        p += len;
                }
        }
        return line;
}

static int vbad(const struct cfgload *ld, const char *at, const char *field, const char *fmt, va_list ap)
        __attribute__((format(printf, 4, 0)));
static int vbad(const struct cfgload *ld, const char *at, const char *field, const char *fmt, va_list ap)
{
        char why[WHY_MAX];

        vsnprintf(why, sizeof(why), fmt, ap);
        return report(ld, path_line(ld, at), field, why);
}

int cfgload_bad_at(const struct cfgload *ld, const char *at, const char *field, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vbad(ld, at, field, fmt, ap);
        va_end(ap);
        return r;
}

int cfgload_bad(const struct cfgload *ld, const char *field, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vbad(ld, field, field, fmt, ap);
        va_end(ap);
        return r;
}

/* ---- the document against the schema: what libcyaml would refuse, with its line ---- */

struct sw {
        const struct cfgload *ld;
        char path[FIELD_MAX];
};

static int sw_value(struct sw *w, const cyaml_schema_value_t *s, const yaml_node_t *n, unsigned line);

static int sw_refuse(const struct sw *w, unsigned line, const char *why)
{
        return report(w->ld, line, w->path, why);
}

/* Appends ".key" (or "[idx]") to the path; returns the length to cut back to. */
static size_t sw_push_key(struct sw *w, const char *key)
{
        size_t plen = strlen(w->path);

        snprintf(w->path + plen, sizeof(w->path) - plen, "%s%s", plen ? "." : "", key);
        return plen;
}

static size_t sw_push_idx(struct sw *w, unsigned idx)
{
        size_t plen = strlen(w->path);

        snprintf(w->path + plen, sizeof(w->path) - plen, "[%u]", idx);
        return plen;
}

static const char *schema_shape(const cyaml_schema_value_t *s)
{
        if (s->type == CYAML_MAPPING)
                return "a mapping (key: value)";
        if (s->type == CYAML_SEQUENCE || s->type == CYAML_SEQUENCE_FIXED || s->type == CYAML_FLAGS)
                return "a list";
        return "a single value";
}

static const char *node_shape(const yaml_node_t *n)
{
        if (n->type == YAML_MAPPING_NODE)
                return "a mapping (key: value)";
        if (n->type == YAML_SEQUENCE_NODE)
                return "a list";
        return "a single value";
}

static int sw_wrong_type(const struct sw *w, const cyaml_schema_value_t *s, const yaml_node_t *n, unsigned line)
{
        char why[WHY_MAX];

        snprintf(why, sizeof(why), "wrong type: expected %s, got %s", schema_shape(s), node_shape(n));
        return sw_refuse(w, line, why);
}

static int sw_unknown_key(const struct sw *w, const cyaml_schema_field_t *fields, const char *key, unsigned line)
{
        char known[KNOWN_MAX], why[WHY_MAX], qb[Q_MAX];
        size_t o = 0;

        known[0] = '\0';
        for (const cyaml_schema_field_t *f = fields; f->key && o < sizeof(known); f++)
                o += (size_t)snprintf(known + o, sizeof(known) - o, "%s%s", o ? ", " : "", f->key);
        snprintf(why, sizeof(why), "unknown key %s (known: %s)", cfgload_quote(qb, key), known);
        return sw_refuse(w, line, why);
}

static const cyaml_schema_field_t *field_find(const cyaml_schema_field_t *fields, const char *key)
{
        for (const cyaml_schema_field_t *f = fields; f->key; f++)
                if (strcmp(f->key, key) == 0)
                        return f;
        return NULL;
}

/* One key of a mapping: known, given once, and a value of the field's shape. */
static int sw_pair(struct sw *w, const cyaml_schema_field_t *fields, const yaml_node_t *map,
                   const yaml_node_pair_t *p)
{
        const yaml_node_t *key = node_at(w->ld, p->key);
        const char *k = (const char *)key->data.scalar.value;
        const cyaml_schema_field_t *f = field_find(fields, k);
        const yaml_node_pair_t *first;
        unsigned line = node_line(key);
        char why[WHY_MAX];
        size_t plen;
        int r;

        assert(key->type == YAML_SCALAR_NODE); /* the event pass refused any other key */
        plen = sw_push_key(w, k);
        if (!f)
                return sw_unknown_key(w, fields, k, line);
        first = pair_find(w->ld, map, k, strlen(k));
        if (first != p) {
                snprintf(why, sizeof(why), "duplicate key (first given on line %u)",
                         node_line(node_at(w->ld, first->key)));
                return sw_refuse(w, line, why);
        }
        r = sw_value(w, &f->value, node_at(w->ld, p->value), line);
        if (r < 0)
                return r;
        w->path[plen] = '\0';
        return 0;
}

/* line: where the mapping is, for a required field that is not in it. */
static int sw_mapping(struct sw *w, const cyaml_schema_value_t *s, const yaml_node_t *n, unsigned line)
{
        const cyaml_schema_field_t *fields = s->mapping.fields;
        int r;

        for (const yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
                r = sw_pair(w, fields, n, p);
                if (r < 0)
                        return r;
        }
        for (const cyaml_schema_field_t *f = fields; f->key; f++) {
                if ((f->value.flags & CYAML_FLAG_OPTIONAL) || pair_find(w->ld, n, f->key, strlen(f->key)))
                        continue;
                sw_push_key(w, f->key);
                return sw_refuse(w, line, "required field is missing");
        }
        return 0;
}

static int sw_sequence(struct sw *w, const cyaml_schema_value_t *s, const yaml_node_t *n, unsigned line)
{
        const yaml_node_item_t *items = n->data.sequence.items.start;
        unsigned count = (unsigned)(n->data.sequence.items.top - items);
        char why[WHY_MAX];
        int r;

        for (unsigned i = 0; i < count; i++) {
                const yaml_node_t *item = node_at(w->ld, items[i]);
                size_t plen = sw_push_idx(w, i);

                if (i == s->sequence.max) {
                        snprintf(why, sizeof(why), "too many items (at most %u)", s->sequence.max);
                        return sw_refuse(w, node_line(item), why);
                }
                r = sw_value(w, s->sequence.entry, item, node_line(item));
                if (r < 0)
                        return r;
                w->path[plen] = '\0';
        }
        if (count >= s->sequence.min)
                return 0;
        if (s->sequence.min == 1)
                return sw_refuse(w, line, "must not be empty");
        snprintf(why, sizeof(why), "needs at least %u items", s->sequence.min);
        return sw_refuse(w, line, why);
}

static int sw_string(const struct sw *w, const cyaml_schema_value_t *s, const yaml_node_t *n, unsigned line)
{
        /* strlen, not the scalar's length: libcyaml stops at a "\0" escape too. */
        size_t len = strlen((const char *)n->data.scalar.value);
        char why[WHY_MAX];

        if (len < s->string.min)
                return sw_refuse(w, line, "must not be empty");
        if (len > s->string.max) {
                snprintf(why, sizeof(why), "longer than %u bytes", s->string.max);
                return sw_refuse(w, line, why);
        }
        return 0;
}

/* line: where the value is, a mapping field's being its key's. */
static int sw_value(struct sw *w, const cyaml_schema_value_t *s, const yaml_node_t *n, unsigned line)
{
        /* An empty value is NULL where the schema allows it ("groups:"). */
        if ((s->flags & CYAML_FLAG_POINTER_NULL) == CYAML_FLAG_POINTER_NULL && n->type == YAML_SCALAR_NODE &&
            n->data.scalar.length == 0)
                return 0;
        switch (s->type) {
        case CYAML_MAPPING:
                if (n->type != YAML_MAPPING_NODE)
                        return sw_wrong_type(w, s, n, line);
                return sw_mapping(w, s, n, line);
        case CYAML_SEQUENCE:
                if (n->type != YAML_SEQUENCE_NODE)
                        return sw_wrong_type(w, s, n, line);
                return sw_sequence(w, s, n, line);
        case CYAML_STRING:
                if (n->type != YAML_SCALAR_NODE)
                        return sw_wrong_type(w, s, n, line);
                return sw_string(w, s, n, line);
        default:
                /* The schemas are ours, and use nothing else. */
                assert(!"cfgload: schema type not supported");
                return sw_refuse(w, line, "schema type not supported");
        }
}

static int schema_walk(const struct cfgload *ld, const cyaml_schema_value_t *schema)
{
        struct sw w = { .ld = ld };
        const yaml_node_t *root = ld->doc.nodes.start;

        return sw_value(&w, schema, root, node_line(root));
}

/* ---- reading ---- */

/* Lines as libyaml numbers them: LF, CR and CRLF each end one, and so do the
 * Unicode NEL, LS and PS breaks. */
static unsigned count_lines(const char *b, size_t n)
{
        const unsigned char *u = (const unsigned char *)b;
        unsigned breaks = 0;
        size_t i = 0, after_last = 0;

        while (i < n) {
                size_t w = 0;

                if (u[i] == '\r')
                        w = i + 1 < n && u[i + 1] == '\n' ? 2 : 1;
                else if (u[i] == '\n')
                        w = 1;
                else if (u[i] == 0xc2 && i + 1 < n && u[i + 1] == 0x85)
                        w = 2;
                else if (u[i] == 0xe2 && i + 2 < n && u[i + 1] == 0x80 && (u[i + 2] == 0xa8 || u[i + 2] == 0xa9))
                        w = 3;
                if (!w) {
                        i++;
                        continue;
                }
                breaks++;
                i += w;
                after_last = i;
        }
        if (after_last < n || breaks == 0)
                breaks++;
        return breaks;
}

static int read_fd(struct cfgload *ld, int fd)
{
        ssize_t n;
        int r;

        /* Read at most one byte past the limit, whatever fstat said: the file may grow
         * or not be a regular file. */
        ld->buf = malloc(CFG_FILE_MAX + 1);
        if (!ld->buf)
                return cfgload_nomem(ld);
        while (ld->len < CFG_FILE_MAX + 1) {
                n = read(fd, ld->buf + ld->len, CFG_FILE_MAX + 1 - ld->len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        return lserr_set(ld->err, r, "%s: cannot read: %s", ld->file, strerror(-r));
                }
                if (n == 0)
                        break;
                ld->len += (size_t)n;
        }
        if (ld->len > CFG_FILE_MAX)
                return lserr_set(ld->err, LS_ECONFIG, "%s: more than the 1 MiB a configuration may have", ld->file);
        ld->n_lines = count_lines(ld->buf, ld->len);
        return 0;
}

static int read_file(struct cfgload *ld)
{
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r;

        fd = open(ld->file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                return lserr_set(ld->err, r, "%s: cannot open: %s", ld->file, strerror(-r));
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                return lserr_set(ld->err, r, "%s: cannot stat: %s", ld->file, strerror(-r));
        }
        /* A config names keys, trusted keys and hooks: only its owner (us or root) may
         * change it. Checked on the open file, not on a path that could be swapped. */
        if (st.st_mode & 022)
                return lserr_set(ld->err, LS_ECONFIG,
                                 "%s: mode %04o lets group or other write it; fix with: chmod go-w '%s'", ld->file,
                                 (unsigned)(st.st_mode & 07777), ld->file);
        if (st.st_uid != geteuid() && st.st_uid != 0)
                return lserr_set(ld->err, LS_ECONFIG, "%s: owned by uid %u, neither this process's uid %u nor root",
                                 ld->file, (unsigned)st.st_uid, (unsigned)geteuid());
        if (S_ISREG(st.st_mode) && st.st_size > CFG_FILE_MAX)
                return lserr_set(ld->err, LS_ECONFIG, "%s: %jd bytes, more than the 1 MiB a configuration may have",
                                 ld->file, (intmax_t)st.st_size);
        return read_fd(ld, fd);
}

/* ---- public ---- */

int cfgload_open(const char *path, const cyaml_schema_value_t *schema, lserr *err, struct cfgload **ret)
{
        _cleanup_(cfgload_freep) struct cfgload *ld = NULL;
        cyaml_err_t e;
        int r;

        ld = calloc(1, sizeof(*ld));
        if (ld)
                ld->file = strdup(path);
        if (!ld || !ld->file)
                return lserr_set(err, -ENOMEM, "%s: out of memory", path);
        ld->err = err;
        ld->schema = schema;
        r = read_file(ld);
        if (r < 0)
                return r;
        r = screen(ld);
        if (r < 0)
                return r;
        r = load_document(ld);
        if (r < 0)
                return r;
        r = schema_walk(ld, schema);
        if (r < 0)
                return r;
        e = cyaml_load_data((const uint8_t *)ld->buf, ld->len, &cyaml_cfg, schema, (cyaml_data_t **)&ld->raw,
                            NULL);
        if (e == CYAML_ERR_OOM)
                return cfgload_nomem(ld);
        /* Only if libcyaml refuses what the schema walk let through: no line to give. */
        if (e != CYAML_OK)
                return lserr_set(err, LS_ECONFIG, "%s: libcyaml refused the file: %s", ld->file, cyaml_strerror(e));
        assert(ld->raw); /* the event pass refused a file without a mapping */
        *ret = TAKE_PTR(ld);
        return 0;
}

const void *cfgload_raw(const struct cfgload *ld)
{
        return ld->raw;
}

struct cfgload *cfgload_free(struct cfgload *ld)
{
        if (!ld)
                return NULL;
        cyaml_free(&cyaml_cfg, ld->schema, ld->raw, 0);
        if (ld->have_doc)
                yaml_document_delete(&ld->doc);
        free(ld->buf);
        free(ld->file);
        free(ld);
        return NULL;
}

/* ---- checks on values ---- */

int cfgload_check_name(const struct cfgload *ld, const char *field, const char *s)
{
        char qb[Q_MAX];

        if (names_valid(s))
                return 0;
        return cfgload_bad(ld, field, "invalid name %s (1-64 of A-Z a-z 0-9 . _ -, and not \".\" or \"..\")",
                           cfgload_quote(qb, s));
}

int cfgload_check_text(const struct cfgload *ld, const char *field, const char *s)
{
        static const char *const nulls[] = { "~", "null", "Null", "NULL" };

        for (const char *p = s; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        return cfgload_bad(ld, field, "contains a control character");
        for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
                if (strcmp(s, nulls[i]) == 0)
                        return cfgload_bad(ld, field, "null is not a value here; leave the key out instead");
        return 0;
}

/* Host and port of a tcp:// or tls+tcp:// URL; rest is what follows the scheme. */
static int check_host_port(const struct cfgload *ld, const char *field, const char *url, const char *rest,
                           bool dial)
{
        char qb[Q_MAX];
        const char *colon = strrchr(rest, ':');
        unsigned long port = 0;

        if (!colon || !colon[1])
                return cfgload_bad(ld, field, "URL %s has no port", cfgload_quote(qb, url));
        for (const char *p = colon + 1; *p; p++) {
                if (*p < '0' || *p > '9' || port > 65535)
                        return cfgload_bad(ld, field, "URL %s has an invalid port (1..65535)", cfgload_quote(qb, url));
                port = port * 10 + (unsigned long)(*p - '0');
        }
        if (port == 0 || port > 65535)
                return cfgload_bad(ld, field, "URL %s has an invalid port (1..65535)", cfgload_quote(qb, url));
        if (colon == rest && dial)
                return cfgload_bad(ld, field, "URL %s has no host", cfgload_quote(qb, url));
        if (rest[0] != '[' && memchr(rest, ':', (size_t)(colon - rest)))
                return cfgload_bad(ld, field, "URL %s: an IPv6 address goes in brackets, as in tcp://[fd00::2]:7400",
                                   cfgload_quote(qb, url));
        if (strcspn(rest, "/ ") < (size_t)(colon - rest) ||
            (rest[0] == '[' && (colon == rest + 1 || colon[-1] != ']')))
                return cfgload_bad(ld, field, "URL %s has an invalid host", cfgload_quote(qb, url));
        return 0;
}

int cfgload_check_url(const struct cfgload *ld, const char *field, const char *url, bool dial)
{
        char qb[Q_MAX];
        const char *rest;
        int r;

        r = cfgload_check_text(ld, field, url);
        if (r < 0)
                return r;
        if ((rest = startswith(url, "ipc://"))) {
                if (!*rest)
                        return cfgload_bad(ld, field, "URL %s has no socket path", cfgload_quote(qb, url));
                return 0;
        }
        rest = startswith(url, "tcp://");
        if (!rest)
                rest = startswith(url, "tls+tcp://");
        if (!rest)
                return cfgload_bad(ld, field, "unsupported URL %s (use tcp://, tls+tcp:// or ipc://)",
                                   cfgload_quote(qb, url));
        return check_host_port(ld, field, url, rest, dial);
}

int cfgload_check_pubkey(const struct cfgload *ld, const char *field, const char *s)
{
        static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char qb[Q_MAX];
        const char *k;
        size_t n, body;

        k = startswith(s, PUBKEY_PREFIX);
        if (!k) {
                if (startswith(s, "lockstep-pub-"))
                        return cfgload_bad(ld, field,
                                           "unsupported key format %s (inline: \"lockstep-pub-v1 <base64>\")",
                                           cfgload_quote(qb, s));
                return cfgload_check_text(ld, field, s);
        }
        n = strlen(k);
        body = strspn(k, b64);
        if (n == 0 || n % 4 != 0 || (strcmp(k + body, "") != 0 && strcmp(k + body, "=") != 0 &&
                                     strcmp(k + body, "==") != 0))
                return cfgload_bad(ld, field, "inline key %s is not valid base64", cfgload_quote(qb, s));
        return 0;
}

int cfgload_check_num(const struct cfgload *ld, const char *field, const char *s, unsigned def, unsigned min,
                      unsigned max, unsigned *ret)
{
        char qb[Q_MAX];
        unsigned long v = 0;

        if (!s) {
                *ret = def;
                return 0;
        }
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return cfgload_bad(ld, field, "expected a whole number, got %s", cfgload_quote(qb, s));
                if (v <= max)
                        v = v * 10 + (unsigned long)(*p - '0');
        }
        if (v < min || v > max)
                return cfgload_bad(ld, field, "%s is out of range (%u..%u)", cfgload_quote(qb, s), min, max);
        *ret = (unsigned)v;
        return 0;
}

/* YAML's usual spellings; anything else is refused rather than guessed. */
int cfgload_check_bool(const struct cfgload *ld, const char *field, const char *s, int def, int *ret)
{
        char qb[Q_MAX];

        if (!s)
                *ret = def;
        else if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))
                *ret = 1;
        else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))
                *ret = 0;
        else
                return cfgload_bad(ld, field, "expected true or false, got %s", cfgload_quote(qb, s));
        return 0;
}
