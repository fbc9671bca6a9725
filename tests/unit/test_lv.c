/* test_lv: the libvirt backend's pieces that need no real hypervisor: image
 * headers and backing chains on made-up files, domain XML, and the backend's
 * calls against libvirt's in-process test driver (test:///default: no daemon,
 * no guests). Its messages say the step, never the VM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hv_backend.h"
#include "lv_chain.h"
#include "lv_conn.h"
#include "lv_image.h"
#include "lv_xml.h"
#include "lv_xml_priv.h"
#include "testutil.h"

/* Writes a version 3 qcow2 header naming backing ("" for none) of format
 * fmt (NULL: no backing format extension) at dir/name. */
static void qcow2(const char *dir, const char *name, const char *backing, const char *fmt)
{
        unsigned char hdr[1024] = {'Q', 'F', 'I', 0xfb, 0, 0, 0, 3};
        size_t len = strlen(backing);
        char path[HV_PATH_MAX];
        FILE *f;

        hdr[103] = 104; /* header length: the extensions follow at 104 */
        if (fmt) {
                memcpy(hdr + 104, "\xE2\x79\x2A\xCA", 4);
                hdr[111] = (unsigned char)strlen(fmt);
                memcpy(hdr + 112, fmt, strlen(fmt));
        }
        if (len) {
                hdr[14] = 0x02; /* backing file name at offset 512 */
                hdr[18] = (unsigned char)(len >> 8);
                hdr[19] = (unsigned char)len;
                memcpy(hdr + 512, backing, len);
        }
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(hdr, 1, sizeof(hdr), f), sizeof(hdr));
        fclose(f);
}

/* dir/name in one of four rotating buffers: for arguments, not to keep. */
static char *at(const char *dir, const char *name)
{
        static char buf[4][HV_PATH_MAX];
        static int k;

        k = (k + 1) % 4;
        snprintf(buf[k], HV_PATH_MAX, "%s/%s", dir, name);
        return buf[k];
}

static void test_plain_paths(void **state)
{
        (void)state;
        assert_true(lv_image_plain_path("/var/lib/libvirt/images/web1-vda.qcow2"));
        assert_true(lv_image_plain_path("/a:b/c")); /* no protocol: it starts with '/' */
        assert_false(lv_image_plain_path("base.raw"));
        assert_false(lv_image_plain_path("json:{\"file.filename\":\"/dev/sda\"}"));
        assert_false(lv_image_plain_path("nbd://host/x"));
        assert_false(lv_image_plain_path("/img/../dev/sda"));
        assert_false(lv_image_plain_path("/img/./x"));
        assert_false(lv_image_plain_path("/img//x"));
        assert_false(lv_image_plain_path("/img/x/"));
        assert_false(lv_image_plain_path("/img/x\n/y"));
        assert_false(lv_image_plain_path(""));
}

