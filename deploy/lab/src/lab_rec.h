/* lab_rec: the workload log record and the page-store page, shared by the guest
 * workload that writes them and the checker that verifies them. */
#pragma once

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lab_crc32.h"

/* A record line is "<seq> <kind> <msgid> <time> <crc32 of the rest, 8 hex>\n";
 * "the rest" is everything before the last space. A tick has msgid "-". <time>
 * is "<us>~<err>": the host's Unix time in microseconds when the record was
 * made, as the guest estimates it from its exchanges with the host relay, and
 * the estimate's half-width; "-" while the guest has no estimate yet. Host time
 * is what lets a checker compare records of different guests with the times the
 * agents report for a cut. */
#define LAB_REC_MAX 160
#define LAB_MSGID_MAX 64
#define LAB_NAME_MAX 32

enum lab_kind { LAB_TICK, LAB_SENT, LAB_RECV };

struct lab_rec {
        uint64_t seq;
        enum lab_kind kind;
        char msgid[LAB_MSGID_MAX + 1];
        bool timed;
        int64_t at_us;     /* host Unix time, when timed */
        uint32_t err_us;   /* at_us is right within +-err_us */
};

static inline const char *lab_kind_name(enum lab_kind k)
{
        switch (k) {
        case LAB_TICK: return "tick";
        case LAB_SENT: return "sent";
        case LAB_RECV: return "recv";
        }
        return "?";
}

/* A message id is "<vm>:<counter>" with vm in [A-Za-z0-9._-]{1,32} and a decimal
 * counter; both ends of the ring check it, since the relay passes bytes along. */
