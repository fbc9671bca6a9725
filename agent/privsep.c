/* privsep: the split into a network half and a root executor, and the
 * socketpair protocol between them (frames, re-encoded commands, the gate). */
#include "privsep.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "names.h"

static int write_full(int fd, const uint8_t *p, size_t n)
{
        while (n) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return w < 0 ? -errno : -EPIPE;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

/* 0, or -EPIPE when the stream ended before the first byte, -EPROTO after it. */
static int read_full(int fd, uint8_t *p, size_t n)
{
        size_t got = 0;

        while (got < n) {
                ssize_t r = read(fd, p + got, n - got);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        return got ? -EPROTO : -EPIPE;
                got += (size_t)r;
        }
        return 0;
}

int privsep_frame_send(int fd, const uint8_t *buf, size_t len, lserr *err)
{
        uint32_t hdr = htonl((uint32_t)len);
        int r;

        if (len > UINT32_MAX)
                return lserr_set(err, -EMSGSIZE, "privsep: frame of %zu bytes is too long", len);
        r = write_full(fd, (const uint8_t *)&hdr, sizeof(hdr));
        if (r == 0)
                r = write_full(fd, buf, len);
        if (r < 0)
                return lserr_set(err, r, "privsep: cannot send a frame: %s", strerror(-r));
        return 0;
}

int privsep_frame_recv(int fd, size_t max, uint8_t **ret, size_t *ret_len, lserr *err)
{
        _cleanup_free_ uint8_t *buf = NULL;
        uint32_t hdr;
        size_t len;
        int r = read_full(fd, (uint8_t *)&hdr, sizeof(hdr));

        if (r == -EPIPE)
                return lserr_set(err, r, "privsep: the other half closed the channel");
        if (r < 0)
                return lserr_set(err, r, "privsep: cannot read a frame header: %s", strerror(-r));
        len = ntohl(hdr);
        if (len > max)
                return lserr_set(err, -EMSGSIZE, "privsep: frame of %zu bytes refused (at most %zu)", len, max);
        buf = malloc(len ? len : 1);
        if (!buf)
                return lserr_set(err, -ENOMEM, "privsep: out of memory for a frame of %zu bytes", len);
        r = read_full(fd, buf, len);
        if (r < 0)
                return lserr_set(err, r == -EPIPE ? -EPROTO : r, "privsep: frame of %zu bytes cut short", len);
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

/* The one string field that may hold a path: the catalog's image hint of a
 * revert or delete, which the agent only compares with what it resolved from
 * its own records and chains, never uses (README, "Revert"). */
static int path_allowed(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f)
{
        return d == &lockstep__disk_image__descriptor && strcmp(f->name, "before") == 0;
}

static int check_string(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f, const char *s,
                        lserr *err)
{
        if (!s || !s[0] || names_valid(s))
                return 0;
        if (path_allowed(d, f) && s[0] == '/' && !strchr(s, '\n'))
                return 0;
        return lserr_set(err, LS_EMALFORMED, "executor: refused: %s.%s is not a name (the executor takes no "
                                             "path or free text from the network half)", d->short_name, f->name);
}

static void strip_unknown(ProtobufCMessage *m)
{
        for (unsigned i = 0; i < m->n_unknown_fields; i++)
                free(m->unknown_fields[i].data);
        free(m->unknown_fields);
        m->unknown_fields = NULL;
        m->n_unknown_fields = 0;
}

/* The elements of field f of m that is set: *ret points at n of them. */
static size_t field_values(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, void **ret)
{
        char *base = (char *)m;

        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(uint32_t *)(base + f->quantifier_offset) != f->id)
                return 0;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                *ret = *(void **)(base + f->offset);
                return *(size_t *)(base + f->quantifier_offset);
        }
        *ret = base + f->offset;
        return 1;
}

