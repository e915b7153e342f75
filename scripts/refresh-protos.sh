#!/usr/bin/env bash
# Refreshes proto/ from the upstream API repositories at the commits pinned below: the files the
# agent needs (ROOTS) and everything they import, nothing else. Each source lands in a folder of
# its own (proto/<source>/, an import root); proto/README.md is rewritten to name every source,
# its commit and its files. Afterwards run `npm run protos:generate` and commit proto/ and src/gen/.
#
# Usage:
#   scripts/refresh-protos.sh                      fetch each source from GitHub (git, shallow, blobs on demand)
#   scripts/refresh-protos.sh --git NAME=GITDIR    read source NAME from a local clone or mirror instead (offline);
#                                                  may be repeated, e.g. --git envoy-api=$HOME/src/data-plane-api/.git
#
# To move to another upstream version, change its commit in SOURCES and run the script.
set -euo pipefail

# name | GitHub repository | commit (a tag's commit where the project tags releases) | what it is
SOURCES=(
  "envoy-api|envoyproxy/data-plane-api|84e84367f2560cdb47b9bb78fd3e615feb80c3e4|Envoy's API (the mirror of envoyproxy/envoy api/), 2026-01-29"
  "xds|cncf/xds|555b57ec207be86f811fb0c04752db6f85e3d7e2|xds and udpa annotations and types: the version that data-plane-api's MODULE.bazel names (0.0.0-20240423-555b57e)"
  "protoc-gen-validate|bufbuild/protoc-gen-validate|7b06248484ceeaa947e93ca2747eccf336a88ecc|validate.proto, v1.2.1: the version data-plane-api's MODULE.bazel names"
  "googleapis|googleapis/googleapis|2193a2bfcecb92b92aad7a4d81baa428cafd7dfd|google.rpc.Status: the version data-plane-api's MODULE.bazel names (0.0.0-20251003-2193a2bf)"
  "istio-api|istio/api|b8f8791d9653b2edc77a071d48887e582cfe84bf|Istio's CA service (istio.v1.auth), 2026-07-21"
  "istio|istio/istio|86c9f01fd735fb01d8192f5bcaf0d424afb7f14c|Istio's NDS name table (istio.networking.nds.v1), 2026-08-22"
  "grpc-proto|grpc/grpc-proto|99135b19189588fcc787acb84cff27991787473d|gRPC's health-checking service (grpc.health.v1), 2026-03-31"
)

# What the agent encodes or decodes itself; their imports are followed.
ROOTS=(
  envoy/service/discovery/v3/discovery.proto              # SDS requests/responses; xDS field numbers (checked by a test)
  envoy/extensions/transport_sockets/tls/v3/secret.proto  # SDS secrets
  envoy/config/core/v3/extension.proto                    # ECDS: TypedExtensionConfig
  envoy/extensions/filters/http/wasm/v3/wasm.proto        # ECDS: the Wasm filters rewritten to load a local module
  envoy/extensions/filters/network/wasm/v3/wasm.proto
  udpa/type/v1/typed_struct.proto                         # ECDS: Wasm config wrapped in a TypedStruct
  xds/type/v3/typed_struct.proto
  security/v1alpha1/ca.proto                              # the Istio CA client
  pkg/dns/proto/nds.proto                                 # the DNS proxy's name table
  grpc/health/v1/health.proto                             # gRPC health probes of the application
)

repo_root=$(cd "$(dirname "$0")/.." && pwd)
out="$repo_root/proto"

declare -A LOCAL_GIT=()
while [ $# -gt 0 ]; do
  case "$1" in
    --git) LOCAL_GIT["${2%%=*}"]="${2#*=}"; shift 2 ;;
    *) echo "refresh-protos: unknown argument '$1' (usage: refresh-protos.sh [--git NAME=GITDIR]...)" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

declare -A GITDIR=() COMMIT=() REPO=() ABOUT=()
names=()
for s in "${SOURCES[@]}"; do
  IFS='|' read -r name repo commit about <<<"$s"
  names+=("$name"); REPO[$name]=$repo; COMMIT[$name]=$commit; ABOUT[$name]=$about
  if [ -n "${LOCAL_GIT[$name]:-}" ]; then
    GITDIR[$name]=${LOCAL_GIT[$name]}
  else
    # a partial, shallow clone of just that commit: blobs are fetched when a file is read
    GITDIR[$name]="$work/$name.git"
    git init -q --bare "${GITDIR[$name]}"
    git -C "${GITDIR[$name]}" fetch -q --depth 1 --filter=blob:none "https://github.com/$repo.git" "$commit"
  fi
  if ! git -C "${GITDIR[$name]}" cat-file -e "$commit^{commit}" 2>/dev/null; then
    echo "refresh-protos: $name: commit $commit of $repo is not in ${GITDIR[$name]}" >&2
    exit 1
  fi
