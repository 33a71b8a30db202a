// The compute threads of the kernels: one fewer than the processors, waiting for work by spinning briefly before they
// sleep. A forward pass hands work to the other threads a few times per layer; waking a sleeping thread through the
// kernel took about a tenth of a 52-token text's time on two cores (`perf`: futex wake-ups and task switches), and
// the threads of PyTorch's and ONNX Runtime's pools spin the same way.
//
// One job at a time: a job is `iterations` calls of `fn(ctx, i)`, each index claimed once by whichever thread gets to
// it first, the caller included, so a job finishes even when no worker comes. A second caller while a job runs (another
// thread, or a call from inside an iteration) is refused and uses its own threads (`cnclip_parallel` returns 0).
//
// The job word holds a tag (which job), the iteration count and the next index, so that a thread still looking at an
// earlier job can never claim an index of the next one.

#include "CKernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PAUSE() _mm_pause()
#else
#define PAUSE() ((void)0)
#endif

#define INDEX_BITS 22
#define INDEX_MASK ((1ull << INDEX_BITS) - 1)
#define TAG_SHIFT (2 * INDEX_BITS)
#define TAG(v) ((v) >> TAG_SHIFT)
#define COUNT(v) (((v) >> INDEX_BITS) & INDEX_MASK)
#define NEXT(v) ((v) & INDEX_MASK)
// How long a worker spins for the next job before it sleeps: longer than the gaps between the parallel parts of a
// forward pass, short enough that an idle server does not keep a core busy.
#define SPIN_NS 200000

#define MAX_WORKERS 63

static pthread_once_t started = PTHREAD_ONCE_INIT;
static int workers;
static _Atomic uint64_t job;
static _Atomic long done;
static _Atomic int busy;
static void (*jobFn)(void *, long);
static void *jobContext;
static pthread_mutex_t sleepLock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake[MAX_WORKERS + 1];
static int sleeping[MAX_WORKERS + 1];  // under sleepLock

static long nanoseconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

/// Claims and runs iterations of the job tagged `tag` until none is left.
static void runJob(uint64_t tag) {
    for (;;) {
        uint64_t v = atomic_load_explicit(&job, memory_order_acquire);
        if (TAG(v) != tag || NEXT(v) >= COUNT(v)) return;
        if (!atomic_compare_exchange_weak_explicit(&job, &v, v + 1, memory_order_acq_rel, memory_order_relaxed)) continue;
        jobFn(jobContext, (long)NEXT(v));
        atomic_fetch_add_explicit(&done, 1, memory_order_release);
    }
}

/// Worker `w` (1, 2, …) takes part in the jobs of more than `w` iterations, so that a job split `t` ways keeps
/// `t - 1` workers busy and the others asleep (several processes sharing a machine, `--threads` below its cores).
static void *worker(void *argument) {
    long w = (long)argument;
    uint64_t seen = TAG(atomic_load(&job));
    long spinUntil = 0;
    for (unsigned i = 0;; i++) {
        uint64_t v = atomic_load_explicit(&job, memory_order_acquire);
        if (TAG(v) != seen) {
            seen = TAG(v);
            if (COUNT(v) > (uint64_t)w) {
                runJob(seen);
                spinUntil = nanoseconds() + SPIN_NS;
            }
            continue;
        }
        PAUSE();
        if ((i & 63) != 0 || nanoseconds() < spinUntil) continue;
        pthread_mutex_lock(&sleepLock);
        sleeping[w] = 1;
        while (TAG(v = atomic_load(&job)) == seen || COUNT(v) <= (uint64_t)w) {
            seen = TAG(v);
            pthread_cond_wait(&wake[w], &sleepLock);
        }
        sleeping[w] = 0;
        pthread_mutex_unlock(&sleepLock);
    }
    return NULL;
}

static void start(void) {
    long processors = sysconf(_SC_NPROCESSORS_ONLN);
    for (long w = 1; w < processors && w <= MAX_WORKERS; w++) {
        pthread_cond_init(&wake[w], NULL);
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&thread, &attributes, worker, (void *)w) != 0) break;
        workers = (int)w;
        pthread_attr_destroy(&attributes);
    }
}

int cnclip_parallel(long iterations, void (*fn)(void *context, long index), void *context) {
    if (iterations < 2 || (uint64_t)iterations > INDEX_MASK) return 0;
    pthread_once(&started, start);
    int idle = 0;
    if (workers == 0 || !atomic_compare_exchange_strong(&busy, &idle, 1)) return 0;
    jobFn = fn;
    jobContext = context;
    atomic_store_explicit(&done, 0, memory_order_relaxed);
    uint64_t tag = (TAG(atomic_load(&job)) + 1) & ((1ull << (64 - TAG_SHIFT)) - 1);
    atomic_store(&job, tag << TAG_SHIFT | (uint64_t)iterations << INDEX_BITS);
    pthread_mutex_lock(&sleepLock);
    for (long w = 1; w < iterations && w <= workers; w++)
        if (sleeping[w]) pthread_cond_signal(&wake[w]);
    pthread_mutex_unlock(&sleepLock);
    runJob(tag);
    // The last iterations run on the workers: wait for them, yielding the core after a while in case a worker was
    // preempted (more threads than cores: other requests of a server, other processes).
    for (unsigned i = 0; atomic_load_explicit(&done, memory_order_acquire) < iterations; i++) {
        PAUSE();
        if (i >= 4096) sched_yield();
    }
    atomic_store_explicit(&busy, 0, memory_order_release);
    return 1;
}
