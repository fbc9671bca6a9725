/* dispatch_priv: what the unit tests may change in a dispatcher. */
#pragma once

struct dispatch;

/* The junk log's budget: at most burst lines per interval_us, then one line
 * counting the suppressed rest when the next interval starts. */
void dispatch_set_junk_log(struct dispatch *d, unsigned burst, long long interval_us);
