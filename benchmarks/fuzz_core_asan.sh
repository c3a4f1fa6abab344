#!/usr/bin/env bash
# Builds daydream/_core.c with AddressSanitizer + UBSan into a scratch copy of the package and runs
# the differential fuzzer (benchmarks/fuzz_core.py) against it. On demand, not in CI: it needs gcc's
# libasan/libubsan and takes as long as you give it.
#   usage: benchmarks/fuzz_core_asan.sh [SECONDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-60}"
SEED="${2:-0}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp -r daydream "$WORK/daydream"
rm -f "$WORK"/daydream/_core*.so
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
PYINC="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
SUFFIX="$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
gcc -shared -fPIC $SAN -I"$PYINC" daydream/_core.c -o "$WORK/daydream/_core$SUFFIX"
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd "$WORK" && PYTHONPATH="$WORK" python3 -c "import daydream._core as c, sys; assert c.__file__.startswith(sys.argv[1]), c.__file__; print('sanitized core:', c.__file__)" "$WORK")
PYTHONPATH="$WORK" python3 benchmarks/fuzz_core.py --seconds "$SECONDS_TO_RUN" --seed "$SEED"