/* Strips (strip) or refuses unknown fields in m and below; checks strings. */
static int walk(ProtobufCMessage *m, int strip, unsigned depth, lserr *err)
{
        const ProtobufCMessageDescriptor *d = m->descriptor;
        int r = 0;

        if (depth > 8)
                return lserr_set(err, LS_EMALFORMED, "executor: refused: %s nested too deep", d->short_name);
        if (m->n_unknown_fields && !strip)
                return lserr_set(err, LS_EMALFORMED, "executor: refused: %s carries a field unknown to this "
                                                     "build", d->short_name);
        strip_unknown(m);
        for (unsigned i = 0; r == 0 && i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                void *v = NULL;
                size_t n = field_values(m, f, &v);
                for (size_t j = 0; r == 0 && j < n; j++) {
                        if (f->type == PROTOBUF_C_TYPE_STRING && !strip)
                                r = check_string(d, f, ((char **)v)[j], err);
                        else if (f->type == PROTOBUF_C_TYPE_MESSAGE && ((ProtobufCMessage **)v)[j])
                                r = walk(((ProtobufCMessage **)v)[j], strip, depth + 1, err);
                }
        }
        return r;
}

int privsep_command_encode(Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len, lserr *err)
{
        size_t n;
        uint8_t *buf;

        walk(&cmd->base, 1, 0, err);
        n = lockstep__command__get_packed_size(cmd);
        if (n > PRIVSEP_COMMAND_MAX)
                return lserr_set(err, -EMSGSIZE, "privsep: command of %zu bytes is too long", n);
        buf = malloc(n ? n : 1);
        if (!buf)
                return lserr_set(err, -ENOMEM, "privsep: out of memory");
        lockstep__command__pack(cmd, buf);
        *ret = buf;
        *ret_len = n;
        return 0;
}

int privsep_command_decode(const uint8_t *buf, size_t len, Lockstep__Command **ret, lserr *err)
{
        Lockstep__Command *cmd = lockstep__command__unpack(NULL, len, buf);
        int r;

        if (!cmd)
                return lserr_set(err, LS_EMALFORMED, "executor: refused: a frame of %zu bytes is not a command",
                                 len);
        r = walk(&cmd->base, 0, 0, err);
        if (r == 0 && cmd->step == LOCKSTEP__STEP__STEP_UNSPECIFIED)
                r = lserr_set(err, LS_EMALFORMED, "executor: refused: a command without a step");
        if (r < 0) {
                lockstep__command__free_unpacked(cmd, NULL);
                return r;
        }
        *ret = cmd;
        return 0;
}

/* In the network half: the process it serves. */
static pid_t executor_pid;

pid_t privsep_fork(int fds[PRIVSEP_CHANNELS], lserr *err)
{
        int pairs[PRIVSEP_CHANNELS][2];
        pid_t parent = getpid(), pid;
        int n = 0;

        for (; n < PRIVSEP_CHANNELS; n++)
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pairs[n]) < 0)
                        break;
        if (n < PRIVSEP_CHANNELS || (pid = fork()) < 0) {
                int e = -errno;
                for (int i = 0; i < n; i++) {
                        close(pairs[i][0]);
                        close(pairs[i][1]);
                }
                return lserr_set(err, e, "privsep: cannot split the agent: %s", strerror(-e));
        }
        for (int i = 0; i < PRIVSEP_CHANNELS; i++) {
                close(pairs[i][pid == 0 ? 0 : 1]);
                fds[i] = pairs[i][pid == 0 ? 1 : 0];
        }
        if (pid == 0) {
                executor_pid = parent;
                if (privsep_tie_to_executor() < 0)
                        _exit(1);
        }
        return pid;
}

