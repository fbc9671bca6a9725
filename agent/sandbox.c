/* sandbox: uid drop, no_new_privs and seccomp for the network half; a network
 * namespace for the executor; the replay directory the network half may write. */
#include "sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "log.h"

int sandbox_user_lookup(const char *user, struct sandbox_user *ret, lserr *err)
{
        struct sandbox_user u = {.drop = geteuid() == 0, .uid = getuid(), .gid = getgid()};
        struct passwd *pw;

        snprintf(u.name, sizeof(u.name), "%s", user);
        if (u.drop) {
                errno = 0;
                pw = getpwnam(user);
                if (!pw)
                        return lserr_set(err, errno ? -errno : -ENOENT,
                                         "privsep_user: no user \"%s\" on this host (the network half runs as it)",
                                         user);
                if (pw->pw_uid == 0 || pw->pw_gid == 0)
                        return lserr_set(err, -EINVAL, "privsep_user: \"%s\" is root (uid or gid 0): name an "
                                                       "unprivileged user", user);
                u.uid = pw->pw_uid;
                u.gid = pw->pw_gid;
        }
        *ret = u;
        return 0;
}

static void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}

/* Counter files of versions that kept them in state_dir itself: moved, so a
 * key's counter is not reset (a reset would accept a replay of an old command
 * still inside the time window). */
static int migrate_counters(const char *state_dir, const char *dir, const struct sandbox_user *u, lserr *err)
{
        _cleanup_(closedirp) DIR *d = opendir(state_dir);
        char from[4200], to[4200];
        struct dirent *e;

        if (!d)
                return lserr_set(err, -errno, "replay state \"%s\": cannot open: %m", state_dir);
        while ((e = readdir(d)) != NULL) {
                if (strncmp(e->d_name, "counter-", 8) != 0 || strchr(e->d_name, '.'))
                        continue;
                snprintf(from, sizeof(from), "%s/%s", state_dir, e->d_name);
                snprintf(to, sizeof(to), "%s/%s", dir, e->d_name);
                if (u->drop && chown(from, u->uid, u->gid) < 0)
                        return lserr_set(err, -errno, "replay state \"%s\": chown to %s: %m", from, u->name);
                if (rename(from, to) < 0)
                        return lserr_set(err, -errno, "replay state \"%s\": move into \"%s\": %m", from, dir);
                log_info("replay state: moved \"%s\" into \"%s\" (the network half's directory)", from, dir);
        }
        return 0;
}

/* Files already in the replay directory become the user's too: privsep_user
 * may have changed since they were written, and a counter the network half
 * cannot read refuses every command of its key. */
