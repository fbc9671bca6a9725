/* fuzz_cron: a schedule expression parsed, then its next runs computed. */
#include <stdlib.h>
#include <string.h>

#include "cron.h"
#include "fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct cron c;
        lserr err = {0};
        long long t = 1700000000;
        char *s;

        if (size > CRON_EXPR_MAX * 2)
                return 0;
        s = fuzz_cstr(data, size);
        int r = cron_parse(s, &c, &err);

        fuzz_note("cron", r, &err);
        if (r == 0)
                for (int i = 0; i < 3 && t >= 0; i++)
                        t = cron_next(&c, t);
        free(s);
        return 0;
}
