/* test_keys: key files, their formats, their permission rule and fingerprints. */
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

#include "envelope.h"
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

/* The owner is checked on the open file: a key of another user (not root) is
 * refused with its path, and so is a symlink to a good key. */
static void test_owner_and_symlink_refused(void **state)
{
        char *dir = tu_mkdtemp(), *prefix = path_of(dir, "a"), *key = path_of(dir, "a.key"),
             *link = path_of(dir, "link.key");
        struct keys_secret *k = NULL, *loaded = NULL;
        lserr err = {0};

        (void)state;
        assert_int_equal(keys_generate(&k, &err), 0);
        assert_int_equal(keys_write(prefix, k, &err), 0);
        if (geteuid() == 0) {
                assert_int_equal(chown(key, 65534, 65534), 0);
                assert_int_equal(keys_load_secret(key, &loaded, &err), LS_EKEYPERM);
                assert_null(loaded);
                assert_non_null(strstr(err.msg, "owned by uid 65534"));
                assert_non_null(strstr(err.msg, key));
                assert_int_equal(chown(key, 0, 0), 0);
        }
        assert_int_equal(symlink(key, link), 0);
        lserr_clear(&err);
        assert_true(keys_load_secret(link, &loaded, &err) < 0);
        assert_null(loaded);
        assert_non_null(strstr(err.msg, link));
        lserr_clear(&err);
        assert_int_equal(keys_load_secret(key, &loaded, &err), 0);
        keys_secret_free(loaded);
        keys_secret_free(k);
        free(prefix);
        free(key);
        free(link);
        tu_rmtree(dir);
}

/* Two trusted keys with one 8-byte id (the same key twice, or a collision of two
 * keys) are refused, naming both; the verifier is not made. */
static void test_duplicate_id_refused(void **state)
{
        struct keys_secret *k1 = NULL, *k2 = NULL;
        struct env_trusted t[3] = {0};
        struct env_verifier *v = NULL;
        lserr err = {0};

        (void)state;
        assert_int_equal(keys_generate(&k1, &err), 0);
        assert_int_equal(keys_generate(&k2, &err), 0);
        t[0].pub = *keys_secret_public(k1);
        t[1].pub = *keys_secret_public(k2);
        t[2].pub = *keys_secret_public(k1);
        snprintf(t[0].name, sizeof(t[0].name), "ops");
        snprintf(t[1].name, sizeof(t[1].name), "backup");
        snprintf(t[2].name, sizeof(t[2].name), "ops-again");
        assert_int_equal(env_trusted_unique(t, 2, &err), 0);
        assert_int_equal(env_trusted_unique(t, 3, &err), LS_ECONFIG);
        assert_non_null(strstr(err.msg, "\"ops\" and \"ops-again\""));
        lserr_clear(&err);
        assert_int_equal(env_verifier_new("agent1", t, 3, NULL, ENV_WINDOW_DEFAULT_US, ENV_MAX_DEFAULT, &v, &err),
                         LS_ECONFIG);
        assert_null(v);
        assert_non_null(strstr(err.msg, "ops-again"));
        /* Another key whose id collides: refused the same way, the signature is not
         * left to decide between them. */
        t[2].pub = *keys_secret_public(k2);
        t[2].pub.pk[0] ^= 1;
        memcpy(t[2].pub.id, t[1].pub.id, KEYS_ID_LEN);
        lserr_clear(&err);
        assert_int_equal(env_trusted_unique(t, 3, &err), LS_ECONFIG);
        assert_non_null(strstr(err.msg, "\"backup\" and \"ops-again\""));
        lserr_clear(&err);
        assert_int_equal(env_verifier_new("agent1", t, 2, NULL, ENV_WINDOW_DEFAULT_US, ENV_MAX_DEFAULT, &v, &err), 0);
        env_verifier_free(v);
        keys_secret_free(k1);
        keys_secret_free(k2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_write_and_load),
                cmocka_unit_test(test_loose_permissions_refused),
                cmocka_unit_test(test_bad_formats),
                cmocka_unit_test(test_owner_and_symlink_refused),
                cmocka_unit_test(test_duplicate_id_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
