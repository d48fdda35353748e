#!/bin/busybox sh
# PID 1 of the test guest. Everything the harness needs from the guest is decided here:
# mounts, a static address on QEMU's user network, the SSH server, and one "ready" line on the
# console that tells the harness it may connect (user-mode networking accepts TCP connections
# before the guest listens, so connecting on a timer alone can hang until the connect timeout).
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /tmp /run /var/log
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t hugetlbfs hugetlbfs /dev/hugepages 2>/dev/null || { mkdir -p /dev/hugepages && mount -t hugetlbfs hugetlbfs /dev/hugepages 2>/dev/null; }

arg() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" /proc/cmdline; }

kmsg() { echo "vfio-conformance: $*" > /dev/kmsg; }

if [ -n "$(arg vfioc_probe)" ]; then
    # Accelerator probe: reaching this line proves the accelerator runs userspace.
    kmsg probe-ok
    poweroff -f
fi

hostname guest
ip link set lo up
ip link set eth0 up
addr=$(arg vfioc_ip); [ -n "$addr" ] || addr=10.0.2.15/24
ip addr add "$addr" dev eth0
ip route add default via "$(arg vfioc_gw || echo 10.0.2.2)" 2>/dev/null

mkdir -p /root/.ssh
chmod 700 /root /root/.ssh
key=$(arg vfioc_key)
[ -n "$key" ] && echo "ssh-ed25519 $key vfio-conformance" > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys 2>/dev/null

# -s: keys only; -E: log to stderr (the console), so a refused login shows up in the boot log.
dropbear -r /etc/dropbear/host_key -s -E -p 22 2>/dev/console
kmsg ready

# PID 1 must not exit; power-off comes from the harness (poweroff -f) or from QEMU.
while :; do sleep 3600; done
