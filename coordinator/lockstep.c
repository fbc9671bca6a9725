/* lockstep: the command-line client. keygen works alone; every other command
 * talks to lockstepd over its control socket. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"

/* Exit codes, documented in README. */
enum {
        EXIT_COMMITTED = 0,
        EXIT_ABORTED = 1,
        EXIT_USAGE = 2,
        EXIT_UNREACHABLE = 3,
};

static void usage(FILE *f)
{
        fprintf(f, "usage: lockstep [-c coordinator.yaml] COMMAND [ARGS]\n"
                   "commands:\n"
                   "  keygen --out PREFIX     write PREFIX.key (0600) and PREFIX.pub\n");
}

static int cmd_keygen(int argc, char **argv)
{
        static const struct option opts[] = {{"out", required_argument, NULL, 'o'}, {0}};
        const char *prefix = NULL;
        struct keys_secret *k = NULL;
        char fpr[KEYS_FPR_LEN];
        lserr err = {0};
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
                if (c != 'o') {
                        fprintf(stderr, "usage: lockstep keygen --out PREFIX\n");
                        return EXIT_USAGE;
                }
                prefix = optarg;
        }
        if (!prefix || optind != argc) {
                fprintf(stderr, "usage: lockstep keygen --out PREFIX\n");
                return EXIT_USAGE;
        }
        r = keys_generate(&k, &err);
        if (r >= 0)
                r = keys_write(prefix, k, &err);
        if (r < 0) {
                fprintf(stderr, "lockstep: keygen: %s\n", err.msg);
                keys_secret_free(k);
                return EXIT_USAGE;
        }
        keys_fingerprint(keys_secret_public(k)->id, fpr);
        printf("wrote %s.key (secret, mode 0600) and %s.pub\nkey id %s\n", prefix, prefix, fpr);
        keys_secret_free(k);
        return 0;
}

int main(int argc, char **argv)
{
        int i = 1;

        if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
                usage(stdout);
                return 0;
        }
        if (argc > 1 && !strcmp(argv[1], "--version")) {
                printf("lockstep %s\n", LOCKSTEP_VERSION);
                return 0;
        }
        if (i < argc && !strcmp(argv[i], "keygen"))
                return cmd_keygen(argc - i, argv + i);
        usage(stderr);
        return EXIT_USAGE;
}
