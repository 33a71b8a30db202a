// The process's peak memory, for tests that check an attack or a stream does not take memory.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The process's peak resident memory so far, in bytes (`getrusage`'s `ru_maxrss`).
package func peakResidentBytes() -> Int {
    var usage = rusage()
    #if os(Linux)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024  // KiB on Linux
    #else
        getrusage(RUSAGE_SELF, &usage)
        return usage.ru_maxrss  // bytes on Darwin
    #endif
}