static void test_image_backing(void **state)
{
        char *dir = tu_mkdtemp();
        char out[HV_PATH_MAX], fmt[16], name[HV_PATH_MAX];
        lserr err = {0};

        (void)state;
        snprintf(name, sizeof(name), "%s", at(dir, "base.raw"));
        free(tu_write(dir, "base.raw", "not an image header", 0644));
        qcow2(dir, "abs.qcow2", name, "raw");
        qcow2(dir, "alone.qcow2", "", NULL);
        qcow2(dir, "rel.qcow2", "base.raw", "raw");
        qcow2(dir, "json.qcow2", "json:{\"file.filename\":\"/dev/sda\"}", "raw");
        qcow2(dir, "dots.qcow2", "/img/../dev/sda", "raw");
        qcow2(dir, "nofmt.qcow2", name, NULL);
        /* A raw disk whose guest wrote a qcow2 header naming another file. */
        qcow2(dir, "guest.raw", "/dev/sda", "raw");

        assert_int_equal(lv_image_backing(at(dir, "abs.qcow2"), "qcow2", out, sizeof(out), fmt, sizeof(fmt), &err), 0);
        assert_string_equal(out, name);
        assert_string_equal(fmt, "raw");
        assert_int_equal(lv_image_backing(at(dir, "alone.qcow2"), "qcow2", out, sizeof(out), fmt, sizeof(fmt), &err), 0);
        assert_string_equal(out, "");
        /* Not known to be qcow2: never read, whatever its bytes say. */
        assert_int_equal(lv_image_backing(at(dir, "guest.raw"), "raw", out, sizeof(out), fmt, sizeof(fmt), &err), 0);
        assert_string_equal(out, "");
        assert_string_equal(fmt, "");
        assert_int_equal(lv_image_backing(at(dir, "abs.qcow2"), "raw", out, sizeof(out), fmt, sizeof(fmt), &err), 0);
        assert_string_equal(out, "");
        /* A disk said to be qcow2 that is not. */
        assert_int_equal(lv_image_backing(name, "qcow2", out, sizeof(out), fmt, sizeof(fmt), &err), LS_EIMAGE);
        assert_non_null(strstr(err.msg, "not a qcow2 image"));
        lserr_clear(&err);

        /* Names that are not plain absolute paths, or without a format. */
        assert_int_equal(lv_image_backing(at(dir, "rel.qcow2"), "qcow2", out, sizeof(out), fmt, sizeof(fmt), &err),
                         LS_EIMAGE);
        assert_non_null(strstr(err.msg, "rel.qcow2\": its backing file name is not a plain absolute path: refused"));
        lserr_clear(&err);
        assert_int_equal(lv_image_backing(at(dir, "json.qcow2"), "qcow2", out, sizeof(out), fmt, sizeof(fmt), &err),
                         LS_EIMAGE);
        assert_string_equal(out, "");
        lserr_clear(&err);
        assert_int_equal(lv_image_backing(at(dir, "dots.qcow2"), "qcow2", out, sizeof(out), fmt, sizeof(fmt), &err),
                         LS_EIMAGE);
        lserr_clear(&err);
        assert_int_equal(lv_image_backing(at(dir, "nofmt.qcow2"), "qcow2", out, sizeof(out), fmt, sizeof(fmt), &err),
                         LS_EIMAGE);
        assert_non_null(strstr(err.msg, "has no recorded format: refusing to guess it"));
        lserr_clear(&err);
        /* A result that does not fit is an error, never a cut path. */
        assert_int_equal(lv_image_backing(at(dir, "abs.qcow2"), "qcow2", out, 8, fmt, sizeof(fmt), &err), LS_EIMAGE);
        assert_non_null(strstr(err.msg, "backing file path too long"));
        lserr_clear(&err);
        assert_int_equal(lv_image_backing(at(dir, "missing"), "raw", out, sizeof(out), fmt, sizeof(fmt), &err),
                         -ENOENT);
        assert_non_null(strstr(err.msg, "missing\": open: "));
        tu_rmtree(dir);
}

static void test_qemu_img_failure_names_the_command(void **state)
{
        const char *argv[] = {"false", "commit", "-q", NULL};
        const char *ok[] = {"true", "x", "y", NULL};
        lserr err = {0};

        (void)state;
        assert_int_equal(lv_image_run(ok, &err), 0);
        assert_int_equal(lv_image_run_quiet(argv, &err), LS_EHV);
        assert_string_equal(err.msg, "false commit -q failed");
}

/* base.raw <- base.raw.nightly.qcow2 <- web1-vda.ls-A.qcow2 <-
 * web1-vda.ls-B.qcow2 (top): an older cut's layer named for its name below
 * two named for their txids. */