static int own_files(const char *dir, const struct sandbox_user *u, lserr *err)
{
        _cleanup_(closedirp) DIR *d = opendir(dir);
        char path[4200];
        struct dirent *e;
        struct stat st;

        if (!d)
                return lserr_set(err, -errno, "replay state \"%s\": cannot open: %m", dir);
        while ((e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                if (lstat(path, &st) < 0 || (st.st_uid == u->uid && st.st_gid == u->gid))
                        continue;
                if (lchown(path, u->uid, u->gid) < 0)
                        return lserr_set(err, -errno, "replay state \"%s\": chown to %s: %m", path, u->name);
        }
        return 0;
}

int sandbox_replay_dir(const char *state_dir, const struct sandbox_user *u, char *ret_dir, size_t n, lserr *err)
{
        struct stat st;
        int r = fsutil_mkdir_p(state_dir, 0700, err);

        if (r < 0)
                return r;
        if ((size_t)snprintf(ret_dir, n, "%s/%s", state_dir, SANDBOX_REPLAY_SUBDIR) >= n)
                return lserr_set(err, -ENAMETOOLONG, "state_dir \"%s\": path too long", state_dir);
        if (mkdir(ret_dir, 0700) < 0 && errno != EEXIST)
                return lserr_set(err, -errno, "replay state \"%s\": cannot create: %m", ret_dir);
        /* Never follow a link planted there: the chown is root's. */
        if (lstat(ret_dir, &st) < 0 || !S_ISDIR(st.st_mode))
                return lserr_set(err, -ENOTDIR, "replay state \"%s\": not a directory", ret_dir);
        if (u->drop && (st.st_uid != u->uid || st.st_gid != u->gid) && lchown(ret_dir, u->uid, u->gid) < 0)
                return lserr_set(err, -errno, "replay state \"%s\": chown to %s: %m", ret_dir, u->name);
        if (chmod(ret_dir, 0700) < 0)
                return lserr_set(err, -errno, "replay state \"%s\": chmod: %m", ret_dir);
        r = migrate_counters(state_dir, ret_dir, u, err);
        if (r >= 0 && u->drop)
                r = own_files(ret_dir, u, err);
        return r;
}

/* A deny-list, not an allow-list: nng's threads, libsodium, glibc's allocator
 * and logging make the exact set of calls a moving target between library
 * versions, and a missed call would stop the agent mid-cut. What is denied is
 * what the network half never needs and an attacker wants: new programs,
 * other processes' memory, namespaces, mounts, kernel code and keys, and any
 * way back to another uid. */
static const char *const denied[] = {
        "execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "umount",
        "unshare", "setns", "pivot_root", "chroot", "init_module", "finit_module", "delete_module", "kexec_load",
        "kexec_file_load", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
        "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
        "capset", "reboot", "swapon", "swapoff", "open_by_handle_at", "name_to_handle_at", "acct", "quotactl",
        "mknod", "mknodat", "fanotify_init", "iopl", "ioperm", "syslog", "vhangup", "personality",
        "mount_setattr", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick",
};

/* Threads are clone() without namespace flags: refuse those flags only. */
static int deny_clone_namespaces(scmp_filter_ctx ctx)
{
        static const unsigned long ns[] = {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID,
                                           CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP};
        int r = 0;

        for (size_t i = 0; r == 0 && i < sizeof(ns) / sizeof(ns[0]); i++)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                     SCMP_A0(SCMP_CMP_MASKED_EQ, ns[i], ns[i]));
        /* clone3's flags are behind a pointer: ENOSYS makes glibc use clone. */
        if (r == 0)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        return r;
}

static void seccomp_releasep(scmp_filter_ctx *ctx)
{
        if (*ctx)
                seccomp_release(*ctx);
}

static int load_filter(lserr *err)
{
        _cleanup_(seccomp_releasep) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
        int r;

        if (!ctx)
                return lserr_set(err, -ENOMEM, "seccomp: cannot make a filter");
        /* Every thread (nng's already run) gets the filter and no_new_privs. */
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
        for (size_t i = 0; r == 0 && i < sizeof(denied) / sizeof(denied[0]); i++) {
                int nr = seccomp_syscall_resolve_name(denied[i]);
                if (nr != __NR_SCMP_ERROR)
                        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
        }
        if (r == 0)
                r = deny_clone_namespaces(ctx);
        if (r == 0)
                r = seccomp_load(ctx);
        if (r < 0)
                return lserr_set(err, r, "seccomp: cannot load the network half's filter: %s", strerror(-r));
        return 0;
}

static int drop_uid(const struct sandbox_user *u, lserr *err)
{
        if (!u->drop) {
                log_info("privsep: not started as root: the network half keeps uid %u", (unsigned)getuid());
                return 0;
        }
        /* glibc applies these to every thread of the process. */
        if (setgroups(0, NULL) < 0 || setresgid(u->gid, u->gid, u->gid) < 0 || setresuid(u->uid, u->uid, u->uid) < 0)
                return lserr_set(err, -errno, "privsep: cannot drop to user \"%s\": %m", u->name);
        if (setuid(0) == 0 || seteuid(0) == 0)
                return lserr_set(err, -EPERM, "privsep: uid 0 is still reachable after dropping to \"%s\"", u->name);
        return 0;
}

int sandbox_drop(const struct sandbox_user *u, lserr *err)
{
        int r = drop_uid(u, err);

        if (r < 0)
                return r;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return lserr_set(err, -errno, "privsep: no_new_privs: %m");
        return load_filter(err);
}

int sandbox_no_network(lserr *err)
{
        if (unshare(CLONE_NEWNET) == 0)
                return 0;
        if (geteuid() != 0 && errno == EPERM) {
                log_info("privsep: not started as root: the executor keeps the host's network");
                return 0;
        }
        return lserr_set(err, -errno, "privsep: executor: cannot leave the network (unshare CLONE_NEWNET): %m");
}
