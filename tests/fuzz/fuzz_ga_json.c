/* fuzz_ga_json: a guest agent's answer, as lv_ga reads it (guest-exec's pid,
 * guest-exec-status's exitcode), and a hook command quoted into a request. The
 * readers are static in lv_ga.c, so the file is compiled in here. */
#include "../../agent/lv_ga.c"

#include "fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char quoted[2200];
        char *s = fuzz_cstr(data, size);

        long long pid = json_int_field(s, "pid"), code = json_int_field(s, "exitcode");
        int r = json_quote(s, quoted, sizeof(quoted));

        if (r == 0 && (pid >= 0 || code >= 0))
                fuzz_note(pid >= 0 ? "pid" : "exitcode", pid >= 0 ? (int)pid : (int)code, NULL);
        free(s);
        return 0;
}
