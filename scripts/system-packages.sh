#!/usr/bin/env bash
# The Debian packages of requirements/system.txt: installs the missing ones where it can
# (root with apt-get), else prints ONE line naming the tests that will be skipped and the
# command that installs them. Under CI (CI set) a package that cannot be installed is an error.
set -uo pipefail
cd "$(dirname "$0")/.."
missing=() why=()
while read -r pkg comment; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
    why+=("${comment#\# }")
  fi
done < requirements/system.txt
((${#missing[@]})) || exit 0
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  echo "make test: installing ${missing[*]} (requirements/system.txt)"
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; then
    exit 0
  fi
fi
if [[ -n "${CI:-}" ]]; then
  echo "make test: cannot install ${missing[*]} (requirements/system.txt); CI needs them" >&2
  exit 1
fi
skipped=$(printf '%s; ' "${why[@]}")
echo "make test: SKIPPING ${skipped%; } - missing Debian packages; to run them: sudo apt-get install -y ${missing[*]}"