static void test_chain_walks(void **state)
{
        char *dir = tu_mkdtemp();
        char top[HV_PATH_MAX], fmt[16];
        struct lv_chain_dirs ds = {0};
        struct lv_chain_hit h;
        lserr err = {0};

        (void)state;
        free(tu_write(dir, "base.raw", "raw", 0644));
        qcow2(dir, "base.raw.nightly.qcow2", at(dir, "base.raw"), "raw");
        qcow2(dir, "web1-vda.ls-A.qcow2", at(dir, "base.raw.nightly.qcow2"), "qcow2");
        qcow2(dir, "web1-vda.ls-B.qcow2", at(dir, "web1-vda.ls-A.qcow2"), "qcow2");
        snprintf(top, sizeof(top), "%s", at(dir, "web1-vda.ls-B.qcow2"));
        assert_int_equal(lv_chain_dirs_add(&ds, top, &err), 0);
        assert_int_equal(lv_chain_dirs_add(&ds, top, &err), 0);
        assert_int_equal(ds.n, 1);

        assert_int_equal(lv_chain_find_cut_layer(&ds, top, "qcow2", "ls-A", NULL, &h, &err), 1);
        assert_string_equal(h.layer, at(dir, "web1-vda.ls-A.qcow2"));
        assert_string_equal(h.child, top);
        assert_string_equal(h.base, at(dir, "base.raw.nightly.qcow2"));
        assert_string_equal(h.base_fmt, "qcow2");

        assert_int_equal(lv_chain_find_cut_layer(&ds, top, "qcow2", "ls-B", NULL, &h, &err), 1);
        assert_string_equal(h.layer, top);
        assert_string_equal(h.child, "");
        assert_string_equal(h.base, at(dir, "web1-vda.ls-A.qcow2"));

        /* An older cut: found by its name only when its txid is not in the chain. */
        assert_int_equal(lv_chain_find_cut_layer(&ds, top, "qcow2", "ls-OLD", "nightly", &h, &err), 1);
        assert_string_equal(h.layer, at(dir, "base.raw.nightly.qcow2"));
        assert_string_equal(h.child, at(dir, "web1-vda.ls-A.qcow2"));
        assert_string_equal(h.base, at(dir, "base.raw"));
        assert_string_equal(h.base_fmt, "raw"); /* from the header above it */
        assert_int_equal(lv_chain_find_cut_layer(&ds, top, "qcow2", "ls-C", NULL, &h, &err), 0);
        /* A top the XML calls raw is never read: the chain is that file. */
        assert_int_equal(lv_chain_find_cut_layer(&ds, top, "raw", "ls-A", NULL, &h, &err), 0);

        /* The layer sitting on an image. */
        assert_int_equal(lv_chain_walk_to_image(&ds, top, "qcow2", at(dir, "web1-vda.ls-A.qcow2"), &h, &err), 1);
        assert_string_equal(h.layer, top);
        assert_string_equal(h.child, "");
        assert_string_equal(h.base, at(dir, "web1-vda.ls-A.qcow2"));
        assert_int_equal(lv_chain_walk_to_image(&ds, top, "qcow2", at(dir, "base.raw"), &h, &err), 1);
        assert_string_equal(h.layer, at(dir, "base.raw.nightly.qcow2"));
        assert_string_equal(h.child, at(dir, "web1-vda.ls-A.qcow2"));
        assert_string_equal(h.base_fmt, "raw");
        assert_int_equal(lv_chain_walk_to_image(&ds, top, "qcow2", top, &h, &err), 0); /* nothing on it */
        assert_int_equal(lv_chain_walk_to_image(&ds, top, "qcow2", "/not/in/it", &h, &err), 0);
        assert_int_equal(lv_chain_has(&ds, top, "qcow2", top, fmt, &err), 1);
        assert_int_equal(lv_chain_has(&ds, top, "qcow2", at(dir, "base.raw"), fmt, &err), 1);
        assert_string_equal(fmt, "raw");
        assert_int_equal(lv_chain_has(&ds, top, "qcow2", "/not/in/it", fmt, &err), 0);

        /* A backing file outside the VM's directories is refused, not followed. */
        qcow2(dir, "web1-vda.ls-Y.qcow2", "/elsewhere/other-tenant.qcow2", "qcow2");
        assert_int_equal(lv_chain_find_cut_layer(&ds, at(dir, "web1-vda.ls-Y.qcow2"), "qcow2", "ls-Z", NULL, &h, &err),
                         LS_EIMAGE);
        assert_non_null(strstr(err.msg, "backing file \"/elsewhere/other-tenant.qcow2\" is outside the VM's image "
                                        "directories: refused"));
        lserr_clear(&err);

        /* A file of the chain that is gone is an error naming it. */
        unlink(at(dir, "web1-vda.ls-A.qcow2"));
        assert_int_equal(lv_chain_find_cut_layer(&ds, top, "qcow2", "ls-X", NULL, &h, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "web1-vda.ls-A.qcow2\": open: "));
        tu_rmtree(dir);
}

