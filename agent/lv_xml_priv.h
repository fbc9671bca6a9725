/* lv_xml_priv: lv_xml's parser without a domain, for the unit tests. */
#pragma once

#include "lv_xml.h"

/* ret's labels and member disks (pd as for lv_xml_describe) from a domain
 * XML document; ret's name and state are left as they are. */
int lv_xml_parse(const char *xml, struct hv_domain *ret, struct lv_xml_disk *pd, lserr *err);
