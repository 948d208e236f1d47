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
[ $check = 1 ] && out=$(mktemp -d)

arch=$(uname -m); case "$arch" in x86_64) target_arch=x86;; aarch64) target_arch=arm64;; *) target_arch=$arch;; esac

# clang 19 emits some BTF forward declarations in the order of their heap
# addresses, and the heap layout follows the length of the source folder's path:
# the same sources gave different bytes in a clone at /tmp/x than at /work/main.
# So compile from a copy at one fixed path, one build at a time, whatever folder
# the clone is in. Relative paths and a fixed compilation dir keep it out of the BTF.
stage=/tmp/stackbpf-bpf-build
exec 9>"$stage.lock"
flock 9
rm -rf "$stage"
mkdir -p "$stage/bpf" "$stage/out"
tar -C bpf --exclude=./build -cf - . | tar -C "$stage/bpf" -xf -
mkdir -p "$out"
out=$(cd "$out" && pwd)
trap 'rm -rf "$stage"; if [ $check = 1 ]; then rm -rf "$out"; fi' EXIT

cflags=(-O2 -g -target bpf -mcpu=v3 "-D__TARGET_ARCH_${target_arch}" -Wall -Werror
        -Ibpf/include -Ibpf/lib -fdebug-compilation-dir=. "-ffile-prefix-map=$stage/=")

built=0
for src in bpf/*.bpf.c bpf/test/*.bpf.c; do
  [ -e "$src" ] || continue
  rel=${src#bpf/}
  obj="${rel%.bpf.c}.o"
  mkdir -p "$stage/out/$(dirname "$obj")" "$out/$(dirname "$obj")"
  (cd "$stage" && "$CLANG" "${cflags[@]}" -c "$src" -o "out/$obj.tmp" && "$STRIP" -g "out/$obj.tmp" -o "out/$obj")
  cp "$stage/out/$obj" "$out/$obj"
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
