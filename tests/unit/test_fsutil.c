/* test_fsutil: fsutil_write_atomic's temporary file, which another local user must
 * not be able to prepare in advance (a file or symlink at its name). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsutil.h"
#include "testutil.h"

/* The random suffixes the next temporary names get (linked with
 * --wrap=randombytes_buf), so a test can prepare a trap at exactly those names. */
static uint32_t script[8][2];
static size_t n_script, next_script;

void __real_randombytes_buf(void *buf, size_t size);
void __wrap_randombytes_buf(void *buf, size_t size)
{
        if (next_script < n_script && size == sizeof(script[0])) {
                memcpy(buf, script[next_script++], size);
                return;
        }
        __real_randombytes_buf(buf, size);
}

/* What the file being written looked like when its bytes were flushed
 * (--wrap=fsync): its mode then and the name it had. */
static mode_t synced_mode;
static char synced_name[4096];
static unsigned n_fsync; /* every fsync, of files and directories */

int __real_fsync(int fd);
int __wrap_fsync(int fd)
{
        struct stat st;
        char proc[64];
        ssize_t n;

        n_fsync++;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
                synced_mode = st.st_mode & 07777;
                snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
                n = readlink(proc, synced_name, sizeof(synced_name) - 1);
                synced_name[n > 0 ? n : 0] = '\0';
        }
        return __real_fsync(fd);
}

static char *path_of(const char *dir, const char *name)
{
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
        return p;
}

static void assert_content(const char *path, const char *want)
{
        char *buf = NULL;
        size_t len = 0;
        lserr err = {0};

        assert_int_equal(fsutil_read_all(path, 4096, &buf, &len, &err), 0);
        assert_string_equal(buf, want);
        free(buf);
}

/* The old name (path.tmp.<pid>) as a file someone holds open and as a symlink to a
 * file of theirs, and the first two random names as a symlink and a file: none of
 * them gets the secret, and the target is written. */
