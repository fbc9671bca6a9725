/* test_keys: key files, their formats, their permission rule and fingerprints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "keys.h"
#include "testutil.h"

static char *path_of(const char *dir, const char *name)
{
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
        return p;
}

static void test_write_and_load(void **state)
{
        char *dir = tu_mkdtemp(), *prefix = path_of(dir, "coord"), *key = path_of(dir, "coord.key"),
             *pub = path_of(dir, "coord.pub");
        struct keys_secret *k = NULL, *loaded = NULL;
        struct keys_public p;
        struct stat st;
        lserr err = {0};
        char fpr[KEYS_FPR_LEN];

        (void)state;
        assert_int_equal(keys_generate(&k, &err), 0);
        assert_int_equal(keys_write(prefix, k, &err), 0);
        assert_int_equal(stat(key, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(stat(pub, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0644);

        assert_int_equal(keys_load_secret(key, &loaded, &err), 0);
        assert_memory_equal(keys_secret_public(loaded)->pk, keys_secret_public(k)->pk, KEYS_PK_LEN);
        assert_int_equal(keys_load_public(pub, &p, &err), 0);
        assert_memory_equal(p.pk, keys_secret_public(k)->pk, KEYS_PK_LEN);
        assert_memory_equal(p.id, keys_secret_public(k)->id, KEYS_ID_LEN);

        /* The .pub file carries the fingerprint of the id. */
        keys_fingerprint(p.id, fpr);
        assert_int_equal(strlen(fpr), 23);
        assert_int_equal(fpr[2], ':');
        {
                FILE *f = fopen(pub, "r");
                char line[256];
                assert_non_null(fgets(line, sizeof(line), f));
                fclose(f);
                assert_non_null(strstr(line, fpr));
                assert_int_equal(strncmp(line, "lockstep-pub-v1 ", 16), 0);
                /* Inline form, as configs may carry it. */
                line[strcspn(line, "\n")] = '\0';
                memset(&p, 0, sizeof(p));
                assert_int_equal(keys_load_public(line, &p, &err), 0);
                assert_memory_equal(p.pk, keys_secret_public(k)->pk, KEYS_PK_LEN);
        }

        /* Never overwrite a key. */
        assert_int_equal(keys_write(prefix, k, &err), -EEXIST);
        assert_non_null(strstr(err.msg, "refusing to overwrite"));

        keys_secret_free(k);
        keys_secret_free(loaded);
        free(prefix);
        free(key);
        free(pub);
        tu_rmtree(dir);
}

static void test_loose_permissions_refused(void **state)
{
        char *dir = tu_mkdtemp(), *prefix = path_of(dir, "a"), *key = path_of(dir, "a.key");
        struct keys_secret *k = NULL, *loaded = NULL;
        static const int modes[] = {0640, 0604, 0660, 0644, 0666};
        lserr err = {0};

        (void)state;
        assert_int_equal(keys_generate(&k, &err), 0);
        assert_int_equal(keys_write(prefix, k, &err), 0);
        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
                assert_int_equal(chmod(key, (mode_t)modes[i]), 0);
                lserr_clear(&err);
                assert_int_equal(keys_load_secret(key, &loaded, &err), LS_EKEYPERM);
                assert_null(loaded);
                assert_non_null(strstr(err.msg, "chmod 600"));
                assert_non_null(strstr(err.msg, key));
        }
        assert_int_equal(chmod(key, 0400), 0);
        lserr_clear(&err);
        assert_int_equal(keys_load_secret(key, &loaded, &err), 0);
        keys_secret_free(loaded);
        keys_secret_free(k);
        free(prefix);
        free(key);
        tu_rmtree(dir);
}

static void test_bad_formats(void **state)
{
        char *dir = tu_mkdtemp();
        struct keys_secret *loaded = NULL;
        struct keys_public p;
        lserr err = {0};
        char *f;

        (void)state;
        f = tu_write(dir, "x.key", "lockstep-key-v1 bm90IGEga2V5\n", 0600);
        assert_int_equal(keys_load_secret(f, &loaded, &err), LS_EKEYFORMAT);
        free(f);
        lserr_clear(&err);
        f = tu_write(dir, "y.key", "ssh-ed25519 AAAA\n", 0600);
        assert_int_equal(keys_load_secret(f, &loaded, &err), LS_EKEYFORMAT);
        free(f);
        lserr_clear(&err);
        /* A public key file is not a secret key. */
        f = tu_write(dir, "z.key", "lockstep-pub-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", 0600);
        assert_int_equal(keys_load_secret(f, &loaded, &err), LS_EKEYFORMAT);
        free(f);
        lserr_clear(&err);
        assert_int_equal(keys_load_public("lockstep-pub-v1 !!!", &p, &err), LS_EKEYFORMAT);
        lserr_clear(&err);
        assert_int_equal(keys_load_public("/nonexistent/k.pub", &p, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "/nonexistent/k.pub"));
        /* Comments and blank lines before the key are fine. */
        lserr_clear(&err);
        f = tu_write(dir, "c.pub", "# made by hand\n\nlockstep-pub-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
                     0644);
        assert_int_equal(keys_load_public(f, &p, &err), 0);
        free(f);
        assert_null(loaded);
        tu_rmtree(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_write_and_load),
                cmocka_unit_test(test_loose_permissions_refused),
                cmocka_unit_test(test_bad_formats),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