static const char DOMAIN_XML[] =
        "<domain type='kvm'><name>web1</name>"
        "<metadata><lockstep:member xmlns:lockstep='https://lockstep.dev/xmlns/member/1' group='shop' "
        "tier='web'/></metadata>"
        "<devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/img/web1-vda.qcow2'/>"
        "<backingStore type='file'><source file='/img/base.raw'/></backingStore><target dev='vda'/></disk>"
        "<disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='sda'/></disk>"
        "<disk type='file' device='disk'><source file='/img/ro.raw'/><target dev='vdc'/><readonly/></disk>"
        "<disk type='block' device='disk'><driver type='raw'/><source dev='/dev/vg/web1'/><target dev='vdb'/>"
        "</disk>"
        "</devices></domain>";

static void test_domain_xml(void **state)
{
        struct hv_domain dom = {0};
        struct lv_xml_disk pd[HV_MAX_DISKS];
        lserr err = {0};
        char xml[8192], esc[64];
        size_t off;

        (void)state;
        assert_int_equal(lv_xml_parse(DOMAIN_XML, &dom, pd, &err), 0);
        assert_string_equal(dom.group, "shop");
        assert_string_equal(dom.tier, "web");
        assert_int_equal(dom.n_disks, 2); /* the cdrom and the read-only disk are not members */
        assert_string_equal(dom.disks[0].target, "vda");
        assert_string_equal(dom.disks[0].path, "/img/web1-vda.qcow2");
        assert_string_equal(dom.disks[0].backing, "/img/base.raw");
        assert_string_equal(dom.disks[0].format, "qcow2");
        assert_string_equal(pd[0].type, "file");
        assert_string_equal(dom.disks[1].path, "/dev/vg/web1");
        assert_string_equal(pd[1].type, "block");

        assert_int_equal(lv_xml_parse("<domain><devices>", &dom, pd, &err), LS_EHV);
        assert_string_equal(err.msg, "read domain XML: does not parse");

        lserr_clear(&err);
        off = (size_t)snprintf(xml, sizeof(xml), "<domain><devices>");
        for (int i = 0; i <= HV_MAX_DISKS; i++)
                off += (size_t)snprintf(xml + off, sizeof(xml) - off,
                                        "<disk type='file'><source file='/img/d%d'/><target dev='vd%c'/></disk>", i,
                                        'a' + i);
        snprintf(xml + off, sizeof(xml) - off, "</devices></domain>");
        assert_int_equal(lv_xml_parse(xml, &dom, pd, &err), LS_EDISK);
        assert_string_equal(err.msg, "more than 16 disks");

        assert_int_equal(lv_xml_escape("a'<&>\"b", esc, sizeof(esc)), 0);
        assert_string_equal(esc, "a&apos;&lt;&amp;&gt;&quot;b");
        assert_int_equal(lv_xml_escape("&&&", esc, 10), -ENAMETOOLONG);
}

/* ---- against libvirt's test driver ------------------------------------------ */

struct lvt {
        char *dir;
        void *be;
};

static int lvt_setup(void **state)
{
        struct cfg_agent cfg = {.libvirt_uri = "test:///default"};
        struct lvt *t = calloc(1, sizeof(*t));
        lserr err = {0};

        assert_non_null(t);
        t->dir = tu_mkdtemp();
        assert_int_equal(hv_libvirt_ops.open(&cfg, &t->be, &err), 0);
        *state = t;
        return 0;
}

static int lvt_teardown(void **state)
{
        struct lvt *t = *state;

        hv_libvirt_ops.close(t->be);
        tu_rmtree(t->dir);
        free(t);
        return 0;
}

