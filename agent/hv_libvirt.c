/* hv_libvirt: the real backend. Its calls live in the lv_* modules: libvirt
 * for domains, the guest agent, external snapshots and block commit; libxml2
 * for domain XML; qemu-img and qcow2 headers for image files. */
#include "hv_backend.h"
#include "lv_conn.h"
#include "lv_delete.h"
#include "lv_domain.h"
#include "lv_ga.h"
#include "lv_power.h"
#include "lv_revert.h"
#include "lv_snap.h"

const struct hv_ops hv_libvirt_ops = {
        .name = "libvirt",
        .open = lv_conn_open,
        .close = lv_conn_close,
        .list = lv_domain_list,
        .lookup = lv_domain_lookup,
        .check = lv_snap_check,
        .ga_ping = lv_ga_ping,
        .freeze = lv_ga_freeze,
        .thaw = lv_ga_thaw,
        .suspend = lv_power_suspend,
        .resume = lv_power_resume,
        .snapshot = lv_snap_create,
        .discard = lv_snap_discard,
        .delete_cut = lv_delete_cut,
        .drop_branch = lv_delete_branch,
        .cut_images = lv_revert_cut_images,
        .check_images = lv_revert_check_images,
        .stop = lv_power_stop,
        .start = lv_power_start,
        .point_disks = lv_revert_point_disks,
        .guest_run = lv_ga_run,
        .restore = lv_power_restore,
};

/* The one symbol the shared object exports (its build hides the rest). */
__attribute__((visibility("default"))) const struct hv_module hv_module = {
        .version = LOCKSTEP_VERSION,
        .ops_size = sizeof(struct hv_ops),
        .ops = &hv_libvirt_ops,
};
