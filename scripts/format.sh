#!/usr/bin/env bash
# Formats the C++ sources with the repository's .clang-format.
#
#   scripts/format.sh           rewrite files in place
#   scripts/format.sh --check   change nothing; list files that need formatting
#                               (exit 1 if any), as scripts/test.sh does
#
# Covers *.h and *.cpp under proxy/ filters/ tests/ bench/.
# Environment: CLANG_FORMAT (default clang-format).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  -h | --help)
    sed -n '2,10s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
  *)
    echo "format.sh: unknown option $1" >&2
    exit 2
    ;;
esac

cf="${CLANG_FORMAT:-clang-format}"
command -v "$cf" >/dev/null || { echo "format.sh: $cf not found (scripts/deps.sh)" >&2; exit 1; }

dirs=()
for d in proxy filters tests bench; do
  [[ -d "$d" ]] && dirs+=("$d")
done
mapfile -t files < <(find "${dirs[@]}" -type f \( -name '*.h' -o -name '*.cpp' \) | LC_ALL=C sort)
if ((${#files[@]} == 0)); then
  echo "format: no C++ files"
  exit 0
fi

if ((!check)); then
  "$cf" -i "${files[@]}"
  echo "format: ${#files[@]} files formatted"
  exit 0
fi

# One call first: a .clang-format this clang-format cannot read fails every file.
if ! "$cf" --dry-run --Werror "${files[0]}" >/dev/null 2>"${TMPDIR:-/tmp}/ward-format.$$"; then
  if grep -q 'Error reading' "${TMPDIR:-/tmp}/ward-format.$$"; then
    cat "${TMPDIR:-/tmp}/ward-format.$$" >&2
    rm -f "${TMPDIR:-/tmp}/ward-format.$$"
    echo "format: $("$cf" --version) cannot read .clang-format" >&2
    exit 1
  fi
fi
rm -f "${TMPDIR:-/tmp}/ward-format.$$"

bad=()
for f in "${files[@]}"; do
  "$cf" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  { "$cf" --dry-run --Werror "${bad[0]}" 2>&1 || true; } | head -n 20 >&2
  printf 'format: %d of %d files need clang-format (scripts/format.sh fixes them):\n' \
    "${#bad[@]}" "${#files[@]}" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "format: ${#files[@]} files clean"
