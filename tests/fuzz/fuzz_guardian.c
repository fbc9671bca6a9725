/* fuzz_guardian: one datagram of the guardian's line protocol; what parses is
 * formatted back (it must parse again to the same message) and applied to a table. */
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "guardian_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct guardian_entry table[GUARDIAN_MAX_ARMED];
        struct guardian_msg m, again;
        char line[GUARDIAN_MSG_MAX];
        lserr err = {0};

        int r = guardian_msg_parse((const char *)data, size, &m, &err);

        fuzz_note("guardian", r, &err);
        if (r < 0)
                return 0;
        guardian_msg_format(&m, line, sizeof(line));
        if (guardian_msg_parse(line, strlen(line), &again, &err) < 0 || again.op != m.op ||
            strcmp(again.txid, m.txid) || strcmp(again.vm, m.vm) ||
            (m.op == 'A' && (again.deadline != m.deadline || again.thaw != m.thaw || again.resume != m.resume)))
                abort(); /* a message the guardian would read differently from what was sent */
        (void)guardian_table_apply(table, &m, &err);
        return 0;
}
