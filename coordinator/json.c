/* json: streaming writer. */
#include "json.h"

#include <math.h>

void json_init(struct json *j, FILE *f)
{
        j->f = f;
        j->depth = 0;
        j->count[0] = 0;
}

size_t json_utf8_len(const unsigned char *p)
{
        unsigned char c = p[0];
        /* The second byte's range for each lead: no overlong forms, no surrogates,
         * nothing past U+10FFFF. */
        unsigned char lo = 0x80, hi = 0xbf;
        size_t n;

        if (c < 0x80)
                return c ? 1 : 0;
        if (c >= 0xc2 && c <= 0xdf)
                n = 2;
        else if (c >= 0xe0 && c <= 0xef)
                n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        else if (c >= 0xf0 && c <= 0xf4)
                n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        else
                return 0;
        if (p[1] < lo || p[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
        return n;
}

int json_is_control(const unsigned char *p, size_t n)
{
        return (n == 1 && (p[0] < 0x20 || p[0] == 0x7f)) || (n == 2 && p[0] == 0xc2 && p[1] < 0xa0);
}

/* Control characters (C0, DEL and the C1 range, which some terminals obey) are
 * escaped; a byte that is not UTF-8 becomes U+FFFD, so the output is valid JSON
 * whatever an agent sent. Runs of bytes that need nothing are written at once,
 * and unlocked: a writer's FILE is its own thread's (a 10,000-member report
 * is ~200,000 strings). */
static void put_string(FILE *f, const char *s)
{
        const unsigned char *p = (const unsigned char *)s, *run = p;

        fputc_unlocked('"', f);
        while (*p) {
                size_t n = json_utf8_len(p);

                if (n == 1 && *p >= 0x20 && *p != '"' && *p != '\\' && *p != 0x7f) {
                        p++;
                        continue;
                }
                if (n > 1 && !json_is_control(p, n)) {
                        p += n;
                        continue;
                }
                fwrite_unlocked(run, 1, (size_t)(p - run), f);
                if (!n) {
                        fputs_unlocked("\\ufffd", f);
                        p++;
                } else {
                        switch (*p) {
                        case '"': fputs_unlocked("\\\"", f); break;
                        case '\\': fputs_unlocked("\\\\", f); break;
                        case '\n': fputs_unlocked("\\n", f); break;
                        case '\r': fputs_unlocked("\\r", f); break;
                        case '\t': fputs_unlocked("\\t", f); break;
                        default: fprintf(f, "\\u%04x", n == 1 ? p[0] : p[1]);
                        }
                        p += n;
                }
                run = p;
        }
        fwrite_unlocked(run, 1, (size_t)(p - run), f);
        fputc_unlocked('"', f);
}

static void prefix(struct json *j, const char *key)
{
        if (j->count[j->depth]++)
                fputc_unlocked(',', j->f);
        if (key) {
                put_string(j->f, key);
                fputc_unlocked(':', j->f);
        }
}

static void open_(struct json *j, const char *key, char c)
{
        prefix(j, key);
        fputc_unlocked(c, j->f);
        if (j->depth + 1 < JSON_MAX_DEPTH)
                j->count[++j->depth] = 0;
}

void json_obj_begin(struct json *j, const char *key)
{
        open_(j, key, '{');
}

void json_obj_end(struct json *j)
{
        fputc_unlocked('}', j->f);
        if (j->depth)
                j->depth--;
}

void json_arr_begin(struct json *j, const char *key)
{
        open_(j, key, '[');
}

void json_arr_end(struct json *j)
{
        fputc_unlocked(']', j->f);
        if (j->depth)
                j->depth--;
}

void json_str(struct json *j, const char *key, const char *val)
{
        prefix(j, key);
        if (val)
                put_string(j->f, val);
        else
                fputs("null", j->f);
}

void json_int(struct json *j, const char *key, long long val)
{
        prefix(j, key);
        fprintf(j->f, "%lld", val);
}

void json_uint(struct json *j, const char *key, unsigned long long val)
{
        prefix(j, key);
        fprintf(j->f, "%llu", val);
}

void json_double(struct json *j, const char *key, double val)
{
        prefix(j, key);
        if (isfinite(val))
                fprintf(j->f, "%.3f", val);
        else
                fputs("null", j->f);
}

void json_bool(struct json *j, const char *key, int val)
{
        prefix(j, key);
        fputs(val ? "true" : "false", j->f);
}

void json_end(struct json *j)
{
        fputc('\n', j->f);
        fflush(j->f);
}
