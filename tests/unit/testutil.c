/* testutil: temp dirs for tests. */
#include "testutil.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *tu_mkdtemp(void)
{
        const char *base = getenv("TMPDIR");
        char *p = NULL;

        if (asprintf(&p, "%s/lockstep-test-XXXXXX", base ? base : "/tmp") < 0)
                abort();
        if (!mkdtemp(p))
                abort();
        return p;
}

void tu_rmtree(char *dir)
{
        char *cmd = NULL;

        if (!dir)
                return;
        if (asprintf(&cmd, "rm -rf '%s'", dir) >= 0 && system(cmd) != 0)
                fprintf(stderr, "warning: could not remove %s\n", dir);
        free(cmd);
        free(dir);
}

char *tu_write(const char *dir, const char *name, const char *text, int mode)
{
        char *p = NULL;
        int fd;

        if (asprintf(&p, "%s/%s", dir, name) < 0)
                abort();
        fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
        if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || fchmod(fd, (mode_t)mode) < 0)
                abort();
        close(fd);
        return p;
}

int tu_tcp_port(void)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
            getsockname(fd, (struct sockaddr *)&a, &len) < 0)
                abort();
        close(fd);
        return ntohs(a.sin_port);
}

int tu_sim_state(const char *simdir, const char *vm, const char *key, char *out, size_t n)
{
        char path[4200], line[4200];
        size_t kl = strlen(key);
        int found = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s.state", simdir, vm);
        f = fopen(path, "re");
        if (!f)
                return 0;
        while (!found && fgets(line, sizeof(line), f))
                if (!strncmp(line, key, kl) && line[kl] == ' ') {
                        line[strcspn(line, "\n")] = '\0';
                        snprintf(out, n, "%s", line + kl + 1);
                        found = 1;
                }
        fclose(f);
        return found;
}
