/* cron: parses 5-field cron expressions into bit sets and finds the next matching
 * minute, with its own UTC calendar arithmetic (proleptic Gregorian, no DST). */
#include "cron.h"

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define FIELD_COUNT 5
#define NUM_CAP 100000 /* numbers above this are all "out of range"; keeps parsing overflow-free */

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: past these cron_next() gives up
 * rather than reason about years of fewer or more than four digits. */
#define AFTER_MIN (-62135596800LL)
#define AFTER_MAX 253402300799LL
#define HORIZON_SECS (9LL * 366 * 86400)

#define MINUTE_MASK ((UINT64_C(1) << 60) - 1)
#define HOUR_MASK ((UINT32_C(1) << 24) - 1)

struct field {
        const char *name; /* for messages */
        int lo, hi;       /* values the text may hold; '*' means lo-hi */
        const char *const *names; /* 3-letter names of lo..., or NULL */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const wday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct field fields[FIELD_COUNT] = {
        {"minute", 0, 59, NULL},
        {"hour", 0, 23, NULL},
        {"day-of-month", 1, 31, NULL},
        {"month", 1, 12, month_names},
        {"day-of-week", 0, 7, wday_names},
};

static const struct {
        const char *name;
        const char *expr;
} shorthands[] = {
        {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"},  {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"},
};

/* One parse: the text, a copy safe to put in messages (same offsets, every byte a
 * terminal could act on replaced by '?') and where the message goes. */
struct pctx {
        const char *s;
        char shown[CRON_EXPR_MAX + 1];
        const struct field *f;
        lserr *err;
};

static bool is_blank(char c)
{
        return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char lower(char c)
{
        return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Whether the n bytes at s spell name, ignoring case. */
static bool spells(const char *s, size_t n, const char *name)
{
        if (n != strlen(name))
                return false;
        for (size_t i = 0; i < n; i++)
                if (lower(s[i]) != name[i])
                        return false;
        return true;
}

static bool is_printable(char c)
{
        return (unsigned char)c >= 0x20 && (unsigned char)c < 0x7f;
}

/* The character at i where none was expected; item is [b, e). */
static int bad_char(struct pctx *p, size_t i, size_t b, size_t e)
{
        if (is_printable(p->s[i]))
                return lserr_set(p->err, -EINVAL, "schedule \"%s\": %s: unexpected '%c' in \"%.*s\"", p->shown,
                                 p->f->name, p->s[i], (int)(e - b), p->shown + b);
        return lserr_set(p->err, -EINVAL, "schedule \"%s\": %s: byte 0x%02x in \"%.*s\" is not allowed", p->shown,
                         p->f->name, (unsigned char)p->s[i], (int)(e - b), p->shown + b);
}

/* A number or (in month and day-of-week) a name at *i, within the item [b, e). */
static int parse_value(struct pctx *p, size_t *i, size_t b, size_t e, int *ret)
{
        size_t start = *i, n;
        int v = 0;

        if (start >= e)
                return lserr_set(p->err, -EINVAL, "schedule \"%s\": %s: \"%.*s\" ends where a value should follow",
                                 p->shown, p->f->name, (int)(e - b), p->shown + b);
        if (is_digit(p->s[start])) {
                for (n = start; n < e && is_digit(p->s[n]); n++)
                        if (v <= NUM_CAP)
                                v = v * 10 + (p->s[n] - '0');
                if (v < p->f->lo || v > p->f->hi)
                        return lserr_set(p->err, -EINVAL, "schedule \"%s\": %s: %.*s is out of %d-%d", p->shown,
                                         p->f->name, (int)(n - start), p->shown + start, p->f->lo, p->f->hi);
                *i = n;
                *ret = v;
                return 0;
        }
        if (!is_alpha(p->s[start]))
                return bad_char(p, start, b, e);
        for (n = start; n < e && is_alpha(p->s[n]); n++)
                ;
        if (!p->f->names)
                return lserr_set(p->err, -EINVAL, "schedule \"%s\": %s: \"%.*s\" is not a number", p->shown,
                                 p->f->name, (int)(n - start), p->shown + start);
        for (int k = 0; p->f->names[k]; k++)
                if (spells(p->s + start, n - start, p->f->names[k])) {
                        *i = n;
                        /* Names start at the field's first value: jan = 1, sun = 0. */
                        *ret = p->f->lo + k;
                        return 0;
                }
        if (p->f->names == month_names)
                return lserr_set(p->err, -EINVAL, "schedule \"%s\": %s: \"%.*s\" is not a month name (jan-dec)",
                                 p->shown, p->f->name, (int)(n - start), p->shown + start);
        return lserr_set(p->err, -EINVAL, "schedule \"%s\": %s: \"%.*s\" is not a weekday name (sun-sat)", p->shown,
                         p->f->name, (int)(n - start), p->shown + start);
}

/* One comma-separated item [b, e): "*", "N", "N-M", each optionally "/STEP". */
static int parse_item(struct pctx *p, size_t b, size_t e, uint64_t *bits)
{
        size_t i = b;
        int from, to, step = 1, r;

        if (b == e)
                return 1; /* the caller reports empty items with the whole field */
        if (p->s[i] == '*') {
                from = p->f->lo;
                to = p->f->hi;
                i++;
        } else {
                r = parse_value(p, &i, b, e, &from);
                if (r < 0)
                        return r;
                to = from;
                if (i < e && p->s[i] == '-') {
                        i++;
                        r = parse_value(p, &i, b, e, &to);
                        if (r < 0)
                                return r;
                        if (to < from)
                                return lserr_set(p->err, -EINVAL, "schedule \"%s\": %s: range \"%.*s\" runs backwards",
                                                 p->shown, p->f->name, (int)(i - b), p->shown + b);
                } else if (i < e && p->s[i] == '/') {
                        /* "N/STEP": from N to the end of the field. */
                        to = p->f->hi;
                }
        }
        if (i < e && p->s[i] == '/') {
                size_t start = ++i;

                if (i >= e)
                        return lserr_set(p->err, -EINVAL, "schedule \"%s\": %s: \"%.*s\" lacks a step after '/'",
                                         p->shown, p->f->name, (int)(e - b), p->shown + b);
                if (!is_digit(p->s[i]))
                        return bad_char(p, i, b, e);
                step = 0;
                for (; i < e && is_digit(p->s[i]); i++)
                        if (step <= NUM_CAP)
                                step = step * 10 + (p->s[i] - '0');
                if (step < 1 || step > p->f->hi)
                        return lserr_set(p->err, -EINVAL, "schedule \"%s\": %s: step %.*s in \"%.*s\" is out of 1-%d",
                                         p->shown, p->f->name, (int)(i - start), p->shown + start, (int)(e - b),
                                         p->shown + b, p->f->hi);
        }
        if (i < e)
                return bad_char(p, i, b, e);
        for (int v = from; v <= to; v += step)
                *bits |= UINT64_C(1) << v;
        return 0;
}

/* The field [b, e): a comma list of items, OR-ed into *bits. */
static int parse_field(struct pctx *p, size_t b, size_t e, uint64_t *bits)
{
        size_t i = b;

        for (;;) {
                size_t j = i;
                int r;

                while (j < e && p->s[j] != ',')
                        j++;
                r = parse_item(p, i, j, bits);
                if (r > 0)
                        return lserr_set(p->err, -EINVAL, "schedule \"%s\": %s: empty item in \"%.*s\"", p->shown,
                                         p->f->name, (int)(e - b), p->shown + b);
                if (r < 0)
                        return r;
                if (j == e)
                        return 0;
                i = j + 1;
        }
}

static int parse_shorthand(struct pctx *p, size_t b, size_t e, struct cron *ret)
{
        size_t n = b;
        int r;

        while (n < e && !is_blank(p->s[n]))
                n++;
        for (size_t k = 0; k < sizeof(shorthands) / sizeof(shorthands[0]); k++) {
                if (!spells(p->s + b, n - b, shorthands[k].name))
                        continue;
                if (n != e)
                        return lserr_set(p->err, -EINVAL, "schedule \"%s\": nothing may follow %s", p->shown,
                                         shorthands[k].name);
                r = cron_parse(shorthands[k].expr, ret, NULL);
                assert(r == 0); /* our own table */
                return r;
        }
        if (spells(p->s + b, n - b, "@reboot"))
                return lserr_set(p->err, -EINVAL,
                                 "schedule \"%s\": @reboot names no time; use a time such as @daily or \"0 3 * * *\"",
                                 p->shown);
        return lserr_set(p->err, -EINVAL,
                         "schedule \"%s\": unknown shorthand \"%.*s\" (known: @yearly, @annually, @monthly, @weekly, "
                         "@daily, @midnight, @hourly)",
                         p->shown, (int)(n - b), p->shown + b);
}

int cron_parse(const char *expr, struct cron *ret, lserr *err)
{
        struct pctx p = {.s = expr, .err = err};
        struct cron c = {0};
        size_t len, b, e, fb[FIELD_COUNT], fe[FIELD_COUNT];
        uint64_t bits[FIELD_COUNT] = {0};
        int nfields = 0, r;

        assert(ret);
        len = expr ? strnlen(expr, CRON_EXPR_MAX + 1) : 0;
        if (len > CRON_EXPR_MAX)
                return lserr_set(err, -EINVAL, "schedule is longer than the %d characters a schedule may have",
                                 CRON_EXPR_MAX);
        for (size_t i = 0; i < len; i++)
                p.shown[i] = is_printable(expr[i]) || expr[i] == '\t' ? expr[i] : '?';
        p.shown[len] = '\0';

        for (b = 0; b < len && is_blank(expr[b]); b++)
                ;
        for (e = len; e > b && is_blank(expr[e - 1]); e--)
                ;
        if (b == e)
                return lserr_set(err, -EINVAL,
                                 "schedule \"%s\" is empty; expected minute hour day-of-month month day-of-week, "
                                 "or a shorthand such as @daily",
                                 p.shown);
        if (expr[b] == '@')
                return parse_shorthand(&p, b, e, ret);

        for (size_t i = b; i < e;) {
                size_t j = i;

                while (j < e && !is_blank(expr[j]))
                        j++;
                if (nfields < FIELD_COUNT) {
                        fb[nfields] = i;
                        fe[nfields] = j;
                }
                nfields++;
                for (i = j; i < e && is_blank(expr[i]); i++)
                        ;
        }
        if (nfields != FIELD_COUNT)
                return lserr_set(err, -EINVAL,
                                 "schedule \"%s\": %d fields, expected 5 (minute hour day-of-month month day-of-week)",
                                 p.shown, nfields);

        for (int k = 0; k < FIELD_COUNT; k++) {
                p.f = &fields[k];
                r = parse_field(&p, fb[k], fe[k], &bits[k]);
                if (r < 0)
                        return r;
        }
        c.minutes = bits[0];
        c.hours = (uint32_t)bits[1];
        c.mdays = (uint32_t)bits[2];
        c.months = (uint16_t)bits[3];
        /* 7 is Sunday too. */
        c.wdays = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f);
        c.mday_any = expr[fb[2]] == '*';
        c.wday_any = expr[fb[4]] == '*';
        *ret = c;
        return 0;
}

static long long floor_div(long long a, long long b)
{
        long long q = a / b;

        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static bool is_leap(long long y)
{
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(long long y, int m)
{
        static const int dim[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

        return m == 2 && is_leap(y) ? 29 : dim[m];
}

/* Days from 1970-01-01 to y-m-d. Counting years from March puts the leap day at
 * the end of the year, so the days before a month are a fixed linear formula. */
static long long days_from_civil(long long y, int m, int d)
{
        long long days;

        if (m <= 2) {
                y--;
                m += 12;
        }
        days = 365 * y + floor_div(y, 4) - floor_div(y, 100) + floor_div(y, 400);
        days += (153 * (m - 3) + 2) / 5 + d - 1;
        return days - 719468; /* the same sum for 1970-01-01 */
}

/* The inverse: guess the year from the mean Gregorian year, then correct it. */
static void civil_from_days(long long days, long long *ret_y, int *ret_m, int *ret_d)
{
        long long y = 1970 + floor_div(days * 400, 146097);
        int m = 1;

        while (days_from_civil(y, 1, 1) > days)
                y--;
        while (days_from_civil(y + 1, 1, 1) <= days)
                y++;
        while (m < 12 && days_from_civil(y, m + 1, 1) <= days)
                m++;
        *ret_y = y;
        *ret_m = m;
        *ret_d = (int)(days - days_from_civil(y, m, 1)) + 1;
}

static int weekday(long long days)
{
        long long w = (days + 4) % 7; /* 1970-01-01 was a Thursday */

        return (int)(w < 0 ? w + 7 : w);
}

static bool day_matches(const struct cron *c, long long days, int mday)
{
        bool in_mdays = c->mdays >> mday & 1, in_wdays = c->wdays >> weekday(days) & 1;

        if (c->mday_any || c->wday_any)
                return in_mdays && in_wdays;
        return in_mdays || in_wdays;
}

/* Lowest set bit of mask at or above from, or -1. */
static int next_bit(uint64_t mask, int from)
{
        mask &= ~UINT64_C(0) << from;
        return mask ? __builtin_ctzll(mask) : -1;
}

/* Where cron_next() stands: a day (as days since 1970 and as a date) and a time of it. */
struct pos {
        long long days, y;
        int m, d, h, min;
};

static void to_next_month(struct pos *p)
{
        p->days += days_in_month(p->y, p->m) - p->d + 1;
        p->d = 1;
        p->h = p->min = 0;
        if (++p->m > 12) {
                p->m = 1;
                p->y++;
        }
}

static void to_next_day(struct pos *p)
{
        if (p->d == days_in_month(p->y, p->m)) {
                to_next_month(p);
                return;
        }
        p->days++;
        p->d++;
        p->h = p->min = 0;
}

long long cron_next(const struct cron *c, long long after)
{
        struct pos p;
        long long limit, t;

        assert(c);
        if (after < AFTER_MIN || after > AFTER_MAX)
                return -1;
        limit = after + HORIZON_SECS;
        t = floor_div(after, 60) * 60 + 60;
        p.days = floor_div(t, 86400);
        civil_from_days(p.days, &p.y, &p.m, &p.d);
        p.h = (int)(t - p.days * 86400) / 3600;
        p.min = (int)(t - p.days * 86400) % 3600 / 60;

        /* Each pass either answers or moves to the start of the next month, day or
         * hour that could match, so the loop runs at most a few thousand times. */
        while (p.days * 86400 <= limit) {
                int h, min;

                if (!(c->months >> p.m & 1)) {
                        to_next_month(&p);
                        continue;
                }
                if (!day_matches(c, p.days, p.d)) {
                        to_next_day(&p);
                        continue;
                }
                h = next_bit(c->hours & HOUR_MASK, p.h);
                if (h < 0) {
                        to_next_day(&p);
                        continue;
                }
                if (h != p.h) {
                        p.h = h;
                        p.min = 0;
                }
                min = next_bit(c->minutes & MINUTE_MASK, p.min);
                if (min < 0) {
                        if (p.h == 23)
                                to_next_day(&p);
                        else {
                                p.h++;
                                p.min = 0;
                        }
                        continue;
                }
                t = p.days * 86400 + p.h * 3600 + min * 60;
                return t <= limit ? t : -1;
        }
        return -1;
}
