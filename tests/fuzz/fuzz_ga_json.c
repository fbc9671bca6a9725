/* fuzz_ga_json: a guest agent's answer, as lv_ga reads it (guest-exec's pid,
 * guest-exec-status's exitcode), and the same bytes, split at newlines, as a
 * hook's argv quoted into a guest-exec request. The readers are static in
 * lv_ga.c, so the file is compiled in here. */
#include "../../agent/lv_ga.c"

#include "fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s = fuzz_cstr(data, size), *argv[33], *save = NULL;
        size_t n = 0;

        long long pid = json_int_field(s, "pid"), code = json_int_field(s, "exitcode");
        if (pid >= 0 || code >= 0)
                fuzz_note(pid >= 0 ? "pid" : "exitcode", pid >= 0 ? (int)pid : (int)code, NULL);
        for (char *tok = strtok_r(s, "\n", &save); tok && n < 32; tok = strtok_r(NULL, "\n", &save))
                argv[n++] = tok;
        argv[n] = NULL;
        if (n) {
                char *req = exec_request(argv);
                /* Whatever the arguments hold, the request stays one JSON
                 * object: no raw control byte gets through. */
                for (const char *p = req; p && *p; p++)
                        if ((unsigned char)*p < 0x20)
                                __builtin_trap();
                free(req);
        }
        free(s);
        return 0;
}