static void test_precreated_temp_not_used(void **state)
{
        static const char secret[] = "lockstep-key-v1 c2VjcmV0\n";
        char *dir = tu_mkdtemp(), *target = path_of(dir, "coord.key"), *stolen = path_of(dir, "stolen");
        char old[4200], guess1[4200], guess2[4200], got[64];
        struct stat st;
        lserr err = {0};
        int held;
        ssize_t n;

        (void)state;
        snprintf(old, sizeof(old), "%s.tmp.%d", target, (int)getpid());
        held = open(old, O_RDWR | O_CREAT | O_EXCL, 0666);
        assert_true(held >= 0);
        assert_int_equal(fchmod(held, 0666), 0);
        script[0][0] = 0x11111111, script[0][1] = 0x22222222;
        script[1][0] = 0x33333333, script[1][1] = 0x44444444;
        n_script = 2, next_script = 0;
        snprintf(guess1, sizeof(guess1), "%s.tmp.1111111122222222", target);
        snprintf(guess2, sizeof(guess2), "%s.tmp.3333333344444444", target);
        assert_int_equal(symlink(stolen, guess1), 0);
        free(tu_write(dir, "coord.key.tmp.3333333344444444", "", 0666));

        assert_int_equal(fsutil_write_atomic(target, secret, strlen(secret), 0600, FSUTIL_EXCL, &err), 0);
        assert_string_equal(err.msg, "");
        assert_content(target, secret);
        assert_int_equal(lstat(target, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0600);
        /* The file held open by the "other user" stayed empty. */
        n = pread(held, got, sizeof(got), 0);
        assert_int_equal(n, 0);
        close(held);
        /* The symlinks' target was never created; the traps are left as they were. */
        assert_int_equal(stat(stolen, &st), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_equal(lstat(guess1, &st), 0);
        assert_true(S_ISLNK(st.st_mode));
        assert_int_equal(stat(guess2, &st), 0);
        assert_int_equal(st.st_size, 0);
        assert_int_equal(n_script, next_script);
        tu_rmtree(dir);
        free(target);
        free(stolen);
}

/* The same with the old name as a symlink: it must not lead the data elsewhere
 * nor be renamed into place. */
static void test_precreated_symlink_not_followed(void **state)
{
        static const char secret[] = "lockstep-key-v1 c2VjcmV0\n";
        char *dir = tu_mkdtemp(), *target = path_of(dir, "agent.key"), *stolen = path_of(dir, "stolen");
        char old[4200];
        struct stat st;
        lserr err = {0};

        (void)state;
        n_script = next_script = 0;
        snprintf(old, sizeof(old), "%s.tmp.%d", target, (int)getpid());
        assert_int_equal(symlink(stolen, old), 0);
        assert_int_equal(fsutil_write_atomic(target, secret, strlen(secret), 0600, 0, &err), 0);
        assert_int_equal(lstat(target, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_content(target, secret);
        assert_int_equal(lstat(stolen, &st), -1);
        tu_rmtree(dir);
        free(target);
        free(stolen);
}

/* The temporary file has the final mode from its creation (whatever the umask),
 * and its name is not the guessable path.tmp.<pid>. */
static void test_temp_mode_and_name(void **state)
{
        static const mode_t modes[] = {0600, 0644, 0400};
        char *dir = tu_mkdtemp(), *target = path_of(dir, "f");
        char old[4200];
        mode_t um = umask(0077);
        lserr err = {0};

        (void)state;
        n_script = next_script = 0;
        snprintf(old, sizeof(old), "%s.tmp.%d", target, (int)getpid());
        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
                struct stat st;
                synced_mode = 0;
                synced_name[0] = '\0';
                assert_int_equal(fsutil_write_atomic(target, "x", 1, modes[i], 0, &err), 0);
                assert_int_equal(synced_mode, modes[i]);
                assert_true(strncmp(synced_name, target, strlen(target)) == 0);
                assert_non_null(strstr(synced_name, ".tmp."));
                assert_string_not_equal(synced_name, old);
                assert_int_equal(stat(target, &st), 0);
                assert_int_equal(st.st_mode & 07777, modes[i]);
        }
        umask(um);
        tu_rmtree(dir);
        free(target);
}

static int entries(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *e;
        int n = 0;

        assert_non_null(d);
        while ((e = readdir(d)) != NULL)
                n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
        closedir(d);
        return n;
}

/* FSUTIL_NOSYNC: the content replaced whole, the temporary gone, no fsync of
 * the file or its directory; with FSUTIL_EXCL as well, an existing path is still
 * refused. Without it, both are synced. */
static void test_nosync(void **state)
{
        char *dir = tu_mkdtemp(), *target = path_of(dir, "f");
        lserr err = {0};

        (void)state;
        n_script = next_script = 0;
        n_fsync = 0;
        assert_int_equal(fsutil_write_atomic(target, "one", 3, 0600, FSUTIL_NOSYNC, &err), 0);
        assert_int_equal(fsutil_write_atomic(target, "two", 3, 0600, FSUTIL_NOSYNC, &err), 0);
        assert_int_equal(n_fsync, 0);
        assert_content(target, "two");
        assert_true(fsutil_write_atomic(target, "three", 5, 0600, FSUTIL_EXCL | FSUTIL_NOSYNC, &err) == -EEXIST);
        assert_non_null(strstr(err.msg, target));
        assert_content(target, "two");
        assert_int_equal(fsutil_write_atomic(target, "four", 4, 0600, 0, &err), 0);
        assert_int_equal(n_fsync, 2);
        assert_content(target, "four");
        assert_int_equal(entries(dir), 1); /* no temporary left beside it */
        tu_rmtree(dir);
        free(target);
}

/* Every random name taken: a clear refusal, the target untouched. */
static void test_every_name_taken(void **state)
{
        char *dir = tu_mkdtemp(), *target = path_of(dir, "f");
        struct stat st;
        lserr err = {0};

        (void)state;
        for (size_t i = 0; i < 8; i++) {
                char name[64];
                script[i][0] = 0xabcd0000u + (uint32_t)i;
                script[i][1] = 0;
                snprintf(name, sizeof(name), "f.tmp.%08x%08x", script[i][0], 0u);
                free(tu_write(dir, name, "", 0600));
        }
        n_script = 8, next_script = 0;
        assert_true(fsutil_write_atomic(target, "x", 1, 0600, 0, &err) == -EEXIST);
        assert_non_null(strstr(err.msg, target));
        assert_int_equal(stat(target, &st), -1);
        n_script = next_script = 0;
        tu_rmtree(dir);
        free(target);
}

/* LOCKSTEP_CLOCK_OFFSET_S: whole seconds within the bound, nothing else. */
static void test_clock_offset_parse(void **state)
{
        static const struct {
                const char *in;
                int ok;
                long long want;
        } cases[] = {
                {"600", 1, 600},   {"-600", 1, -600}, {"+600", 1, 600},   {"0", 1, 0},
                {"315360000", 1, FSUTIL_CLOCK_OFFSET_MAX_S}, {"-315360000", 1, -FSUTIL_CLOCK_OFFSET_MAX_S},
                {"315360001", 0, 0}, {"-315360001", 0, 0}, {"99999999999999999999", 0, 0},
                {"", 0, 0},        {"10min", 0, 0},    {"1.5", 0, 0},     {"600 ", 0, 0}, {"0x10", 0, 0},
        };

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                long long v = 42;
                lserr err = {0};
                int r = fsutil_clock_offset_parse(cases[i].in, &v, &err);
                if (cases[i].ok) {
                        assert_int_equal(r, 0);
                        assert_true(v == cases[i].want);
                } else {
                        assert_int_equal(r, -EINVAL);
                        assert_true(v == 42); /* untouched on failure */
                        assert_non_null(strstr(err.msg, "LOCKSTEP_CLOCK_OFFSET_S=\""));
                        assert_non_null(strstr(err.msg, "is not a whole number of seconds in -315360000..315360000"));
                }
        }
}

/* Set, it shifts Unix time and never the monotonic clock, in a test build; a
 * release build ignores it. A bad value is refused and shifts nothing. */
static void test_clock_offset_env(void **state)
{
        long long s = 0, before = fsutil_now_us(), mono = fsutil_mono_us();
        lserr err = {0};

        (void)state;
        assert_int_equal(setenv("LOCKSTEP_CLOCK_OFFSET_S", "bogus", 1), 0);
#ifdef LOCKSTEP_FAILPOINTS
        assert_int_equal(fsutil_clock_offset_env(&s, &err), -EINVAL);
        assert_true(llabs(fsutil_now_us() - before) < 60 * 1000000LL);
        assert_int_equal(setenv("LOCKSTEP_CLOCK_OFFSET_S", "-600", 1), 0);
        assert_int_equal(fsutil_clock_offset_env(&s, &err), 1);
        assert_true(s == -600);
        assert_true(llabs(fsutil_now_us() - (before - 600 * 1000000LL)) < 60 * 1000000LL);
        assert_true(llabs(fsutil_mono_us() - mono) < 60 * 1000000LL); /* never shifted */
        assert_int_equal(setenv("LOCKSTEP_CLOCK_OFFSET_S", "0", 1), 0);
        assert_int_equal(fsutil_clock_offset_env(&s, &err), 1);
#else
        assert_int_equal(fsutil_clock_offset_env(&s, &err), 0);
        assert_true(s == 0);
        (void)mono;
#endif
        assert_true(llabs(fsutil_now_us() - before) < 60 * 1000000LL);
        unsetenv("LOCKSTEP_CLOCK_OFFSET_S");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_precreated_temp_not_used),
                cmocka_unit_test(test_precreated_symlink_not_followed),
                cmocka_unit_test(test_temp_mode_and_name),
                cmocka_unit_test(test_every_name_taken),
                cmocka_unit_test(test_nosync),
                cmocka_unit_test(test_clock_offset_parse),
                cmocka_unit_test(test_clock_offset_env),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
