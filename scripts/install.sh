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

if ! .venv/bin/python -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_VERSION')" 2>/dev/null; then
  echo "Building llama-cpp-python $LLAMA_CPP_VERSION with portable CPU flags (a few minutes, once)..."
  CMAKE_ARGS="$LLAMA_CPP_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    pip_install --no-cache-dir "llama-cpp-python==$LLAMA_CPP_VERSION"
fi

extras="${1:-}"
stamp=".venv/.installed-${extras:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  pip_install -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
