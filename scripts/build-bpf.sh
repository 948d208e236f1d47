#!/usr/bin/env bash
# Compile bpf/*.bpf.c and bpf/test/*.bpf.c into bpf/build/ (CO-RE, BTF kept,
# DWARF stripped). Reproducible: the same sources and clang give the same bytes.
#   scripts/build-bpf.sh           rebuild the committed objects
#   scripts/build-bpf.sh --check   rebuild into a temporary folder and fail if
#                                  any committed object differs or is missing
set -euo pipefail
cd "$(dirname "$0")/.."

CLANG=${CLANG:-clang-19}
STRIP=${LLVM_STRIP:-llvm-strip-19}
for tool in "$CLANG" "$STRIP"; do
  command -v "$tool" >/dev/null || { echo "build-bpf: $tool not found (apt-get install clang-19 llvm-19 libbpf-dev)" >&2; exit 2; }
done
[ -f /usr/include/bpf/bpf_helpers.h ] || { echo "build-bpf: libbpf headers missing (apt-get install libbpf-dev)" >&2; exit 2; }

check=0
[ "${1:-}" = "--check" ] && check=1
out=bpf/build
if [ $check = 1 ]; then out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi

arch=$(uname -m); case "$arch" in x86_64) target_arch=x86;; aarch64) target_arch=arm64;; *) target_arch=$arch;; esac
# Relative paths and a fixed compilation dir keep host paths out of the BTF.
cflags=(-O2 -g -target bpf -mcpu=v3 "-D__TARGET_ARCH_${target_arch}" -Wall -Werror
        -Ibpf/include -Ibpf/lib -fdebug-compilation-dir=. "-ffile-prefix-map=$PWD/=")

built=0
for src in bpf/*.bpf.c bpf/test/*.bpf.c; do
  [ -e "$src" ] || continue
  rel=${src#bpf/}
  obj="$out/${rel%.bpf.c}.o"
  mkdir -p "$(dirname "$obj")"
  "$CLANG" "${cflags[@]}" -c "$src" -o "$obj.tmp"
  "$STRIP" -g "$obj.tmp" -o "$obj"
  rm -f "$obj.tmp"
  built=$((built + 1))
done

if [ $check = 1 ]; then
  status=0
  while IFS= read -r -d '' obj; do
    rel=${obj#"$out"/}
    if ! cmp -s "$obj" "bpf/build/$rel"; then
      echo "build-bpf: bpf/build/$rel differs from its sources: run npm run build:bpf and commit the result" >&2
      status=1
    fi
  done < <(find "$out" -name '*.o' -print0)
  while IFS= read -r -d '' obj; do
    rel=${obj#bpf/build/}
    [ -e "$out/$rel" ] || { echo "build-bpf: bpf/build/$rel has no source any more: remove it" >&2; status=1; }
  done < <(find bpf/build -name '*.o' -print0)
  [ $status = 0 ] && echo "build-bpf: $built objects match their sources"
  exit $status
fi
echo "build-bpf: built $built objects into bpf/build"
