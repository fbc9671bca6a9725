/* fuzz_journal: a journal record file's bytes, parsed and turned into the
 * transaction the agent would recover from it. */
#include "fuzzutil.h"
#include "journal.h"
#include "txn_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        Lockstep__JournalTxn *jt = NULL;
        lserr err = {0};

        int r = journal_parse(data, size, &jt, &err);

        fuzz_note("journal", r, &err);
        if (r < 0)
                return 0;
        txn_free(txn_from_journal(jt));
        journal_txn_free(jt);
        return 0;
}
