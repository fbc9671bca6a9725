/* etcd_json: the JSON and base64 helpers etcd.c (requests) and
 * etcd_parse.c (answers) share. Internal to the etcd client. */
#pragma once

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "lserr.h"

/* A new JSON string holding len bytes of p in base64, or NULL (no memory). */
struct json_object *etcd_json_b64(const void *p, size_t len);
/* A JSON string holding n as decimal, as etcd writes its int64s. */
struct json_object *etcd_json_i64(int64_t n);
/* key and the end of the range of every key that starts with it, into o. */
int etcd_json_range(struct json_object *o, const char *key, int prefix);

/* The value of field name of o as an int64 (etcd sends them as decimal
 * strings; an absent field is 0, as etcd leaves out zero values). */
int etcd_json_get_i64(struct json_object *o, const char *name, int64_t *ret, lserr *err);
int etcd_json_get_u64(struct json_object *o, const char *name, uint64_t *ret, lserr *err);
/* Field name of o decoded from base64 into a malloc'd buffer with a NUL after
 * its *ret_len bytes; absent: an empty one. */
int etcd_json_get_b64(struct json_object *o, const char *name, uint8_t **ret, size_t *ret_len, lserr *err);
/* The whole of body as one JSON object (whitespace after it allowed). */
int etcd_json_parse(const char *body, size_t len, struct json_object **ret, lserr *err);