int privsep_tie_to_executor(void)
{
        /* The network half never outlives the executor. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != executor_pid)
                return -ESRCH;
        return 0;
}

int privsep_send_ready(int fd, const char *msg, lserr *err)
{
        char buf[LSERR_MSG_MAX + 16];
        int n = snprintf(buf, sizeof(buf), msg ? "error %s" : "ready", msg);

        return privsep_frame_send(fd, (const uint8_t *)buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1,
                                  err);
}

int privsep_wait_ready(int fd, lserr *err)
{
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len = 0;
        lserr e = {0};
        int r = privsep_frame_recv(fd, LSERR_MSG_MAX + 16, &buf, &len, &e);

        if (r < 0)
                return lserr_set(err, r, "network half: exited before it was ready");
        if (len == 5 && memcmp(buf, "ready", 5) == 0)
                return 0;
        if (len > 6 && memcmp(buf, "error ", 6) == 0)
                return lserr_set(err, -EIO, "%.*s", (int)(len - 6), (const char *)buf + 6);
        return lserr_set(err, -EPROTO, "network half: unexpected first frame of %zu bytes", len);
}

struct privsep_client {
        pthread_mutex_t lock;
        pthread_cond_t freed;
        int fds[PRIVSEP_CHANNELS];
        int busy[PRIVSEP_CHANNELS];
};

int privsep_client_new(const int fds[PRIVSEP_CHANNELS], struct privsep_client **ret, lserr *err)
{
        struct privsep_client *c = calloc(1, sizeof(*c));

        if (!c)
                return lserr_set(err, -ENOMEM, "privsep: out of memory");
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->freed, NULL);
        memcpy(c->fds, fds, sizeof(c->fds));
        *ret = c;
        return 0;
}

struct privsep_client *privsep_client_free(struct privsep_client *c)
{
        if (!c)
                return NULL;
        pthread_cond_destroy(&c->freed);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

static int take_channel(struct privsep_client *c)
{
        int i;

        pthread_mutex_lock(&c->lock);
        for (;;) {
                for (i = 0; i < PRIVSEP_CHANNELS && c->busy[i]; i++)
                        ;
                if (i < PRIVSEP_CHANNELS)
                        break;
                pthread_cond_wait(&c->freed, &c->lock);
        }
        c->busy[i] = 1;
        pthread_mutex_unlock(&c->lock);
        return i;
}

static void give_channel(struct privsep_client *c, int i)
{
        pthread_mutex_lock(&c->lock);
        c->busy[i] = 0;
        pthread_cond_signal(&c->freed);
        pthread_mutex_unlock(&c->lock);
}

int privsep_call(void *arg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len, lserr *err)
{
        struct privsep_client *c = arg;
        _cleanup_free_ uint8_t *req = NULL;
        size_t len = 0;
        int i, r;

        /* The verified command is the caller's and not used after this. */
        r = privsep_command_encode((Lockstep__Command *)cmd, &req, &len, err);
        if (r < 0)
                return r;
        i = take_channel(c);
        r = privsep_frame_send(c->fds[i], req, len, err);
        if (r == 0)
                r = privsep_frame_recv(c->fds[i], PRIVSEP_REPLY_MAX, ret, ret_len, err);
        give_channel(c, i);
        if (r == 0 && *ret_len == 0) {
                free(*ret);
                *ret = NULL;
                r = lserr_set(err, -EIO, "txid=%s step=%s: the executor made no reply (its log says why)",
                              cmd->txid, env_step_name(cmd->step));
        }
        return r;
}

static void command_freep(Lockstep__Command **c)
{
        if (*c)
                lockstep__command__free_unpacked(*c, NULL);
}

/* The gate's refusal, as an unsigned Reply the network half signs: the
 * coordinator learns why instead of waiting for its deadline. */
static int refusal(const Lockstep__Command *cmd, const lserr *why, uint8_t **ret, size_t *ret_len)
{
        Lockstep__Reply rep = LOCKSTEP__REPLY__INIT;
        size_t n;

        rep.code = LOCKSTEP__ERROR_CODE__E_REJECTED;
        rep.reject_reason = LS_EMALFORMED;
        rep.message = (char *)why->msg;
        if (cmd && names_valid(cmd->txid)) {
                rep.txid = cmd->txid;
                rep.step = cmd->step;
        }
        n = lockstep__reply__get_packed_size(&rep);
        *ret = malloc(n ? n : 1);
        if (!*ret)
                return -ENOMEM;
        lockstep__reply__pack(&rep, *ret);
        *ret_len = n;
        return 0;
}