static inline bool lab_msgid_valid(const char *s, size_t len)
{
        size_t i = 0;

        if (len > LAB_MSGID_MAX)
                return false;
        while (i < len && s[i] != ':') {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
                        return false;
                i++;
        }
        if (i == 0 || i > LAB_NAME_MAX || i == len)
                return false;
        if (++i == len)
                return false;
        for (; i < len; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

/* Writes one record with its newline into buf; returns its length, or -ENOSPC. */
static inline int lab_rec_format(char *buf, size_t n, const struct lab_rec *r)
{
        char at[48] = "-";
        int body;

        if (r->timed)
                snprintf(at, sizeof(at), "%" PRId64 "~%" PRIu32, r->at_us, r->err_us);
        body = snprintf(buf, n, "%" PRIu64 " %s %s %s", r->seq, lab_kind_name(r->kind),
                        r->kind == LAB_TICK ? "-" : r->msgid, at);
        if (body < 0 || (size_t)body + 10 >= n)
                return -ENOSPC;
        uint32_t crc = lab_crc32(buf, (size_t)body);
        int all = snprintf(buf + body, n - (size_t)body, " %08" PRIx32 "\n", crc);
        if (all != 10)
                return -ENOSPC;
        return body + all;
}

static inline bool lab_digits(const char *s, size_t len, size_t max)
{
        if (len == 0 || len > max)
                return false;
        for (size_t i = 0; i < len; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

/* "-" or "<us>~<err>", both decimal; a time before 1970 is not a lab time. */
static inline int lab_time_parse(const char *s, size_t len, struct lab_rec *r)
{
        const char *tilde = memchr(s, '~', len);

        if (len == 1 && s[0] == '-') {
                r->timed = false;
                r->at_us = 0;
                r->err_us = 0;
                return 0;
        }
        if (!tilde || !lab_digits(s, (size_t)(tilde - s), 18) ||
            !lab_digits(tilde + 1, len - (size_t)(tilde - s) - 1, 9))
                return -EINVAL;
        r->timed = true;
        r->at_us = (int64_t)strtoll(s, NULL, 10);
        r->err_us = (uint32_t)strtoul(tilde + 1, NULL, 10);
        return 0;
}

/* Parses one line without its newline. -EINVAL: not the record grammar;
 * -EBADMSG: the grammar holds but the checksum does not. */
static inline int lab_rec_parse(const char *line, size_t len, struct lab_rec *ret)
{
        char tmp[LAB_REC_MAX + 1];
        const char *f[5];
        size_t fl[5];
        struct lab_rec r = { 0 };
        int nf = 0;

        if (len == 0 || len > LAB_REC_MAX)
                return -EINVAL;
        memcpy(tmp, line, len);
        tmp[len] = '\0';
        if (memchr(tmp, '\0', len))
                return -EINVAL;
        for (const char *p = tmp;;) {
                const char *sp = strchr(p, ' ');
                if (nf == 5)
                        return -EINVAL;
                f[nf] = p;
                fl[nf] = sp ? (size_t)(sp - p) : strlen(p);
                if (fl[nf] == 0)
                        return -EINVAL;
                nf++;
                if (!sp)
                        break;
                p = sp + 1;
        }
        if (nf != 5 || !lab_digits(f[0], fl[0], 20))
                return -EINVAL;
        errno = 0;
        r.seq = strtoull(f[0], NULL, 10);
        if (errno)
                return -EINVAL;

        if (fl[1] == 4 && !memcmp(f[1], "tick", 4))
                r.kind = LAB_TICK;
        else if (fl[1] == 4 && !memcmp(f[1], "sent", 4))
                r.kind = LAB_SENT;
        else if (fl[1] == 4 && !memcmp(f[1], "recv", 4))
                r.kind = LAB_RECV;
        else
                return -EINVAL;

        if (r.kind == LAB_TICK) {
                if (fl[2] != 1 || f[2][0] != '-')
                        return -EINVAL;
        } else if (!lab_msgid_valid(f[2], fl[2])) {
                return -EINVAL;
        }
        memcpy(r.msgid, f[2], fl[2]);
        r.msgid[fl[2]] = '\0';

        if (lab_time_parse(f[3], fl[3], &r) < 0)
                return -EINVAL;

        if (fl[4] != 8)
                return -EINVAL;
        for (size_t i = 0; i < 8; i++)
                if (!((f[4][i] >= '0' && f[4][i] <= '9') || (f[4][i] >= 'a' && f[4][i] <= 'f')))
                        return -EINVAL;
        uint32_t want = (uint32_t)strtoul(f[4], NULL, 16);
        if (lab_crc32(tmp, (size_t)(f[4] - 1 - tmp)) != want)
                return -EBADMSG;

        *ret = r;
        return 0;
}

/* The page store: LAB_PAGES pages of LAB_PAGE bytes, each rewritten in place.
 * Layout (little endian): "LSPG", u32 page number, u64 seq of the log record
 * written just before this page, filler derived from seq, u32 CRC-32 of all the
 * bytes before it. A page of zeros has never been written. */
#define LAB_PAGE 4096
#define LAB_PAGES 16

static inline void lab_put_le(uint8_t *p, uint64_t v, int n)
{
        for (int i = 0; i < n; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t lab_get_le(const uint8_t *p, int n)
{
        uint64_t v = 0;
        for (int i = n - 1; i >= 0; i--)
                v = (v << 8) | p[i];
        return v;
}

static inline void lab_page_fill(uint8_t page[LAB_PAGE], uint32_t no, uint64_t seq)
{
        memcpy(page, "LSPG", 4);
        lab_put_le(page + 4, no, 4);
        lab_put_le(page + 8, seq, 8);
        for (size_t i = 16; i < LAB_PAGE - 4; i++)
                page[i] = (uint8_t)(seq * 31u + i);
        lab_put_le(page + LAB_PAGE - 4, lab_crc32(page, LAB_PAGE - 4), 4);
}

/* 0: valid, *ret_seq set; 1: never written (all zeros); -EBADMSG: torn or corrupt;
 * -EINVAL: a valid page that claims another page number. */
static inline int lab_page_check(const uint8_t page[LAB_PAGE], uint32_t no, uint64_t *ret_seq)
{
        bool zero = true;

        for (size_t i = 0; i < LAB_PAGE && zero; i++)
                zero = page[i] == 0;
        if (zero)
                return 1;
        if (memcmp(page, "LSPG", 4) ||
            lab_get_le(page + LAB_PAGE - 4, 4) != lab_crc32(page, LAB_PAGE - 4))
                return -EBADMSG;
        if (lab_get_le(page + 4, 4) != no)
                return -EINVAL;
        uint64_t seq = lab_get_le(page + 8, 8);
        for (size_t i = 16; i < LAB_PAGE - 4; i++)
                if (page[i] != (uint8_t)(seq * 31u + i))
                        return -EBADMSG;
        *ret_seq = seq;
        return 0;
}
