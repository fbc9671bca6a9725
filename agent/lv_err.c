/* lv_err: libvirt's last error as an lserr: message and protocol code. */
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <string.h>

#include "lv_err.h"

const char *lv_err_msg(void)
{
        virErrorPtr e = virGetLastError();

        return e && e->message ? e->message : "unknown libvirt error";
}

int lv_err_code(void)
{
        virErrorPtr e = virGetLastError();

        if (!e)
                return LS_EHV;
        switch (e->code) {
        case VIR_ERR_NO_DOMAIN:
                return LS_ENODOMAIN;
        case VIR_ERR_AGENT_UNRESPONSIVE:
        case VIR_ERR_AGENT_UNSYNCED:
                /* libvirt 9.0 has no code of its own for a command timeout. */
                return strstr(lv_err_msg(), "timeout") || strstr(lv_err_msg(), "timed out") ? LS_EGATIMEOUT
                                                                                             : LS_ENOGA;
        case VIR_ERR_OPERATION_TIMEOUT:
                return LS_EGATIMEOUT;
        case VIR_ERR_OPERATION_INVALID:
                return strstr(lv_err_msg(), "not running") ? LS_ENOTRUNNING : LS_EHV;
        default:
                return LS_EHV;
        }
}

int lv_err_fail(lserr *err, const char *step)
{
        int code = lv_err_code();

        return lserr_set(err, code, "%s: %s", step, lv_err_msg());
}
