/* fuzz_qcow2: an image file's first bytes through the qcow2 header reader
 * (format by magic, backing file name). */
#include <unistd.h>

#include "fuzzutil.h"
#include "hv.h"
#include "lv_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char path[64], out[HV_PATH_MAX];
        lserr err = {0};
        int fd = fuzz_memfd(data, size, path);

        int r = lv_image_backing(path, out, sizeof(out), &err);

        fuzz_note(lv_image_format(path), r, &err);
        if (r == 0)
                fuzz_note(out, r, &err);
        close(fd);
        return 0;
}
