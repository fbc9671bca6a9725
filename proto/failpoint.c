/* failpoint: the one stop-until-killed both daemons use in crash tests. */
#include "failpoint.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

void failpoint_stop(const char *name)
{
#ifdef LOCKSTEP_FAILPOINTS
        const char *fp = getenv("LOCKSTEP_FAILPOINT");

        if (!fp || strcmp(fp, name) != 0)
                return;
        log_warn("failpoint %s reached: stopping here until killed", name);
        for (;;)
                pause();
#else
        (void)name;
#endif
}
