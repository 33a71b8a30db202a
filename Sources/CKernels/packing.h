// What the GEMMs share: packing buffers that live as long as their thread (fresh large allocations would
// page-fault on every call), and are freed when it exits: the dispatch pools retire idle worker threads, and a
// retired thread's buffers would otherwise leak (FuzzHFConfig's leak check found it, 2026-12-07).
#ifndef CKERNELS_PACKING_H
#define CKERNELS_PACKING_H

#include <pthread.h>
#include <stdlib.h>

// The calling thread's buffers in this file (each translation unit has its own list and key).
#define CNCLIP_OWNED_MAX 4
static _Thread_local void **cnclip_owned[CNCLIP_OWNED_MAX];
static _Thread_local size_t *cnclip_owned_bytes[CNCLIP_OWNED_MAX];
static _Thread_local int cnclip_owned_count;
static pthread_key_t cnclip_owned_key;
static pthread_once_t cnclip_owned_once = PTHREAD_ONCE_INIT;

/// The key's destructor, run on the exiting thread (its thread-locals are still there): frees its buffers.
static void cnclip_free_owned(void *unused) {
    (void)unused;
    for (int i = 0; i < cnclip_owned_count; i++) {
        free(*cnclip_owned[i]);
        *cnclip_owned[i] = NULL;
        *cnclip_owned_bytes[i] = 0;
    }
    cnclip_owned_count = 0;
}

static void cnclip_make_owned_key(void) {
    if (pthread_key_create(&cnclip_owned_key, cnclip_free_owned) != 0) abort();
}

/// `*buffer` (a thread-local) with room for at least `needed` bytes (64-byte aligned), grown when `*bytes` is
/// smaller; its first allocation on a thread registers it to be freed when the thread exits.
static inline void *cnclip_reserve(void **buffer, size_t *bytes, size_t needed) {
    if (*bytes < needed) {
        if (*buffer == NULL) {
            pthread_once(&cnclip_owned_once, cnclip_make_owned_key);
            if (cnclip_owned_count == CNCLIP_OWNED_MAX) abort();
            cnclip_owned[cnclip_owned_count] = buffer;
            cnclip_owned_bytes[cnclip_owned_count] = bytes;
            cnclip_owned_count++;
            // Destructors run only for keys holding a non-NULL value.
            if (pthread_setspecific(cnclip_owned_key, (void *)1) != 0) abort();
        }
        free(*buffer);
        *buffer = aligned_alloc(64, (needed + 63) / 64 * 64);
        if (!*buffer) abort();
        *bytes = needed;
    }
    return *buffer;
}

#endif
