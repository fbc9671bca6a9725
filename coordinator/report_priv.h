/* report_priv: the cut renderer behind report_cut, from rows the caller
 * built, so the unit test can assert exact lines without a catalog's clock. */
#pragma once

#include <stdio.h>

#include "catalog.h"

/* One cut (or revert) with its members and images, as report_cut shows it. */
void report_cut_rows(const struct cat_txn *t, const struct cat_member *m, size_t nm, const struct cat_image *im,
                     size_t ni, int as_json, FILE *out);