done
for n in "${!LOCAL_GIT[@]}"; do
  [ -n "${REPO[$n]:-}" ] || { echo "refresh-protos: --git names unknown source '$n' (sources: ${names[*]})" >&2; exit 2; }
done

# the source that holds an import path (import paths are unique across the sources)
source_of() {
  local path=$1 name
  for name in "${names[@]}"; do
    if git -C "${GITDIR[$name]}" cat-file -e "${COMMIT[$name]}:$path" 2>/dev/null; then
      echo "$name"
      return 0
    fi
  done
  return 1
}

staging="$work/proto"
mkdir -p "$staging"
declare -A DONE=() FILES=()
queue=("${ROOTS[@]}")
while [ ${#queue[@]} -gt 0 ]; do
  path=${queue[0]}
  queue=("${queue[@]:1}")
  [ -z "${DONE[$path]:-}" ] || continue
  DONE[$path]=1
  # google/protobuf/*: the well-known types, built into buf and @bufbuild/protobuf
  case "$path" in google/protobuf/*) continue ;; esac
  name=$(source_of "$path") || { echo "refresh-protos: $path is in none of the sources" >&2; exit 1; }
  mkdir -p "$(dirname "$staging/$name/$path")"
  git -C "${GITDIR[$name]}" show "${COMMIT[$name]}:$path" >"$staging/$name/$path"
  FILES[$name]+="$path"$'\n'
  while IFS= read -r dep; do queue+=("$dep"); done < <(sed -nE 's/^[[:space:]]*import[[:space:]]+(public[[:space:]]+|weak[[:space:]]+)?"([^"]+)";.*/\2/p' "$staging/$name/$path")
done

for name in "${names[@]}"; do
  [ -n "${FILES[$name]:-}" ] || continue
  for license in LICENSE LICENSE.txt; do
    if git -C "${GITDIR[$name]}" cat-file -e "${COMMIT[$name]}:$license" 2>/dev/null; then
      git -C "${GITDIR[$name]}" show "${COMMIT[$name]}:$license" >"$staging/$name/LICENSE"
      break
    fi
  done
done

{
  echo '# proto/'
  echo
  echo 'Upstream `.proto` files, vendored unchanged by `scripts/refresh-protos.sh` (do not edit them here:'
  echo 'change a commit in the script and run it). Each folder is one upstream source and one import root;'
  echo 'only the files the agent encodes or decodes (the ROOTS in the script) and what they import are'
  echo 'here. `npm run protos:generate` turns them into `src/gen/` (@bufbuild/protoc-gen-es, run by buf;'
  echo 'see buf.gen.yaml), which is committed; a test regenerates it and fails on any difference.'
  echo 'The well-known types (`google/protobuf/*`) come with buf and @bufbuild/protobuf.'
  echo
  echo '| folder | upstream | commit | what |'
  echo '| --- | --- | --- | --- |'
  for name in "${names[@]}"; do
    [ -n "${FILES[$name]:-}" ] || continue
    echo "| \`$name/\` | [${REPO[$name]}](https://github.com/${REPO[$name]}) | \`${COMMIT[$name]}\` | ${ABOUT[$name]} |"
  done
  echo
  echo '## Files'
  for name in "${names[@]}"; do
    [ -n "${FILES[$name]:-}" ] || continue
    echo
    echo "\`$name/\`: $(printf '%s' "${FILES[$name]}" | grep -c .) files"
    echo
    printf '%s' "${FILES[$name]}" | sort | sed 's/^/- /'
  done
} >"$staging/README.md"

# buf's workspace: one module per source folder
{
  echo '# Written by scripts/refresh-protos.sh: one module per upstream source (see README.md).'
  echo 'version: v2'
  echo 'modules:'
  for name in "${names[@]}"; do
    [ -n "${FILES[$name]:-}" ] || continue
    echo "  - path: $name"
  done
} >"$staging/buf.yaml"

rm -rf "$out"
mv "$staging" "$out"
total=0
for name in "${names[@]}"; do total=$((total + $(printf '%s' "${FILES[$name]:-}" | grep -c . || true))); done
echo "refresh-protos: $total files from ${#names[@]} sources written to proto/"
