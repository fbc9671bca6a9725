/* fuzz_qcow2: an image file's first bytes through the qcow2 header reader
 * (backing file name and its format, read only from an image known to be
 * qcow2), and the same bytes as a path through lv_image_plain_path. */
#include <string.h>
#include <unistd.h>

#include "fuzzutil.h"
#include "hv.h"
#include "lv_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char path[64], out[HV_PATH_MAX], fmt[32], name[HV_PATH_MAX + 1];
        lserr err = {0};
        int fd = fuzz_memfd(data, size, path);
        int r = lv_image_backing(path, "qcow2", out, sizeof(out), fmt, sizeof(fmt), &err);

        fuzz_note("qcow2", r, &err);
        if (r == 0)
                fuzz_note(out, r, &err);
        /* A raw image is never read: no header, no chain. */
        lserr_clear(&err);
        if (lv_image_backing(path, "raw", out, sizeof(out), fmt, sizeof(fmt), &err) != 0 || out[0])
                __builtin_trap();
        close(fd);
        size_t n = size < sizeof(name) - 1 ? size : sizeof(name) - 1;
        memcpy(name, data, n);
        name[n] = '\0';
        (void)lv_image_plain_path(name);
        return 0;
}
