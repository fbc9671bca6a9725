/* lv_image: image files without libvirt: the backing file a qcow2 header
 * names (read only from images known to be qcow2), and qemu-img as a child
 * process. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "hv.h"
#include "lv_image.h"

#define QCOW2_MAGIC "QFI\xfb"
#define QCOW2_EXT_BACKING_FORMAT 0xE2792ACAu
/* The header, its extensions and the backing name sit in the first cluster;
 * more than this of it is never read. */
#define QCOW2_HEAD_MAX (64u * 1024)

static uint64_t be64(const unsigned char *p)
{
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

static uint32_t be32(const unsigned char *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int lv_image_plain_path(const char *p)
{
        size_t len = strlen(p);

        if (p[0] != '/' || len >= HV_PATH_MAX || p[len - 1] == '/')
                return 0;
        for (const char *c = p; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                        return 0;
        /* No empty, "." or ".." component: the path names what it reads as. */
        for (const char *c = p + 1;;) {
                size_t cl = strcspn(c, "/");
                if (cl == 0 || (cl == 1 && c[0] == '.') || (cl == 2 && c[0] == '.' && c[1] == '.'))
                        return 0;
                if (!c[cl])
                        return 1;
                c += cl + 1;
        }
}

/* The backing format header extension of hdr (len bytes) into fmt; "" when
 * there is none. */
static int backing_format(const char *path, const unsigned char *hdr, size_t len, char *fmt, size_t fn, lserr *err)
{
        uint32_t version = be32(hdr + 4);
        size_t off = version >= 3 ? be32(hdr + 100) : 72;

        fmt[0] = '\0';
        while (off + 8 <= len) {
                uint32_t type = be32(hdr + off), elen = be32(hdr + off + 4);
                if (type == 0)
                        return 0;
                if (elen > len - off - 8)
                        break;
                if (type == QCOW2_EXT_BACKING_FORMAT) {
                        if (elen == 0 || elen >= fn || memchr(hdr + off + 8, '\0', elen))
                                return lserr_set(err, LS_EIMAGE, "\"%s\": qcow2 backing format unreadable", path);
                        memcpy(fmt, hdr + off + 8, elen);
                        fmt[elen] = '\0';
                        return 0;
                }
                off += 8 + ((elen + 7u) & ~7u);
        }
        return lserr_set(err, LS_EIMAGE, "\"%s\": qcow2 header extensions unreadable", path);
}

/* The backing name and format in a qcow2 header of len bytes. */
static int parse_qcow2(const char *path, const unsigned char *hdr, size_t len, char *out, size_t n, char *fmt,
                       size_t fn, lserr *err)
{
        uint64_t off;
        uint32_t nl;
        int r;

        if (len < 104 || memcmp(hdr, QCOW2_MAGIC, 4) || (be32(hdr + 4) != 2 && be32(hdr + 4) != 3))
                return lserr_set(err, LS_EIMAGE, "\"%s\": not a qcow2 image, though its disk says it is", path);
        off = be64(hdr + 8);
        nl = be32(hdr + 16);
        if (off == 0 || nl == 0)
                return 0; /* the bottom of the chain */
        if (off > len || nl > len - off)
                return lserr_set(err, LS_EIMAGE, "\"%s\": qcow2 backing file name unreadable", path);
        if (nl >= n)
                return lserr_set(err, LS_EIMAGE, "\"%s\": backing file path too long", path);
        memcpy(out, hdr + off, nl);
        out[nl] = '\0';
        if (!lv_image_plain_path(out)) {
                out[0] = '\0';
                return lserr_set(err, LS_EIMAGE,
                                 "\"%s\": its backing file name is not a plain absolute path: refused", path);
        }
        r = backing_format(path, hdr, len, fmt, fn, err);
        if (r == 0 && !fmt[0])
                r = lserr_set(err, LS_EIMAGE, "\"%s\": backing file \"%s\" has no recorded format: refusing to guess it",
                              path, out);
        if (r < 0)
                out[0] = fmt[0] = '\0';
        return r;
}

int lv_image_backing(const char *path, const char *format, char *out, size_t n, char *ret_fmt, size_t fn, lserr *err)
{
        _cleanup_free_ unsigned char *hdr = NULL;
        _cleanup_close_ int fd = -1;
        ssize_t len;

        out[0] = ret_fmt[0] = '\0';
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return lserr_set(err, -errno, "\"%s\": open: %m", path);
        /* Only QEMU writes a qcow2 image's header; anything else (a raw disk)
         * holds what the guest wrote, so it is never read as one. */
        if (strcmp(format, "qcow2"))
                return 0;
        hdr = malloc(QCOW2_HEAD_MAX);
        if (!hdr)
                return -ENOMEM;
        len = pread(fd, hdr, QCOW2_HEAD_MAX, 0);
        if (len < 0)
                return lserr_set(err, -errno, "\"%s\": read: %m", path);
        return parse_qcow2(path, hdr, (size_t)len, out, n, ret_fmt, fn, err);
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
