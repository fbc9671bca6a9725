/* json: streaming writer. */
#include "json.h"

#include <math.h>

void json_init(struct json *j, FILE *f)
{
        j->f = f;
        j->depth = 0;
        j->count[0] = 0;
}

static void put_string(FILE *f, const char *s)
{
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                switch (*p) {
                case '"': fputs("\\\"", f); break;
                case '\\': fputs("\\\\", f); break;
                case '\n': fputs("\\n", f); break;
                case '\r': fputs("\\r", f); break;
                case '\t': fputs("\\t", f); break;
                default:
                        if (*p < 0x20)
                                fprintf(f, "\\u%04x", *p);
                        else
                                fputc(*p, f);
                }
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
