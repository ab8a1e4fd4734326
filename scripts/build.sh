#!/usr/bin/env bash
# Configures and builds ward: CMake + Ninja + ccache, RelWithDebInfo, warnings
# are errors. Runs from any directory.
#
#   scripts/build.sh                               -> build/
#   scripts/build.sh --sanitize address,undefined  -> build-asan/
#   scripts/build.sh --sanitize thread             -> build-tsan/
#   scripts/build.sh --fuzz                        -> build-fuzz/ (clang++, libFuzzer
#                                                     targets, ASan+UBSan, no unit tests)
#   scripts/build.sh ... TARGET...                 build only these targets
#                                                  (e.g. ward ward-whoami)
#   scripts/build.sh ... -DNAME=VALUE              extra CMake cache entries
#   scripts/build.sh ... --configure-only          configure, do not build
#
# Environment: WARD_JOBS (parallel compile jobs, default: number of CPUs),
# WARD_BUILD_TYPE (default RelWithDebInfo), WARD_PYTHON (interpreter for the
# integration tests, default /usr/bin/python3), CCACHE_DIR (ccache's own).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

sanitize=""
fuzz=0
configure_only=0
targets=()
cmake_args=()
while (($#)); do
  case "$1" in
    --sanitize)
      [[ $# -ge 2 ]] || { echo "build.sh: --sanitize needs a value" >&2; exit 2; }
      sanitize="$2"
      shift
      ;;
    --sanitize=*) sanitize="${1#--sanitize=}" ;;
    --fuzz) fuzz=1 ;;
    --configure-only) configure_only=1 ;;
    -D*) cmake_args+=("$1") ;;
    -h | --help)
      sed -n '2,18s/^# \{0,1\}//p' "$0"
      exit 0
      ;;
    -*)
      echo "build.sh: unknown option $1" >&2
      exit 2
      ;;
    *) targets+=("$1") ;;
  esac
  shift
done

if ((fuzz)) && [[ -z "$sanitize" ]]; then
  sanitize="address,undefined"  # a fuzzer without ASan finds only crashes
fi
case "$sanitize" in
  "") dir="build" ;;
  *thread*)
    if [[ "$sanitize" != thread ]]; then
      echo "build.sh: ThreadSanitizer cannot be combined with other sanitizers" >&2
      exit 2
    fi
    dir="build-tsan"
    ;;
  address | undefined | address,undefined | undefined,address) dir="build-asan" ;;
  *)
    echo "build.sh: --sanitize takes address,undefined or thread (got '$sanitize')" >&2
    exit 2
    ;;
esac
if ((fuzz)); then
  [[ "$sanitize" != thread ]] || { echo "build.sh: --fuzz cannot use thread" >&2; exit 2; }
  dir="build-fuzz"
fi

args=(
  -S "$root" -B "$root/$dir" -G Ninja
  -DCMAKE_BUILD_TYPE="${WARD_BUILD_TYPE:-RelWithDebInfo}"
  -DWARD_WERROR=ON
  -DWARD_SANITIZE="$sanitize"
)
# The integration tests run `python3 -m pytest` with the interpreter CMake
# finds; pin Debian's (where deps.sh installs pytest), not a pyenv/venv shim
# that may lack it. WARD_PYTHON overrides.
python="${WARD_PYTHON:-/usr/bin/python3}"
if ((!fuzz)) && [[ -x "$python" ]]; then
  args+=(-DPython3_EXECUTABLE="$python")
fi
# GCC warns (-Wtsan) on every std::atomic_thread_fence under TSan, and Asio's
# io_context executor has one in every TU: with -Werror nothing would build.
# TSan does not model fences (GCC or clang); Asio's fence only orders an
# inline handler call on the calling thread, which TSan sees anyway.
if [[ "$sanitize" == thread ]] &&
  "${CXX:-c++}" -Werror -Wno-tsan -fsyntax-only -x c++ /dev/null 2>/dev/null; then
  args+=(-DCMAKE_CXX_FLAGS=-Wno-tsan)
fi
if ((fuzz)); then
  # Instrument every library for coverage too, not only the fuzz entry points
  # (their own -fsanitize=fuzzer adds libFuzzer's main at link time).
  args+=(-DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link
    -DWARD_FUZZ=ON -DWARD_TESTS=OFF)
else
  args+=(-DWARD_FUZZ=OFF -DWARD_TESTS=ON)
fi
args+=("${cmake_args[@]}")

# A build directory configured by hand with another generator cannot be
# reconfigured for Ninja: drop its cache (sources are untouched).
cache="$root/$dir/CMakeCache.txt"
if [[ -f "$cache" ]] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$cache"; then
  echo "build.sh: $dir/ was configured with another generator; reconfiguring for Ninja"
  rm -rf "$cache" "$root/$dir/CMakeFiles"
fi

# ccache: hash paths relative to the checkout so worktrees share hits.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"

log="$(mktemp -t ward-configure.XXXXXX)"
trap 'rm -f "$log"' EXIT
if ! cmake "${args[@]}" >"$log" 2>&1; then
  cat "$log" >&2
  echo "build.sh: configure failed ($dir/)" >&2
  exit 1
fi
if grep -q 'CMake Warning' "$log"; then
  cat "$log"  # quiet unless CMake has something to say
fi
if ((configure_only)); then
  echo "build.sh: configured $dir/"
  exit 0
fi

jobs="${WARD_JOBS:-$(nproc)}"
build=(cmake --build "$root/$dir" -j "$jobs")
if ((${#targets[@]})); then
  build+=(--target "${targets[@]}")
fi
start=$SECONDS
"${build[@]}"
echo "build.sh: built $dir/${targets[*]:+ (${targets[*]})} in $((SECONDS - start))s"