/* Defines domain name with one qcow2 disk vda on dir/<name>-vda.qcow2. */
static void lvt_define(struct lvt *t, const char *name)
{
        char xml[2048], file[64], *img;
        virConnectPtr c = lv_conn_get(t->be, NULL);
        virDomainPtr d;

        assert_non_null(c);
        snprintf(file, sizeof(file), "%s-vda.qcow2", name);
        qcow2(t->dir, file, "", NULL);
        img = at(t->dir, file);
        snprintf(xml, sizeof(xml),
                 "<domain type='test'><name>%s</name><memory>8192</memory><os><type>hvm</type></os>"
                 "<metadata><lockstep:member xmlns:lockstep='https://lockstep.dev/xmlns/member/1' group='g1' "
                 "tier='app'/></metadata>"
                 "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                 "<source file='%s'/><target dev='vda'/></disk></devices></domain>",
                 name, img);
        d = virDomainDefineXML(c, xml);
        assert_non_null(d);
        virDomainFree(d);
        virConnectClose(c);
}

static void test_lookup_and_power(void **state)
{
        struct lvt *t = *state;
        struct hv_domain dom;
        lserr err = {0};

        assert_int_equal(hv_libvirt_ops.lookup(t->be, "test", &dom, &err), 0);
        assert_string_equal(dom.name, "test");
        assert_int_equal(dom.state, HV_RUNNING);

        assert_int_equal(hv_libvirt_ops.suspend(t->be, "test", &err), 0);
        assert_int_equal(hv_libvirt_ops.lookup(t->be, "test", &dom, &err), 0);
        assert_int_equal(dom.state, HV_PAUSED);
        assert_int_equal(hv_libvirt_ops.resume(t->be, "test", &err), 0);
        assert_int_equal(hv_libvirt_ops.resume(t->be, "test", &err), 0); /* running already: done */
        assert_int_equal(hv_libvirt_ops.lookup(t->be, "test", &dom, &err), 0);
        assert_int_equal(dom.state, HV_RUNNING);

        /* A domain that is not there: its own code (hv.h), and an error
         * without the VM's name in front. */
        assert_int_equal(hv_libvirt_ops.lookup(t->be, "nope", &dom, &err), LS_ENODOMAIN);
        assert_memory_equal(err.msg, "lookup: ", 8);
        assert_null(strstr(err.msg, "unknown libvirt error"));
        lserr_clear(&err);
        assert_int_equal(hv_libvirt_ops.thaw(t->be, "nope", &err), LS_ENODOMAIN);
        assert_memory_equal(err.msg, "fsthaw: ", 8);
}

static void test_check_names_the_step_not_the_vm(void **state)
{
        struct lvt *t = *state;
        struct hv_domain dom;
        lserr err = {0};
        char overlay[HV_PATH_MAX];

        lvt_define(t, "lvt1");
        assert_int_equal(hv_libvirt_ops.lookup(t->be, "lvt1", &dom, &err), 0);
        assert_int_equal(dom.state, HV_SHUTOFF);
        assert_string_equal(dom.group, "g1");
        assert_int_equal(dom.n_disks, 1);
        assert_int_equal(hv_libvirt_ops.check(t->be, "lvt1", "ls-T1", 0, &err), LS_ENOTRUNNING);
        assert_string_equal(err.msg, "validate: domain is not running");

        lserr_clear(&err);
        assert_int_equal(hv_libvirt_ops.start(t->be, "lvt1", &err), 0);
        assert_int_equal(hv_libvirt_ops.check(t->be, "lvt1", "ls-T1", HV_CHECK_QUIESCE, &err), 0);

        snprintf(overlay, sizeof(overlay), "%s/lvt1-vda.ls-T1.qcow2", t->dir);
        free(tu_write(t->dir, "lvt1-vda.ls-T1.qcow2", "", 0644));
        assert_int_equal(hv_libvirt_ops.check(t->be, "lvt1", "ls-T1", 0, &err), LS_EOVERLAYEXISTS);
        assert_memory_equal(err.msg, "validate: disk vda: overlay \"", 29);
        assert_non_null(strstr(err.msg, "\" already exists"));

        lserr_clear(&err);
        assert_int_equal(hv_libvirt_ops.suspend(t->be, "lvt1", &err), 0);
        assert_int_equal(hv_libvirt_ops.check(t->be, "lvt1", "ls-T2", HV_CHECK_QUIESCE, &err), LS_EPAUSED);
        assert_string_equal(err.msg, "validate: domain is paused: fsfreeze cannot run in it");
        assert_int_equal(hv_libvirt_ops.resume(t->be, "lvt1", &err), 0);
}

