#!/usr/bin/env bash
# Creates .venv and installs the portal with the extras given as arguments (e.g. "dev,semantic").
# Sourced by serve.sh and test.sh so both set up the same way.
#
# llama-cpp-python is built here first with portable CPU flags: a build tuned to the build
# machine's CPU (AVX-512/AMX repacking) crashes in llama_decode on some virtual machines, and
# pip's wheel cache would otherwise hand back such a build, so it is built without the cache.
set -euo pipefail

LLAMA_CPP_VERSION="0.3.36"
LLAMA_CPP_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "Python 3.11 or newer is needed (python3 is $(python3 --version))" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
pip_install() { .venv/bin/pip install -q --disable-pip-version-check "$@"; }

# Shortens pip -v's build output to one line per compile step ("[12/150] ggml-cpu.c"), so the
# long first build shows where it is; everything else goes to the log file named in $1.
build_progress() {
  tee "$1" | awk '
    /^ *\[[0-9]+\/[0-9]+\] / {
      match($0, /\[[0-9]+\/[0-9]+\]/); step = substr($0, RSTART, RLENGTH)
      target = "(linking)"
      if (index($0, " -c ")) { target = $0; sub(/.* -c /, "", target); sub(/ .*/, "", target) }
      n = split(target, part, "/"); printf "  llama.cpp build %s %s\n", step, part[n]; fflush()
    }'
}

if ! .venv/bin/python -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_VERSION')" 2>/dev/null; then
  build_log=".venv/llama-cpp-build.log"
  echo "Building llama-cpp-python $LLAMA_CPP_VERSION with portable CPU flags, once: about 6 minutes"
  echo "on 2 cores, one line per compile step (full output: $build_log)..."
  if ! CMAKE_ARGS="$LLAMA_CPP_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    .venv/bin/pip install -v --disable-pip-version-check --no-cache-dir \
    "llama-cpp-python==$LLAMA_CPP_VERSION" 2>&1 | build_progress "$build_log"; then
    tail -n 40 "$build_log" >&2
    echo "Building llama-cpp-python failed; the full output is in $build_log" >&2
    exit 1
  fi
fi

extras="${1:-}"
stamp=".venv/.installed-${extras:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "Installing the portal and its dependencies${extras:+ (extras: $extras)}..."
  pip_install -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
