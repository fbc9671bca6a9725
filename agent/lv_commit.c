/* lv_commit: merging a layer into its backing image, with libvirt's block
 * jobs while the domain runs and with qemu-img while it is off. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "hv.h"
#include "lv_commit.h"
#include "lv_err.h"
#include "lv_image.h"

#define PIVOT_TIMEOUT_US (120LL * 1000000)

int lv_commit_active(virDomainPtr d, const char *target, lserr *err)
{
        long long deadline = fsutil_mono_us() + PIVOT_TIMEOUT_US;

        /* SHALLOW: into the overlay's own backing image only. Without it a NULL
         * base means the bottom of the chain, and older cuts would be merged away. */
        if (virDomainBlockCommit(d, target, NULL, NULL, 0,
                                 VIR_DOMAIN_BLOCK_COMMIT_ACTIVE | VIR_DOMAIN_BLOCK_COMMIT_SHALLOW) < 0)
                return lserr_set(err, LS_EHV, "discard: disk %s: block commit: %s", target, lv_err_msg());
        for (;;) {
                virDomainBlockJobInfo info;
                int r = virDomainGetBlockJobInfo(d, target, &info, 0);
                if (r < 0)
                        return lserr_set(err, LS_EHV, "discard: disk %s: block job: %s", target, lv_err_msg());
                if (r == 1 && info.cur == info.end &&
                    virDomainBlockJobAbort(d, target, VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT) == 0)
                        break;
                if (fsutil_mono_us() > deadline) {
                        virDomainBlockJobAbort(d, target, 0);
                        return lserr_set(err, LS_EHV, "discard: disk %s: commit did not become ready to pivot: %s",
                                         target, lv_err_msg());
                }
                usleep(20000);
        }
        /* The pivot finishes asynchronously: wait until the job is gone. */
        while (fsutil_mono_us() < deadline) {
                virDomainBlockJobInfo info;
                if (virDomainGetBlockJobInfo(d, target, &info, 0) == 0)
                        return 0;
                usleep(20000);
        }
        return lserr_set(err, LS_EHV, "discard: disk %s: pivot did not finish", target);
}

int lv_commit_offline(const char *overlay, lserr *err)
{
        /* An overlay lockstep made: qcow2, whatever its bytes say. */
        const char *commit[] = {"qemu-img", "commit", "-q", "-f", "qcow2", overlay, NULL};
        lserr e2 = {0};
        int r = lv_image_run(commit, &e2);

        if (r == LS_EHV) /* it ran and failed; otherwise fork failed */
                return lserr_set(err, LS_EHV, "discard: qemu-img commit \"%s\" failed", overlay);
        if (r < 0)
                return lserr_set(err, r, "discard: %s", e2.msg);
        return 0;
}

/* Waits until a non-active commit's job is gone (it ends on its own). */
static int wait_job_gone(virDomainPtr d, const char *disk, lserr *err)
{
        long long deadline = fsutil_mono_us() + PIVOT_TIMEOUT_US;

        while (fsutil_mono_us() < deadline) {
                virDomainBlockJobInfo info;
                int r = virDomainGetBlockJobInfo(d, disk, &info, 0);
                if (r == 0)
                        return 0;
                if (r < 0)
                        return lserr_set(err, LS_EHV, "delete: disk %s: block job: %s", disk, lv_err_msg());
                usleep(20000);
        }
        return lserr_set(err, LS_EHV, "delete: disk %s: block commit did not finish", disk);
}

/* qemu-img rebase -u of child onto base (format bfmt, as the header of the
 * merged layer recorded it), once the layer between them is merged. */
static int rebase_offline(const char *child, const char *base, const char *bfmt, lserr *err)
{
        const char *rebase[] = {"qemu-img", "rebase", "-u", "-f", "qcow2", "-b", base, "-F", bfmt, child, NULL};

        return lv_image_run(rebase, err);
}

int lv_commit_layer(virDomainPtr d, int running, const struct lv_xml_disk *pd, const struct lv_chain_hit *h,
                    lserr *err)
{
        const char *layer = h->layer, *child = h->child, *base = h->base;
        /* The layer has a backing file, so it is a qcow2 image. */
        const char *commit[] = {"qemu-img", "commit", "-q", "-f", "qcow2", layer, NULL};
        struct hv_image im = {0};
        int r;

        if (running && !child[0])
                return lv_commit_active(d, pd->target, err);
        if (running) {
                if (virDomainBlockCommit(d, pd->target, NULL, layer, 0, VIR_DOMAIN_BLOCK_COMMIT_SHALLOW) < 0)
                        return lserr_set(err, LS_EHV, "delete: disk %s: block commit of \"%s\": %s", pd->target, layer,
                                         lv_err_msg());
                return wait_job_gone(d, pd->target, err);
        }
        r = lv_image_run(commit, err);
        if (r < 0)
                return r;
        if (child[0])
                return rebase_offline(child, base, h->base_fmt, err);
        snprintf(im.target, sizeof(im.target), "%s", pd->target);
        snprintf(im.before, sizeof(im.before), "%s", base);
        snprintf(im.format, sizeof(im.format), "%s", h->base_fmt);
        return lv_xml_redefine_disks(d, &im, 1, 0, err);
}
