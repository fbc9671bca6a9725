/* lv_image: image files without libvirt: the format by magic bytes, qcow2's
 * backing file name, and qemu-img as a child process. */
#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "hv.h"
#include "lv_image.h"

#define QCOW2_MAGIC "QFI\xfb"

const char *lv_image_format(const char *path)
{
        unsigned char m[4] = {0};
        _cleanup_fclose_ FILE *f = fopen(path, "rb");

        if (f && fread(m, 1, sizeof(m), f) != sizeof(m))
                m[0] = 0;
        return memcmp(m, QCOW2_MAGIC, 4) ? "raw" : "qcow2";
}

/* name (from the header of path) joined to path's directory unless absolute. */
static int resolve_backing(const char *path, const char *name, char *out, size_t n, lserr *err)
{
        const char *slash = strrchr(path, '/');
        int dl = name[0] == '/' || !slash ? 0 : (int)(slash - path + 1);

        if (snprintf(out, n, "%.*s%s", dl, path, name) >= (int)n)
                return lserr_set(err, LS_EHV, "\"%s\": backing file path too long", path);
        return 0;
}

int lv_image_backing(const char *path, char *out, size_t n, lserr *err)
{
        unsigned char hdr[20];
        char name[HV_PATH_MAX];
        unsigned long long off = 0;
        unsigned len = 0;
        _cleanup_fclose_ FILE *f = fopen(path, "rb");

        out[0] = '\0';
        if (!f)
                return lserr_set(err, -errno, "\"%s\": open: %m", path);
        if (fread(hdr, 1, sizeof(hdr), f) != sizeof(hdr) || memcmp(hdr, QCOW2_MAGIC, 4) != 0)
                return 0; /* raw (or too short to be qcow2): end of the chain */
        for (int i = 0; i < 8; i++)
                off = off << 8 | hdr[8 + i];
        for (int i = 0; i < 4; i++)
                len = len << 8 | hdr[16 + i];
        if (off == 0 || len == 0)
                return 0;
        if (len >= sizeof(name) || fseeko(f, (off_t)off, SEEK_SET) != 0 || fread(name, 1, len, f) != len)
                return lserr_set(err, LS_EHV, "\"%s\": qcow2 backing file name unreadable", path);
        name[len] = '\0';
        return resolve_backing(path, name, out, n, err);
}

static int run_program(const char *const argv[], int quiet, lserr *err)
{
        pid_t pid;
        int status;

        assert(argv[0] && argv[1] && argv[2]); /* the message names three words */
        pid = fork();
        if (pid < 0)
                return lserr_set(err, -errno, "fork: %m");
        if (pid == 0) {
                int fd = quiet ? open("/dev/null", O_WRONLY) : -1;
                if (fd >= 0)
                        dup2(fd, STDOUT_FILENO);
                execvp(argv[0], (char *const *)argv);
                _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return lserr_set(err, LS_EHV, "%s %s %s failed", argv[0], argv[1], argv[2]);
        return 0;
}

int lv_image_run(const char *const argv[], lserr *err)
{
        return run_program(argv, 0, err);
}

int lv_image_run_quiet(const char *const argv[], lserr *err)
{
        return run_program(argv, 1, err);
}