int privsep_serve_one(int fd, privsep_exec_fn exec, void *arg, lserr *err)
{
        _cleanup_(command_freep) Lockstep__Command *cmd = NULL;
        _cleanup_free_ uint8_t *req = NULL, *rep = NULL;
        size_t len = 0, rep_len = 0;
        lserr why = {0};
        int r = privsep_frame_recv(fd, PRIVSEP_COMMAND_MAX, &req, &len, err);

        if (r < 0)
                return r;
        r = privsep_command_decode(req, len, &cmd, &why);
        if (r < 0) {
                log_warn("%s", why.msg);
                /* A command that unpacked but failed the gate is named in the reply. */
                Lockstep__Command *named = lockstep__command__unpack(NULL, len, req);
                r = refusal(named, &why, &rep, &rep_len);
                if (named)
                        lockstep__command__free_unpacked(named, NULL);
        } else {
                r = exec(arg, cmd, &rep, &rep_len, &why);
                if (r < 0)
                        log_err("request dropped without a reply (%s): %s", lserr_name(r), why.msg);
        }
        /* An empty frame: no reply could be made; the channel goes on. */
        return privsep_frame_send(fd, r < 0 ? NULL : rep, r < 0 ? 0 : rep_len, err);
}

struct privsep_server {
        pthread_t threads[PRIVSEP_CHANNELS];
        int fds[PRIVSEP_CHANNELS];
        int started;
        pid_t child;
        privsep_exec_fn exec;
        void *arg;
        volatile int stopping;
};

struct serve_arg {
        struct privsep_server *s;
        int i;
};

static void *serve_thread(void *p)
{
        struct serve_arg a = *(struct serve_arg *)p;
        struct privsep_server *s = a.s;
        lserr err = {0};
        int r;

        free(p);
        do
                r = privsep_serve_one(s->fds[a.i], s->exec, s->arg, &err);
        while (r == 0);
        if (!s->stopping && r != -EPIPE) {
                /* The network half broke the protocol: it is not trusted with
                 * another frame. Its exit stops the agent. */
                log_err("network half (pid %d): %s: ending it", (int)s->child, err.msg);
                kill(s->child, SIGKILL);
        }
        return NULL;
}

int privsep_serve(const int fds[PRIVSEP_CHANNELS], pid_t child, privsep_exec_fn exec, void *arg,
                  struct privsep_server **ret, lserr *err)
{
        struct privsep_server *s = calloc(1, sizeof(*s));

        if (!s)
                return lserr_set(err, -ENOMEM, "privsep: out of memory");
        memcpy(s->fds, fds, sizeof(s->fds));
        s->child = child;
        s->exec = exec;
        s->arg = arg;
        *ret = s;
        for (; s->started < PRIVSEP_CHANNELS; s->started++) {
                struct serve_arg *a = malloc(sizeof(*a));
                int e = a ? 0 : ENOMEM;
                if (a) {
                        *a = (struct serve_arg){s, s->started};
                        e = pthread_create(&s->threads[s->started], NULL, serve_thread, a);
                }
                if (e) {
                        free(a);
                        return lserr_set(err, -e, "privsep: cannot start the executor's threads: %s", strerror(e));
                }
        }
        return 0;
}

struct privsep_server *privsep_server_stop(struct privsep_server *s)
{
        if (!s)
                return NULL;
        s->stopping = 1;
        for (int i = 0; i < PRIVSEP_CHANNELS; i++)
                shutdown(s->fds[i], SHUT_RDWR);
        for (int i = 0; i < s->started; i++)
                pthread_join(s->threads[i], NULL);
        for (int i = 0; i < PRIVSEP_CHANNELS; i++)
                close(s->fds[i]);
        free(s);
        return NULL;
}
