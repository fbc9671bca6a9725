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
 * whatever an agent sent. */
static void put_string(FILE *f, const char *s)
{
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *)s; *p;) {
                size_t n = json_utf8_len(p);
                if (!n) {
                        fputs("\\ufffd", f);
                        p++;
                        continue;
                }
                switch (*p) {
                case '"': fputs("\\\"", f); break;
                case '\\': fputs("\\\\", f); break;
                case '\n': fputs("\\n", f); break;
                case '\r': fputs("\\r", f); break;
                case '\t': fputs("\\t", f); break;
                default:
                        if (json_is_control(p, n))
                                fprintf(f, "\\u%04x", n == 1 ? p[0] : p[1]);
                        else
                                fwrite(p, 1, n, f);
                }
                p += n;
        }
        fputc('"', f);
}

static void prefix(struct json *j, const char *key)
{
        if (j->count[j->depth]++)
                fputc(',', j->f);
        if (key) {
                put_string(j->f, key);
                fputc(':', j->f);
        }
}

static void open_(struct json *j, const char *key, char c)
{
        prefix(j, key);
        fputc(c, j->f);
        if (j->depth + 1 < JSON_MAX_DEPTH)
                j->count[++j->depth] = 0;
}

void json_obj_begin(struct json *j, const char *key)
{
        open_(j, key, '{');
}

void json_obj_end(struct json *j)
{
        fputc('}', j->f);
        if (j->depth)
                j->depth--;
}

void json_arr_begin(struct json *j, const char *key)
{
        open_(j, key, '[');
}

void json_arr_end(struct json *j)
{
        fputc(']', j->f);
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
