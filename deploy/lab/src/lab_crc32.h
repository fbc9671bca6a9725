/* lab_crc32: CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320) for the lab's records. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Bit-at-a-time is enough here: records are a few dozen bytes and pages 4 KiB,
 * and it keeps the guest binary free of a table that must be initialised first. */
static inline uint32_t lab_crc32(const void *buf, size_t len)
{
        const uint8_t *p = buf;
        uint32_t crc = 0xFFFFFFFFu;

        for (size_t i = 0; i < len; i++) {
                crc ^= p[i];
                for (int k = 0; k < 8; k++)
                        crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
        return crc ^ 0xFFFFFFFFu;
}
