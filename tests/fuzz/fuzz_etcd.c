/* fuzz_etcd: etcd's JSON answers (range, txn, lease, status, delete) through
 * the client's parsers; the first byte picks the parser. */
#include <stdlib.h>

#include "etcd.h"
#include "fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct etcd_txn_result t;
        struct etcd_status st;
        struct etcd_kv *kvs = NULL;
        const char *body;
        int64_t a, b;
        size_t n = 0;
        lserr err = {0};
        int more, r;

        if (size < 1 || size > (1u << 20))
                return 0;
        body = (const char *)data + 1;
        size--;
        switch (data[0] % 5) {
        case 0:
                r = etcd_parse_range(body, size, &kvs, &n, &more, &a, &err);
                if (r == 0)
                        etcd_kvs_free(kvs, n);
                break;
        case 1:
                r = etcd_parse_txn(body, size, &t, &err);
                if (r == 0)
                        etcd_txn_result_free(&t);
                break;
        case 2: r = etcd_parse_lease(body, size, &a, &b, &err); break;
        case 3: r = etcd_parse_status(body, size, &st, &err); break;
        default: r = etcd_parse_deleted(body, size, &a, &err); break;
        }
        fuzz_note("etcd", r, &err);
        return 0;
}
