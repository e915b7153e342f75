#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real (openssl to check what we sign,
# iproute2 and iptables for network-namespace tests, util-linux for setpriv, faketime to step a
# process's wall clock, zsh and fish for the completion scripts, ...). Quiet and quick when they are already there.
set -euo pipefail
PKGS=(openssl iproute2 iptables procps util-linux faketime bash zsh fish python3-grpcio docker-registry skopeo apache2-utils dnsutils dnsmasq-base)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing Debian packages: ${missing[*]} (run as root or install them)" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
