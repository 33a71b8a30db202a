// What the GEMMs share: packing buffers that live as long as their thread (fresh large allocations would
// page-fault on every call).
#ifndef CKERNELS_PACKING_H
#define CKERNELS_PACKING_H

#include <stdlib.h>

/// `*buffer` with room for at least `needed` bytes (64-byte aligned), grown when `*bytes` is smaller.
static inline void *cnclip_reserve(void **buffer, size_t *bytes, size_t needed) {
    if (*bytes < needed) {
        free(*buffer);
        *buffer = aligned_alloc(64, (needed + 63) / 64 * 64);
        if (!*buffer) abort();
        *bytes = needed;
    }
    return *buffer;
}

#endif
