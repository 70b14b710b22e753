#!/usr/bin/env bash
# Build the messages in msg/ and install them into the active Python venv (docs/environment.md §3).
#
# Usage (from anywhere):  VIRTUAL_ENV=/path/to/venv bash scripts/build_msgs.sh
#   (an activated venv sets VIRTUAL_ENV). Afterwards, in that venv:
#   python -c "from rsatalker.msg import FlameParams"
#
# What it does, each step idempotent (a second run with nothing changed takes < 1 s):
#  1. Rewrites, once, the include paths of the ROS wheels' build machine
#     (/opt/python/cp311-cp311/...) in the venv's exported CMake files to this venv's
#     Python and numpy headers.
#  2. Configures and installs msg/ into $VIRTUAL_ENV with cmake (only the messages:
#     -DRSATALKER_INSTALL_PYTHON=OFF; the Python code comes from `pip install -e .`),
#     skipped when msg/*.msg, CMakeLists.txt, package.xml and this script are unchanged
#     since the last successful build (stamp file in the venv).
#  3. Builds third_party_msgs/tf2_msgs (tf2_msgs/TFMessage only, Jazzy's definition, for
#     /tf and /tf_static: docs/ros.md "Frames") the same way, only when tf2_msgs cannot be
#     imported or is this script's own earlier build (a ROS installation's real tf2_msgs is
#     left alone); skipped when its files and this script are unchanged (second stamp).
#
# The generated typesupport libraries land in $VIRTUAL_ENV/lib, which the ROS wheels'
# bootstrapper (ros-wheels-bootstrapper) puts on LD_LIBRARY_PATH at every interpreter
# start in the venv, so no environment variable is needed.
#
# Needs: cmake >= 3.8, a C/C++ compiler, the Python headers of the venv's interpreter, and
# the pip packages listed in requirements.txt under "Building msg/ into the venv".
set -euo pipefail

if [ -z "${VIRTUAL_ENV:-}" ] || [ ! -x "${VIRTUAL_ENV}/bin/python" ]; then
  echo "build_msgs.sh: activate the venv first (VIRTUAL_ENV is unset or has no bin/python)" >&2
  exit 2
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${VIRTUAL_ENV}/bin/python"
BUILD_DIR="${REPO}/build/ros"
STAMP="${VIRTUAL_ENV}/.rsatalker_msgs.stamp"

for tool in cmake c++; do
  command -v "$tool" >/dev/null || { echo "build_msgs.sh: '$tool' not found (run scripts/install_system_deps.sh)" >&2; exit 2; }
done
if [ ! -f "${VIRTUAL_ENV}/share/rosidl_default_generators/cmake/rosidl_default_generatorsConfig.cmake" ]; then
  echo "build_msgs.sh: rosidl_default_generators is not installed in ${VIRTUAL_ENV} (pip install -r requirements.txt)" >&2
  exit 2
fi

