/* tu_etcd: an etcd member for tests, started and stopped by PID. */
#include "tu_etcd.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "etcd.h"
#include "testutil.h"

static int answers(const char *url)
{
        const char *eps[] = {url};
        struct etcd_opts o = {.endpoints = eps, .n_endpoints = 1, .timeout_ms = 1000};
        struct etcd *c = NULL;
        struct etcd_status st;
        lserr err = {0};
        int ok;

        if (etcd_open(&o, &c, &err) < 0)
                abort();
        ok = etcd_status(c, &st, &err) == 0;
        etcd_close(c);
        return ok;
}

int tu_etcd_start(struct tu_etcd *e)
{
        char data[4200], peer[64], cluster[80], logp[4200];

        if (access(TU_ETCD_BIN, X_OK) != 0) {
                /* The suite's run (tests/run-all.sh) installed it: a skip there
                 * would hide what the tests are to prove. */
                if (getenv("LOCKSTEP_REQUIRE_ETCD")) {
                        fprintf(stderr, "%s is not installed and LOCKSTEP_REQUIRE_ETCD is set\n", TU_ETCD_BIN);
                        abort();
                }
                return 1;
        }
        e->dir = tu_mkdtemp();
        snprintf(data, sizeof(data), "%s/data", e->dir);
        snprintf(logp, sizeof(logp), "%s/etcd.log", e->dir);
        snprintf(e->url, sizeof(e->url), "http://127.0.0.1:%d", tu_tcp_port());
        snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", tu_tcp_port());
        snprintf(cluster, sizeof(cluster), "t=%s", peer);
        e->pid = fork();
        if (e->pid < 0)
                abort();
        if (e->pid == 0) {
                int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0600);
                /* Dies with the test, even one that crashed. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(fd, 1);
                dup2(fd, 2);
                execl(TU_ETCD_BIN, "etcd", "--name", "t", "--data-dir", data, "--listen-client-urls", e->url,
                      "--advertise-client-urls", e->url, "--listen-peer-urls", peer, "--initial-advertise-peer-urls",
                      peer, "--initial-cluster", cluster, "--logger", "zap", "--log-outputs", "stderr",
                      "--log-level", "error", (char *)NULL);
                _exit(127);
        }
        for (int i = 0; i < 200; i++) {
                if (answers(e->url))
                        return 0;
                if (waitpid(e->pid, NULL, WNOHANG) == e->pid) {
                        fprintf(stderr, "etcd exited at start; its log: %s\n", logp);
                        abort();
                }
                usleep(100 * 1000);
        }
        fprintf(stderr, "etcd did not answer within 20 s; its log: %s\n", logp);
        abort();
}

void tu_etcd_stop(struct tu_etcd *e)
{
        if (e->pid > 0) {
                kill(e->pid, SIGCONT); /* a test may have stopped it */
                kill(e->pid, SIGTERM);
                waitpid(e->pid, NULL, 0);
                e->pid = 0;
        }
        if (e->dir)
                tu_rmtree(e->dir);
        e->dir = NULL;
}
