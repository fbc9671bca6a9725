/* lserr: error buffer and code names. */
#include "lserr.h"

#include <stdio.h>
#include <string.h>

int lserr_set(lserr *err, int code, const char *fmt, ...)
{
        va_list ap;

        if (!err || err->msg[0])
                return code;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
        return code;
}

void lserr_clear(lserr *err)
{
        if (!err)
                return;
        err->code = 0;
        err->msg[0] = '\0';
}

static const char *const names[] = {
        [LS_EOVERSIZE - LS_E_BASE] = "oversize",
        [LS_EMALFORMED - LS_E_BASE] = "malformed",
        [LS_EVERSION - LS_E_BASE] = "bad-version",
        [LS_EUNKNOWNKEY - LS_E_BASE] = "unknown-key",
        [LS_EBADSIG - LS_E_BASE] = "bad-signature",
        [LS_ETARGET - LS_E_BASE] = "wrong-target",
        [LS_EEXPIRED - LS_E_BASE] = "expired",
        [LS_EFUTURE - LS_E_BASE] = "from-future",
        [LS_EREPLAY - LS_E_BASE] = "replayed-nonce",
        [LS_ECOUNTER - LS_E_BASE] = "stale-counter",
        [LS_EROLE - LS_E_BASE] = "role-denied",
        [LS_ENONCEFULL - LS_E_BASE] = "nonce-cache-full",
        [LS_EKEYPERM - LS_E_BASE] = "key-permissions",
        [LS_EKEYFORMAT - LS_E_BASE] = "key-format",
        [LS_ECONFIG - LS_E_BASE] = "config",
        [LS_ETIMEDOUT - LS_E_BASE] = "timed-out",
        [LS_EPEER - LS_E_BASE] = "peer-refused",
        [LS_ENODOMAIN - LS_E_BASE] = "no-domain",
        [LS_ENOTRUNNING - LS_E_BASE] = "not-running",
        [LS_EPAUSED - LS_E_BASE] = "paused",
        [LS_ENOGA - LS_E_BASE] = "no-guest-agent",
        [LS_EGATIMEOUT - LS_E_BASE] = "guest-agent-timeout",
        [LS_EDISK - LS_E_BASE] = "disk-unsupported",
        [LS_EOVERLAYEXISTS - LS_E_BASE] = "overlay-exists",
        [LS_ENOSPACE - LS_E_BASE] = "no-space",
        [LS_ETHAWEDEARLY - LS_E_BASE] = "thawed-early",
        [LS_EHOOK - LS_E_BASE] = "hook-failed",
        [LS_EIMAGE - LS_E_BASE] = "image-missing",
        [LS_ECORRUPT - LS_E_BASE] = "image-corrupt",
        [LS_EHV - LS_E_BASE] = "hypervisor",
        [LS_EREFUSED - LS_E_BASE] = "refused-unverified",
        [LS_EEPOCH - LS_E_BASE] = "stale-epoch",
};

const char *lserr_name(int code)
{
        static __thread char buf[32];

        if (code == 0)
                return "ok";
        if (code > LS_E_BASE && code < LS_E_LAST && names[code - LS_E_BASE])
                return names[code - LS_E_BASE];
        if (code < 0 && code > LS_E_BASE) {
                const char *n = strerrorname_np(-code);
                if (n)
                        return n;
        }
        snprintf(buf, sizeof(buf), "error%d", code);
        return buf;
}