static void test_point_disks_rewrites_the_definition(void **state)
{
        struct lvt *t = *state;
        struct hv_image im = {.target = "vda"};
        struct hv_domain dom;
        lserr err = {0};

        lvt_define(t, "lvt2");
        /* Raw, though its (guest-written) bytes start like a qcow2 image. */
        qcow2(t->dir, "other.raw", "/dev/sda", "raw");
        snprintf(im.before, sizeof(im.before), "%s", at(t->dir, "other.raw"));
        /* A format nobody recorded is not guessed: nothing changes. */
        assert_int_equal(hv_libvirt_ops.point_disks(t->be, "lvt2", &im, 1, NULL, &err), LS_EIMAGE);
        assert_non_null(strstr(err.msg, "other.raw\" is not known: refusing to guess it"));
        assert_int_equal(hv_libvirt_ops.lookup(t->be, "lvt2", &dom, &err), 0);
        assert_string_equal(dom.disks[0].path, at(t->dir, "lvt2-vda.qcow2"));
        lserr_clear(&err);

        snprintf(im.format, sizeof(im.format), "raw");
        assert_int_equal(hv_libvirt_ops.point_disks(t->be, "lvt2", &im, 1, NULL, &err), 0);
        assert_string_equal(im.after, im.before);
        assert_int_equal(hv_libvirt_ops.lookup(t->be, "lvt2", &dom, &err), 0);
        assert_string_equal(dom.disks[0].path, im.before);
        assert_string_equal(dom.disks[0].format, "raw"); /* as recorded, not as its bytes look */
        assert_string_equal(dom.group, "g1");            /* the rest of the definition stays */

        assert_int_equal(hv_libvirt_ops.start(t->be, "lvt2", &err), 0);
        assert_int_equal(hv_libvirt_ops.point_disks(t->be, "lvt2", &im, 1, NULL, &err), LS_EHV);
        assert_string_equal(err.msg, "switch: domain is not shut off");
}

/* Defines shut-off domain name with one disk vda, raw, on img. */
static void lvt_define_raw(struct lvt *t, const char *name, const char *img)
{
        char xml[2048];
        virConnectPtr c = lv_conn_get(t->be, NULL);
        virDomainPtr d;

        assert_non_null(c);
        snprintf(xml, sizeof(xml),
                 "<domain type='test'><name>%s</name><memory>8192</memory><os><type>hvm</type></os>"
                 "<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                 "<source file='%s'/><target dev='vda'/></disk></devices></domain>",
                 name, img);
        d = virDomainDefineXML(c, xml);
        assert_non_null(d);
        virDomainFree(d);
        virConnectClose(c);
}

/* A raw disk whose guest wrote a qcow2 header naming another VM's layer of
 * cut ls-C: no revert or delete follows it, nothing changes. */
