/* report_priv: the cut renderer behind report_cut, from rows the caller
 * built, so the unit test can assert exact lines without a catalog's clock. */
#pragma once

#include <stdio.h>

#include "catalog.h"

/* One cut (or revert) with its members and images, as report_cut shows it. */
/* au: the transaction's audit rows, oldest first (its "replies": how long each
 * agent took to answer each command). */
void report_cut_rows(const struct cat_txn *t, const struct cat_member *m, size_t nm, const struct cat_image *im,
                     size_t ni, const struct cat_audit *au, size_t na, int as_json, FILE *out);

/* Audit rows read for one cut's report: 4 steps (and retries) per agent. */
#define REPORT_AUDIT_MAX 65536
