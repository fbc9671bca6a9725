/* fuzzutil: helpers every harness links; see fuzzutil.h. */
#include "fuzzutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

static void die(const char *what)
{
        perror(what);
        abort();
}

char *fuzz_cstr(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1);

        if (!s)
                die("fuzz_cstr");
        memcpy(s, data, size);
        s[size] = '\0';
        return s;
}

int fuzz_memfd(const uint8_t *data, size_t size, char path[64])
{
        int fd = memfd_create("fuzz", MFD_CLOEXEC);
        size_t off = 0;

        if (fd < 0)
                die("memfd_create");
        /* A memfd is made 0777; the config loaders refuse a file others may
         * write, and would refuse every input before parsing a byte. */
        if (fchmod(fd, 0600) < 0)
                die("memfd fchmod");
        while (off < size) {
                ssize_t w = write(fd, data + off, size - off);
                if (w <= 0)
                        die("memfd write");
                off += (size_t)w;
        }
        snprintf(path, 64, "/proc/self/fd/%d", fd);
        return fd;
}

static char dir[64];

static void dir_remove(void)
{
        fuzz_dir_clear();
        rmdir(dir);
}

const char *fuzz_dir(void)
{
        if (!dir[0]) {
                const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
                snprintf(dir, sizeof(dir), "%s/lockstep-fuzz.XXXXXX", base);
                if (!mkdtemp(dir))
                        die("mkdtemp");
                atexit(dir_remove);
        }
        return dir;
}

void fuzz_dir_clear(void)
{
        DIR *d = opendir(fuzz_dir());
        struct dirent *e;

        if (!d)
                return;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
}

/* A key from the seed first, first + 1, ..., loaded through a key file as a
 * daemon loads its own. */
static struct keys_secret *key_from(uint8_t first)
{
        struct keys_secret *key = NULL;
        uint8_t seed[32];
        char b64[64], path[128];
        lserr err = {0};
        FILE *f = NULL;

        for (int i = 0; i < 32; i++)
                seed[i] = (uint8_t)(first + i);
        if (sodium_init() < 0)
                die("sodium_init");
        sodium_bin2base64(b64, sizeof(b64), seed, sizeof(seed), sodium_base64_VARIANT_ORIGINAL);
        snprintf(path, sizeof(path), "%s/test.key", fuzz_dir());
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || !(f = fdopen(fd, "w")))
                die("test key");
        fprintf(f, "lockstep-key-v1 %s\n", b64);
        fclose(f);
        if (keys_load_secret(path, &key, &err) < 0) {
                fprintf(stderr, "fuzz test key: %s\n", err.msg);
                abort();
        }
        unlink(path);
        return key;
}

const struct keys_secret *fuzz_key(void)
{
        static struct keys_secret *key;

        if (!key)
                key = key_from(1);
        return key;
}

const struct keys_secret *fuzz_key2(void)
{
        static struct keys_secret *key;

        if (!key)
                key = key_from(33);
        return key;
}

static unsigned n_noted, n_accepted;

void fuzz_counts(unsigned *noted, unsigned *accepted)
{
        *noted = n_noted;
        *accepted = n_accepted;
}

void fuzz_note(const char *what, int r, const lserr *err)
{
        static int debug = -1;

        n_noted++;
        n_accepted += r >= 0;

        if (debug < 0)
                debug = getenv("FUZZ_DEBUG") != NULL;
        if (debug)
                fprintf(stderr, "%s: %d %s\n", what, r, r < 0 && err ? err->msg : "");
}
