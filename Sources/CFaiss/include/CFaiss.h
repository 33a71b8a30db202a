// A small C interface to FAISS (Debian's libfaiss-dev ships the C++ library and the C API's headers, but not
// libfaiss_c), so Swift can build, search, save and load an approximate inner-product index without C++ interop.
// Every function that can fail returns 0 on success and -1 on failure, with the message in cfaiss_last_error().

#ifndef CFAISS_H
#define CFAISS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// An opaque FAISS index (`faiss::Index *`).
typedef struct cfaiss_index cfaiss_index;

/// The message of the calling thread's last failure ("" when none).
const char *cfaiss_last_error(void);

/// Builds an empty inner-product index of `dim` from a factory string ("IVF1024,Flat", "HNSW32", "Flat", …).
int cfaiss_new(int64_t dim, const char *factory, cfaiss_index **out);

/// Frees an index (NULL is allowed).
void cfaiss_free(cfaiss_index *index);

/// Trains on `n` row-major vectors `[n, dim]` (a no-op for indexes that need no training).
int cfaiss_train(cfaiss_index *index, int64_t n, const float *vectors);

/// Whether the index is trained (vectors can be added).
int cfaiss_is_trained(const cfaiss_index *index);

/// Appends `n` vectors `[n, dim]`; they get the ids ntotal..ntotal+n-1.
int cfaiss_add(cfaiss_index *index, int64_t n, const float *vectors);

/// Vectors held.
int64_t cfaiss_ntotal(const cfaiss_index *index);

/// Vector length.
int64_t cfaiss_dim(const cfaiss_index *index);

/// Sets a search-time parameter by name ("nprobe" for IVF, "efSearch" for HNSW) as faiss::ParameterSpace does.
int cfaiss_set_parameter(cfaiss_index *index, const char *name, double value);

/// The `k` best ids and inner products of each of `n` queries `[n, dim]`: `distances` and `labels` are `[n, k]`,
/// best first; a label of -1 means fewer than k results were found.
int cfaiss_search(const cfaiss_index *index, int64_t n, const float *queries, int64_t k, float *distances, int64_t *labels);

/// Writes the index to `path` (faiss::write_index).
int cfaiss_write(const cfaiss_index *index, const char *path);

/// Reads an index written by cfaiss_write (faiss::read_index).
int cfaiss_read(const char *path, cfaiss_index **out);

/// Sets how many OpenMP threads FAISS uses (<= 0 leaves the default).
void cfaiss_set_threads(int threads);

#ifdef __cplusplus
}
#endif

#endif
