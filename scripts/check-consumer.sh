#!/usr/bin/env bash
# The library as a dependency: builds Examples/Consumer (a package that depends on the ChineseCLIP product only)
# in release, runs it on the tiny test model, and checks that its binary links none of what the library does not
# need: LMDB, FAISS and what FAISS pulls (OpenMP, LAPACK, BLAS), MPI, Hummingbird, NIO. Shared libraries are seen
# with ldd; static ones by their symbols with nm (FAISS is Debian's static C++ library, linked through CFaiss;
# Hummingbird and NIO are Swift modules linked into the binary).
# usage: scripts/check-consumer.sh           build, run and check the consumer
#        scripts/check-consumer.sh BINARY    only check BINARY's links (.build/release/cnclip fails: it links them all)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
  swift build -c release --package-path Examples/Consumer
  binary=Examples/Consumer/.build/release/Consumer
  echo "== $binary (tiny test model)"
  output=$("$binary") || { echo "check-consumer: FAIL: $binary exited with status $?" >&2; exit 1; }
  echo "$output"
  grep -q '^cosine similarity: ' <<<"$output" || { echo "check-consumer: FAIL: $binary printed no cosine similarity" >&2; exit 1; }
else
  binary=$1
fi

echo "== what $binary links"
libraries=$(ldd "$binary" | awk '{print $1}')
symbols=$(nm -P "$binary" 2>/dev/null | awk '{print $1}' || true)
if [ -z "$symbols" ]; then
  echo "check-consumer: FAIL: $binary has no symbol table (stripped?), so statically linked libraries cannot be checked" >&2
  exit 1
fi
echo "$(wc -l <<<"$libraries") shared libraries (ldd), $(wc -l <<<"$symbols") symbols (nm)"

# name; shared libraries (ldd: extended regex on the file name); symbols (nm: extended regex on the name)
checks=(
  'LMDB;^liblmdb\.;^mdb_'
  'FAISS;^libfaiss;^_ZNK?5faiss|^cfaiss_'
  'OpenMP (libgomp, pulled by FAISS);^lib(g|i)?omp\.;^GOMP_|^omp_'
  'LAPACK/BLAS (pulled by FAISS);^lib(lapack|blas|openblas|cblas)\.;^[sdcz](gemm|syrk|gesvd|geqrf|getrf|getri|syev|gelsd|orgqr)_$|^cblas_'
  'MPI;^lib(mpi|open-rte|open-pal)\.;^P?MPI_|^ompi_'
  'Hummingbird;^libHummingbird;^_?\$s[0-9]+Hummingbird'
  'NIO;^libNIO;^_?\$s[0-9]+_?NIO|^CNIO|^c_nio_'
)
failed=0
for check in "${checks[@]}"; do
  IFS=';' read -r name lib_re sym_re <<<"$check"
  for re in "$lib_re" "$sym_re"; do  # a pattern grep cannot read would otherwise pass as "not found"
    rc=0; grep -qE -- "$re" </dev/null || rc=$?
    [ $rc -eq 1 ] || { echo "check-consumer: bad pattern /$re/ for $name" >&2; exit 2; }
  done
  found_libs=$(grep -E "$lib_re" <<<"$libraries" | paste -sd' ' || true)
  found_syms=$(grep -cE "$sym_re" <<<"$symbols" || true)
  if [ -n "$found_libs" ] || [ "$found_syms" -gt 0 ]; then
    example=$(grep -E "$sym_re" <<<"$symbols" | head -1 || true)
    echo "check-consumer: FAIL: $binary links $name:${found_libs:+ shared ${found_libs};} $found_syms symbols${example:+ (e.g. $example)}" >&2
    failed=1
  else
    printf 'ok  no %-34s  ldd /%s/, nm /%s/\n' "$name" "$lib_re" "$sym_re"
  fi
done
[ $failed -eq 0 ] || { echo "check-consumer: $binary links what the ChineseCLIP product must not pull in (above)" >&2; exit 1; }
echo "check-consumer: $binary links no LMDB, FAISS, OpenMP, LAPACK/BLAS, MPI, Hummingbird or NIO"
