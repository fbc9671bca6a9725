/* hv_sim: simulated hosts for scale and fault tests. Its calls live in the
 * sim_* modules. Domains, latencies and failure points come from a text file
 * that is re-read on every call (sim_config), so a test can inject a fault
 * while the agent runs. Domain state lives in files, one per domain
 * (sim_state), so that the guardian process and a restarted agent see it too.
 *
 *   state_dir DIR                  where domain state and fake images live
 *   domain NAME [group=G] [tier=T] [disks=vda,vdb] [state=running|paused|shutoff] [ga=yes|no]
 *   latency OP=MS ...              OP: check ga_ping freeze thaw snapshot discard suspend resume
 *   fail OP VM                     OP returns an error for VM
 *   fail_once OP VM                its first call fails (a connection that died), then it works
 *   hang OP VM                     OP takes longer than the guest agent deadline
 *   hold OP VM                     OP waits, with state_dir/held.OP.VM there, until the line goes
 *   thaw_early VM                  the guest thaws on its own: thaw finds nothing frozen
 *   nospace VM                     check reports no room for overlays
 *   corrupt VM                     a revert's image check fails
 */
#include "hv_backend.h"
#include "sim_config.h"
#include "sim_delete.h"
#include "sim_domain.h"
#include "sim_ga.h"
#include "sim_power.h"
#include "sim_revert.h"
#include "sim_snap.h"

const struct hv_ops hv_sim_ops = {
        .name = "sim",
        .open = sim_config_open,
        .close = sim_config_close,
        .list = sim_domain_list,
        .lookup = sim_domain_lookup,
        .check = sim_snap_check,
        .ga_ping = sim_ga_ping,
        .freeze = sim_ga_freeze,
        .thaw = sim_ga_thaw,
        .suspend = sim_power_suspend,
        .resume = sim_power_resume,
        .snapshot = sim_snap_create,
        .discard = sim_snap_discard,
        .delete_cut = sim_delete_cut,
        .drop_branch = sim_delete_branch,
        .cut_images = sim_revert_cut_images,
        .check_images = sim_revert_check_images,
        .stop = sim_power_stop,
        .start = sim_power_start,
        .point_disks = sim_revert_point_disks,
        .guest_run = sim_ga_run,
        .restore = sim_power_restore,
};
