/* driver: replays fuzz inputs without libFuzzer, for CI (any compiler): every
 * file named, or in a directory named, goes through LLVMFuzzerTestOneInput once. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzzutil.h"

static int run_file(const char *path)
{
        FILE *f = fopen(path, "rb");
        uint8_t *buf = NULL;
        long n;

        if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
            !(buf = malloc((size_t)n + 1)) || fread(buf, 1, (size_t)n, f) != (size_t)n) {
                fprintf(stderr, "%s: cannot read\n", path);
                if (f)
                        fclose(f);
                free(buf);
                return -1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, (size_t)n);
        free(buf);
        return 0;
}

static int run_path(const char *path, unsigned *count)
{
        struct stat st;
        struct dirent **names;
        int n, bad = 0;

        if (stat(path, &st) < 0) {
                fprintf(stderr, "%s: not found\n", path);
                return -1;
        }
        if (!S_ISDIR(st.st_mode)) {
                (*count)++;
                return run_file(path);
        }
        n = scandir(path, &names, NULL, alphasort);
        if (n < 0)
                return -1;
        for (int i = 0; i < n; i++) {
                char sub[4096];
                if (names[i]->d_name[0] != '.') {
                        snprintf(sub, sizeof(sub), "%s/%s", path, names[i]->d_name);
                        bad |= run_path(sub, count) < 0;
                }
                free(names[i]);
        }
        free(names);
        return bad ? -1 : 0;
}

int main(int argc, char **argv)
{
        unsigned count = 0;
        int bad = 0;

        for (int i = 1; i < argc; i++)
                bad |= run_path(argv[i], &count) < 0;
        unsigned noted, accepted;

        fuzz_counts(&noted, &accepted);
        printf("%u inputs replayed, %u of %u parser results accepted\n", count, accepted, noted);
        if (count == 0) {
                fprintf(stderr, "no inputs found\n");
                return 1;
        }
        /* Seeds are inputs the code itself reads: if none gets through, the
         * harness stops before the parser (as when the memfd's mode was
         * refused) and fuzzing it would test nothing. */
        if (noted && !accepted) {
                fprintf(stderr, "no input was accepted: the harness does not reach the parser (FUZZ_DEBUG=1 says why)\n");
                return 1;
        }
        return bad ? 1 : 0;
}
