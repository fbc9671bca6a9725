/* lv_commit: a layer merged into the image below it: block commit while the
 * domain runs (active with pivot, or intermediate), qemu-img when it is off. */
#pragma once

#include <libvirt/libvirt.h>

#include "lserr.h"
#include "lv_chain.h"
#include "lv_xml.h"

/* Active commit of disk target's top overlay into its own backing image, then
 * pivot, so the running domain writes to that image again. Messages read
 * "discard: disk <target>: ..." (also when a delete calls it). */
int lv_commit_active(virDomainPtr d, const char *target, lserr *err);

/* "qemu-img commit" of a shut-off domain's overlay into its backing image
 * (discard); the definition is not changed. */
int lv_commit_offline(const char *overlay, lserr *err);

/* Merges h's layer (with child above it, "" when layer is the top, and base
 * below it, of format base_fmt) of disk pd into base, the domain running or not; after it the
 * chain skips layer and the definition points at base if layer was the top.
 * layer itself is left for the caller to remove. */
int lv_commit_layer(virDomainPtr d, int running, const struct lv_xml_disk *pd, const struct lv_chain_hit *h,
                    lserr *err);