static void test_guest_header_of_a_raw_disk_is_never_read(void **state)
{
        struct lvt *t = *state;
        char img[HV_PATH_MAX], victim[HV_PATH_MAX], victim_base[HV_PATH_MAX];
        struct hv_image ret[HV_MAX_DISKS], hint = {.target = "vda"};
        struct hv_cut_where w = {.hints = &hint, .n_hints = 1};
        struct hv_domain dom;
        size_t n = 99;
        lserr err = {0};

        snprintf(victim_base, sizeof(victim_base), "%s", at(t->dir, "tenant2-vda.raw"));
        free(tu_write(t->dir, "tenant2-vda.raw", "tenant2's data", 0600));
        qcow2(t->dir, "tenant2-vda.ls-C.qcow2", victim_base, "raw");
        snprintf(victim, sizeof(victim), "%s", at(t->dir, "tenant2-vda.ls-C.qcow2"));
        qcow2(t->dir, "lvt3-vda.img", victim, "qcow2");
        snprintf(img, sizeof(img), "%s", at(t->dir, "lvt3-vda.img"));
        lvt_define_raw(t, "lvt3", img);

        assert_int_equal(hv_libvirt_ops.cut_images(t->be, "lvt3", "ls-C", NULL, NULL, ret, &n, &err), LS_EIMAGE);
        assert_string_equal(err.msg, "prepare: disk vda: no layer of cut ls-C in its chain or in a recorded branch");
        assert_int_equal(n, 99);
        lserr_clear(&err);
        /* Nor does a hint naming the other VM's image make it one. */
        snprintf(hint.before, sizeof(hint.before), "%s", victim_base);
        assert_int_equal(hv_libvirt_ops.cut_images(t->be, "lvt3", "ls-C", NULL, &w, ret, &n, &err), LS_EIMAGE);
        assert_non_null(strstr(err.msg, "and the catalog's image is in neither"));
        lserr_clear(&err);

        /* A delete finds no layer of the cut in this disk: nothing merged. */
        assert_int_equal(hv_libvirt_ops.delete_cut(t->be, "lvt3", "ls-C", NULL, NULL, ret, &n, &err), 0);
        assert_int_equal(n, 0);
        assert_true(access(victim, F_OK) == 0);
        assert_int_equal(hv_libvirt_ops.lookup(t->be, "lvt3", &dom, &err), 0);
        assert_string_equal(dom.disks[0].path, img);
        assert_string_equal(dom.disks[0].format, "raw");
}

/* An abort of a shut-off domain puts the disk back on the recorded image, in
 * the format its overlay's header records, and only when that header names
 * that image. */
static void test_discard_offline_checks_the_overlay(void **state)
{
        struct lvt *t = *state;
        struct hv_image im = {.target = "vda"};
        struct hv_domain dom;
        lserr err = {0};

        lvt_define(t, "lvt4"); /* runs on lvt4-vda.qcow2: the overlay here */
        snprintf(im.after, sizeof(im.after), "%s", at(t->dir, "lvt4-vda.qcow2"));
        snprintf(im.before, sizeof(im.before), "%s", at(t->dir, "tenant2-vda.qcow2"));
        assert_int_equal(hv_libvirt_ops.discard(t->be, "lvt4", "ls-D", &im, 1, &err), LS_EIMAGE);
        assert_non_null(strstr(err.msg, "lvt4-vda.qcow2\" is not backed by \""));
        assert_int_equal(hv_libvirt_ops.lookup(t->be, "lvt4", &dom, &err), 0);
        assert_string_equal(dom.disks[0].path, im.after);
        assert_string_equal(dom.disks[0].format, "qcow2");
        assert_true(access(im.after, F_OK) == 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_plain_paths),
                cmocka_unit_test(test_image_backing),
                cmocka_unit_test(test_qemu_img_failure_names_the_command),
                cmocka_unit_test(test_chain_walks),
                cmocka_unit_test(test_domain_xml),
                cmocka_unit_test_setup_teardown(test_lookup_and_power, lvt_setup, lvt_teardown),
                cmocka_unit_test_setup_teardown(test_check_names_the_step_not_the_vm, lvt_setup, lvt_teardown),
                cmocka_unit_test_setup_teardown(test_point_disks_rewrites_the_definition, lvt_setup, lvt_teardown),
                cmocka_unit_test_setup_teardown(test_guest_header_of_a_raw_disk_is_never_read, lvt_setup,
                                                lvt_teardown),
                cmocka_unit_test_setup_teardown(test_discard_offline_checks_the_overlay, lvt_setup, lvt_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
