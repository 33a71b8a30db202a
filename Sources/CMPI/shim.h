// Open MPI from the distribution (libopenmpi-dev). MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE are macros
// Swift cannot see, so the few calls we make are wrapped here as static inline functions on MPI_COMM_WORLD.
#include <mpi.h>

static inline int cnclip_mpi_init(void) {
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    // Errors come back as return codes (we turn them into a clear message and an abort) instead of
    // MPI's default handler killing the process without a word from us.
    if (rc == MPI_SUCCESS) MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    return rc;
}
static inline int cnclip_mpi_initialized(void) { int flag = 0; MPI_Initialized(&flag); return flag; }
static inline int cnclip_mpi_finalize(void) { return MPI_Finalize(); }
static inline int cnclip_mpi_rank(void) { int r = 0; MPI_Comm_rank(MPI_COMM_WORLD, &r); return r; }
static inline int cnclip_mpi_size(void) { int n = 1; MPI_Comm_size(MPI_COMM_WORLD, &n); return n; }
static inline int cnclip_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }
static inline void cnclip_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }
static inline int cnclip_mpi_allreduce_sum_float(float *buffer, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buffer, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static inline int cnclip_mpi_allreduce_sum_double(double *buffer, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buffer, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}
static inline int cnclip_mpi_allgather_float(const float *send, int count, float *receive) {
    return MPI_Allgather(send, count, MPI_FLOAT, receive, count, MPI_FLOAT, MPI_COMM_WORLD);
}
static inline int cnclip_mpi_allgather_int(const int *send, int count, int *receive) {
    return MPI_Allgather(send, count, MPI_INT, receive, count, MPI_INT, MPI_COMM_WORLD);
}
static inline int cnclip_mpi_gatherv_bytes(const void *send, int count, void *receive, const int *counts,
                                           const int *displacements, int root) {
    return MPI_Gatherv(send, count, MPI_BYTE, receive, counts, displacements, MPI_BYTE, root, MPI_COMM_WORLD);
}
static inline int cnclip_mpi_bcast_bytes(void *buffer, int count, int root) {
    return MPI_Bcast(buffer, count, MPI_BYTE, root, MPI_COMM_WORLD);
}
static inline void cnclip_mpi_error_string(int code, char *out, int capacity) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    int n = length < capacity - 1 ? length : capacity - 1;
    for (int i = 0; i < n; i++) out[i] = text[i];
    out[n] = 0;
}
