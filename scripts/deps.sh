#!/usr/bin/env bash
# Install what stackbpf needs on a Debian-family machine, as root. Idempotent.
#   scripts/deps.sh run    what the agent needs at run time
#   scripts/deps.sh test   plus what the tests use (ping, FRR, iperf3, OVS/OVN, Keystone, Neutron, Glance, nova-api, -conductor, -scheduler, placement, MariaDB, openssl,
#                          libvirt + QEMU and a guest kernel, RabbitMQ, Ceilometer's agents, Prometheus, pycadf and
#                          keystonemiddleware for the audit trail's comparison, the sqlite3 tool its tamper tests use)
#   scripts/deps.sh build  plus the BPF toolchain to rebuild bpf/build (clang, libbpf headers)
#   scripts/deps.sh bench  plus what the benchmarks drive (sqlmap for npm run bench -- detect)
set -euo pipefail
what=${1:-run}
# g++/make/python3: npm builds the SQLite binding (better-sqlite3) from source where no prebuilt one can be fetched
pkgs=(libbpf1 iproute2 ca-certificates g++ make python3)
# the agent drives FRR when bgp is configured; install frr yourself where it is used
case "$what" in
  run) ;;
  test) pkgs+=(iputils-ping coreutils bash frr iperf3 ethtool procps curl openssl openvswitch-switch ovn-central ovn-host keystone neutron-server glance-api nova-api nova-conductor nova-scheduler placement-api mariadb-server libvirt-daemon-system libvirt-daemon-system-sysv libvirt-clients qemu-system-x86 busybox-static python3-libvirt rabbitmq-server ceilometer-agent-compute ceilometer-agent-notification prometheus python3-openstackclient python3-osprofiler python3-pycadf python3-keystonemiddleware python3-cryptography sqlite3) ;;
  build) pkgs+=(iputils-ping coreutils bash frr iperf3 ethtool procps curl openssl openvswitch-switch ovn-central ovn-host keystone neutron-server glance-api nova-api nova-conductor nova-scheduler placement-api mariadb-server libvirt-daemon-system libvirt-daemon-system-sysv libvirt-clients qemu-system-x86 busybox-static python3-libvirt rabbitmq-server ceilometer-agent-compute ceilometer-agent-notification prometheus python3-openstackclient python3-osprofiler python3-pycadf python3-keystonemiddleware python3-cryptography sqlite3 clang-19 llvm-19 libbpf-dev) ;;
  bench) pkgs+=(iputils-ping coreutils bash frr iperf3 ethtool procps curl openssl openvswitch-switch ovn-central ovn-host keystone neutron-server glance-api nova-api nova-conductor nova-scheduler placement-api mariadb-server libvirt-daemon-system libvirt-daemon-system-sysv libvirt-clients qemu-system-x86 busybox-static python3-libvirt rabbitmq-server ceilometer-agent-compute ceilometer-agent-notification prometheus python3-openstackclient python3-osprofiler python3-pycadf python3-keystonemiddleware python3-cryptography sqlite3 sqlmap apache2 libapache2-mod-security2 modsecurity-crs tempest keystone-tempest-plugin) ;;
  *) echo "usage: scripts/deps.sh run|test|build|bench" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "deps: missing ${missing[*]}: run as root" >&2; exit 1; fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# the accounting tests' guests boot Debian's cloud kernel (downloaded, not installed)
if [ "$what" != run ] && [ "$(uname -m)" = x86_64 ] && ! ls /var/cache/stackbpf/guest/linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1; then
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  if [ -n "$pkg" ]; then
    echo "deps: downloading $pkg for the test guests"
    mkdir -p /var/cache/stackbpf/guest
    (cd /var/cache/stackbpf/guest && apt-get download -qq "$pkg" 2>/dev/null) || echo "deps: cannot download $pkg: the libvirt tests will be skipped" >&2
  fi
fi
command -v node >/dev/null || { echo "deps: Node.js 20 or newer is required" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { echo "deps: Node.js $(node --version) is too old: 20 or newer is required" >&2; exit 1; }
