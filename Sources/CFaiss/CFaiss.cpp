// The C interface of CFaiss.h over FAISS's C++ API: every call catches C++ exceptions (FAISS throws
// faiss::FaissException for bad factory strings, untrained indexes, unreadable files) and turns them into -1 and a
// thread-local message, because an exception must never unwind through Swift frames.

#include "CFaiss.h"

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
// omp.h comes with GCC, not with the Swift toolchain's clang: declare the one OpenMP call we need.
extern "C" void omp_set_num_threads(int);

#include <exception>
#include <string>

namespace {
thread_local std::string last_error;

faiss::Index *unwrap(cfaiss_index *index) { return reinterpret_cast<faiss::Index *>(index); }
const faiss::Index *unwrap(const cfaiss_index *index) { return reinterpret_cast<const faiss::Index *>(index); }

template <typename F> int guarded(F body) {
    try {
        body();
        last_error.clear();
        return 0;
    } catch (const std::exception &e) {
        last_error = e.what();
    } catch (...) {
        last_error = "unknown FAISS error";
    }
    return -1;
}
}  // namespace

extern "C" {

const char *cfaiss_last_error(void) { return last_error.c_str(); }

int cfaiss_new(int64_t dim, const char *factory, cfaiss_index **out) {
    *out = nullptr;
    return guarded([&] {
        *out = reinterpret_cast<cfaiss_index *>(faiss::index_factory(int(dim), factory, faiss::METRIC_INNER_PRODUCT));
    });
}

void cfaiss_free(cfaiss_index *index) { delete unwrap(index); }

int cfaiss_train(cfaiss_index *index, int64_t n, const float *vectors) {
    return guarded([&] { unwrap(index)->train(faiss::Index::idx_t(n), vectors); });
}

int cfaiss_is_trained(const cfaiss_index *index) { return unwrap(index)->is_trained ? 1 : 0; }

int cfaiss_add(cfaiss_index *index, int64_t n, const float *vectors) {
    return guarded([&] { unwrap(index)->add(faiss::Index::idx_t(n), vectors); });
}

int64_t cfaiss_ntotal(const cfaiss_index *index) { return int64_t(unwrap(index)->ntotal); }

int64_t cfaiss_dim(const cfaiss_index *index) { return int64_t(unwrap(index)->d); }

int cfaiss_set_parameter(cfaiss_index *index, const char *name, double value) {
    return guarded([&] { faiss::ParameterSpace().set_index_parameter(unwrap(index), name, value); });
}

int cfaiss_search(const cfaiss_index *index, int64_t n, const float *queries, int64_t k, float *distances, int64_t *labels) {
    return guarded([&] {
        unwrap(index)->search(faiss::Index::idx_t(n), queries, faiss::Index::idx_t(k), distances, reinterpret_cast<faiss::Index::idx_t *>(labels));
    });
}

int cfaiss_write(const cfaiss_index *index, const char *path) {
    return guarded([&] { faiss::write_index(unwrap(index), path); });
}

int cfaiss_read(const char *path, cfaiss_index **out) {
    *out = nullptr;
    return guarded([&] { *out = reinterpret_cast<cfaiss_index *>(faiss::read_index(path)); });
}

void cfaiss_set_threads(int threads) {
    if (threads > 0) omp_set_num_threads(threads);
}

}  // extern "C"