# --- 1. one-time rewrite of the wheels' build-machine paths --------------------------
read -r PY_INC NP_INC SITE < <("$PY" -c '
import sysconfig, numpy
print(sysconfig.get_paths()["include"], numpy.get_include(), sysconfig.get_paths()["purelib"])')
if [ ! -f "${PY_INC}/Python.h" ]; then
  echo "build_msgs.sh: Python.h not found in ${PY_INC} (install the python3-dev package for this interpreter)" >&2
  exit 2
fi
OLD="/opt/python/cp311-cp311"
mapfile -t STALE < <(grep -rlF --include='*.cmake' "$OLD" "${VIRTUAL_ENV}/share" "${VIRTUAL_ENV}/lib/cmake" 2>/dev/null || true)
if [ ${#STALE[@]} -gt 0 ]; then
  echo "build_msgs.sh: rewriting build-machine paths in ${#STALE[@]} exported CMake files"
  for f in "${STALE[@]}"; do
    sed -i \
      -e "s#${OLD}/include/python3\.[0-9]*#${PY_INC}#g" \
      -e "s#${OLD}/lib/python3\.[0-9]*/site-packages/numpy/_core/include#${NP_INC}#g" \
      -e "s#${OLD}/lib/python3\.[0-9]*/site-packages#${SITE}#g" \
      -e "s#${OLD}#${VIRTUAL_ENV}#g" \
      "$f"
  done
fi

# --- 2. build + install msg/ unless nothing changed ---------------------------------
export CMAKE_PREFIX_PATH="${VIRTUAL_ENV}${CMAKE_PREFIX_PATH:+:${CMAKE_PREFIX_PATH}}"
export AMENT_PREFIX_PATH="${VIRTUAL_ENV}${AMENT_PREFIX_PATH:+:${AMENT_PREFIX_PATH}}"
export PATH="${VIRTUAL_ENV}/bin:${PATH}"

# build_package NAME SOURCE_DIR BUILD_DIR [CMAKE_ARGS...]: configure, build and install one
# ament_cmake package into $VIRTUAL_ENV.
build_package() {
  local name="$1" src="$2" build="$3"
  shift 3
  echo "build_msgs.sh: building ${name} into ${VIRTUAL_ENV}"
  # A build tree configured for another venv caches that venv's package paths: start afresh.
  if [ -f "${build}/CMakeCache.txt" ] && \
     ! grep -qx "CMAKE_INSTALL_PREFIX:PATH=${VIRTUAL_ENV}" "${build}/CMakeCache.txt"; then
    rm -rf "$build"
  fi
  cmake -S "$src" -B "$build" \
    -DCMAKE_INSTALL_PREFIX="$VIRTUAL_ENV" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_TESTING=OFF \
    -DPython3_EXECUTABLE="$PY" \
    -DPython3_FIND_VIRTUALENV=ONLY \
    "$@"
  cmake --build "$build" --target install -- -j"$(nproc)"
}

HASH="$(cd "$REPO" && cat msg/*.msg CMakeLists.txt package.xml scripts/build_msgs.sh | sha256sum | cut -d' ' -f1)"
GEN="${SITE}/rsatalker/msg/_flame_params.py"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && [ -f "$GEN" ]; then
  echo "build_msgs.sh: messages up to date in ${VIRTUAL_ENV}"
else
  build_package rsatalker "$REPO" "$BUILD_DIR" -DRSATALKER_INSTALL_PYTHON=OFF
  # Check the result in a fresh interpreter (the bootstrapper sets LD_LIBRARY_PATH there).
  "$PY" -c "from rsatalker.msg import AudioChunk, FlameParams, Relationship; FlameParams()"
  echo "$HASH" > "$STAMP"
  echo "build_msgs.sh: installed rsatalker messages into ${VIRTUAL_ENV}"
fi

# --- 3. tf2_msgs (TFMessage) where no ROS installation provides it -----------------
TF_SRC="${REPO}/third_party_msgs/tf2_msgs"
TF_STAMP="${VIRTUAL_ENV}/.rsatalker_tf2_msgs.stamp"
TF_MARK="rsatalker's scripts/build_msgs.sh"   # in our package.xml's description
OURS="${VIRTUAL_ENV}/share/tf2_msgs/package.xml"
if "$PY" -c "import tf2_msgs.msg" 2>/dev/null && ! grep -qF "$TF_MARK" "$OURS" 2>/dev/null; then
  echo "build_msgs.sh: tf2_msgs is installed (ROS); not building third_party_msgs/tf2_msgs"
  exit 0
fi
TF_HASH="$(cd "$REPO" && cat third_party_msgs/tf2_msgs/msg/*.msg third_party_msgs/tf2_msgs/CMakeLists.txt \
  third_party_msgs/tf2_msgs/package.xml scripts/build_msgs.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$TF_STAMP" ] && [ "$(cat "$TF_STAMP")" = "$TF_HASH" ] && \
   [ -f "${SITE}/tf2_msgs/msg/_tf_message.py" ]; then
  echo "build_msgs.sh: tf2_msgs up to date in ${VIRTUAL_ENV}"
  exit 0
fi
build_package tf2_msgs "$TF_SRC" "${REPO}/build/tf2_msgs"
"$PY" -c "from tf2_msgs.msg import TFMessage; TFMessage()"
echo "$TF_HASH" > "$TF_STAMP"
echo "build_msgs.sh: installed tf2_msgs (TFMessage) into ${VIRTUAL_ENV}"
