/* json: a small streaming JSON writer for --json output. Keys and strings are
 * escaped; nesting is tracked so commas come out right. Depth is bounded. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 32

struct json {
        FILE *f;
        int depth;
        int count[JSON_MAX_DEPTH];
};

/* The length of the valid UTF-8 sequence at p (1 to 4), or 0 for a byte that does
 * not start one (or the terminating NUL). Reads no further than a NUL. */
size_t json_utf8_len(const unsigned char *p);
/* Whether the sequence of n bytes at p is a control character: C0, DEL or C1. */
int json_is_control(const unsigned char *p, size_t n);

void json_init(struct json *j, FILE *f);
/* key is NULL inside arrays and for the top-level value. */
void json_obj_begin(struct json *j, const char *key);
void json_obj_end(struct json *j);
void json_arr_begin(struct json *j, const char *key);
void json_arr_end(struct json *j);
void json_str(struct json *j, const char *key, const char *val); /* NULL val -> null */
void json_int(struct json *j, const char *key, long long val);
void json_uint(struct json *j, const char *key, unsigned long long val);
void json_double(struct json *j, const char *key, double val);
void json_bool(struct json *j, const char *key, int val);
/* Ends the document with a newline. */
void json_end(struct json *j);
