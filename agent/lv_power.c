/* lv_power: suspend/resume of vCPUs, graceful stop with a deadline then
 * destroy, start, and restore from a saved memory state. */
#include <stdlib.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "lv_conn.h"
#include "lv_err.h"
#include "lv_power.h"

int lv_power_suspend(void *be, const char *vm, lserr *err)
{
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        int r = lv_conn_domain(be, vm, "suspend", &d, err);

        if (r < 0)
                return r;
        return virDomainSuspend(d) < 0 ? lv_err_fail(err, "suspend") : 0;
}

int lv_power_resume(void *be, const char *vm, lserr *err)
{
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        int state = 0, reason = 0, r = lv_conn_domain(be, vm, "resume", &d, err);

        if (r < 0)
                return r;
        /* Resuming a running domain is an error in libvirt; here it is done. */
        if (virDomainGetState(d, &state, &reason, 0) == 0 && state == VIR_DOMAIN_PAUSED && virDomainResume(d) < 0)
                return lv_err_fail(err, "resume");
        return 0;
}

static int is_shutoff(virDomainPtr d)
{
        int state = 0, reason = 0;

        return virDomainGetState(d, &state, &reason, 0) == 0 && state == VIR_DOMAIN_SHUTOFF;
}

int lv_power_stop(void *be, const char *vm, unsigned timeout_ms, lserr *err)
{
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        long long deadline = fsutil_mono_us() + (long long)timeout_ms * 1000;
        int state = 0, reason = 0, r = lv_conn_domain(be, vm, "stop", &d, err);

        if (r < 0)
                return r;
        if (is_shutoff(d))
                return 0;
        /* Guest agent first (the lab's guests ignore ACPI), then ACPI. */
        if (virDomainShutdownFlags(d, VIR_DOMAIN_SHUTDOWN_GUEST_AGENT) < 0)
                virDomainShutdownFlags(d, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN);
        while (fsutil_mono_us() < deadline) {
                if (is_shutoff(d))
                        return 0;
                usleep(100000);
        }
        if (virDomainDestroy(d) < 0 && (virDomainGetState(d, &state, &reason, 0) < 0 || state != VIR_DOMAIN_SHUTOFF))
                return lv_err_fail(err, "stop: destroy");
        return 0;
}

int lv_power_start(void *be, const char *vm, lserr *err)
{
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        int state = 0, reason = 0, r = lv_conn_domain(be, vm, "start", &d, err);

        if (r < 0)
                return r;
        if (!(virDomainGetState(d, &state, &reason, 0) == 0 && state == VIR_DOMAIN_RUNNING) && virDomainCreate(d) < 0)
                return lv_err_fail(err, "start");
        return 0;
}

int lv_power_restore(void *be, const char *vm, const char *memfile, lserr *err)
{
        _cleanup_(lv_domain_freep) virDomainPtr d = NULL;
        _cleanup_free_ char *xml = NULL;
        int r = lv_conn_domain(be, vm, "restore", &d, err);

        if (r < 0)
                return r;
        /* The saved state's own XML names the disks of the cut time; the
         * definition now names the new overlays on the cut's images. */
        xml = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
        if (!xml)
                return lv_err_fail(err, "restore: read definition");
        if (virDomainRestoreFlags(virDomainGetConnect(d), memfile, xml, VIR_DOMAIN_SAVE_RUNNING) < 0)
                return lserr_set(err, LS_EHV, "restore of memory state \"%s\": %s", memfile, lv_err_msg());
        return 0;
}
