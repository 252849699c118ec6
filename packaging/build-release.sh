#!/usr/bin/env bash
# Builds prism's release binary and copies it to OUT_DIR/prism:
#   packaging/build-release.sh OUT_DIR [CARGO_BUILD_ARGS...]
# The Dockerfile's builder stage runs exactly this; so does tests/packaging.rs
# (with `--profile packaging-check`, the release profile without optimization,
# so that the test takes seconds, not minutes). The release profile strips the
# binary (Cargo.toml, [profile.release] strip = true).
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 OUT_DIR [CARGO_BUILD_ARGS...]" >&2
  exit 2
fi
out=$1
shift
cd "$(dirname "$0")/.."

profile=release
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --profile) profile=${args[$((i + 1))]:-release} ;;
    --profile=*) profile=${args[$i]#--profile=} ;;
  esac
done
if [ "$profile" = release ] && [[ " ${args[*]-} " != *" --release "* ]]; then
  args=(--release "${args[@]}")
fi

cargo build --locked --bin prism "${args[@]}"
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$out"
cp "$target_dir/$profile/prism" "$out/prism"
echo "built $out/prism ($profile profile)" >&2
