#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The daemon as a service: READY=1 on NOTIFY_SOCKET once mounted (the unit
# is Type=notify), journald priority prefixes when stderr is the journal,
# a broken image logged once and not once per retry, the mount(8) helper,
# and what `make install` puts where.
. "$TESTLIB"
require_fuse
require_qemu
command -v python3 >/dev/null || fail "python3 is missing"

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
truncate -s 1M "$D/a.img"
qemu-img create -q -f qcow2 "$D/broken.qcow2" 1M
# An L1 table offset past the end of the file.
printf '\001\000\000\000\000\000\000\000' | dd of="$D/broken.qcow2" bs=1 seek=40 conv=notrunc status=none

note "READY=1 on NOTIFY_SOCKET once the mount is there, STOPPING=1 at the end"
python3 - "$T/notify.sock" "$T/notify.log" <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
with open(sys.argv[2], 'w') as log:
    for _ in range(2):
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            break
        log.write(msg + '\n')
        log.flush()
EOF
listener=$!
i=0
while [ ! -S "$T/notify.sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
NOTIFY_SOCKET=$T/notify.sock JOURNAL_STREAM= "$VDISKFS" -f -o idle_timeout=1 "$D" "$M" 2>"$T/daemon.err" &
daemon=$!
i=0
while ! grep -q READY=1 "$T/notify.log" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
grep -qx READY=1 "$T/notify.log" || fail "no READY=1 on NOTIFY_SOCKET: $(cat "$T/notify.log" "$T/daemon.err")"
mountpoint -q "$M" || fail "READY=1 came before the mount"
MOUNTS="$MOUNTS $M"

note "a broken image is logged once, not once per retry"
for n in 1 2 3; do
    cat "$M/broken.qcow2" >/dev/null 2>&1 && fail "broken.qcow2 reads"
    sleep 1.1 # past idle_timeout: the failed open is retried
done
kill -TERM $daemon
wait $daemon || fail "the daemon did not exit cleanly on SIGTERM"
wait $listener
grep -qx STOPPING=1 "$T/notify.log" || fail "no STOPPING=1: $(cat "$T/notify.log")"
n=$(grep -c "broken.qcow2" "$T/daemon.err")
[ "$n" = 1 ] || fail "broken.qcow2 logged $n times over three retries: $(cat "$T/daemon.err")"
grep -q '^<[0-9]>' "$T/daemon.err" && fail "priority prefixes without the journal: $(cat "$T/daemon.err")"

note "stderr that is the journal's stream: lines carry <priority> prefixes"
: >"$T/journal.err"
JOURNAL_STREAM=$(stat -c '%d:%i' "$T/journal.err") "$VDISKFS" -f "$D" "$M" 2>>"$T/journal.err" &
daemon=$!
i=0
while ! mountpoint -q "$M" && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
cat "$M/broken.qcow2" >/dev/null 2>&1 || true
kill -TERM $daemon
wait $daemon || fail "the daemon on the journal stream did not exit cleanly"
grep -q '^<[34]>vdiskfs: .*broken.qcow2' "$T/journal.err" ||
    fail "no priority prefix on the journal stream: $(cat "$T/journal.err")"

note "mount.vdiskfs: mount -t vdiskfs's helper, through mount.fuse3"
if command -v mount.fuse3 >/dev/null || [ -x /sbin/mount.fuse3 ]; then
    PATH=$PATH:/sbin:/usr/sbin
    sed -e "s|@bindir@|$(dirname "$VDISKFS")|g" "$(dirname "$TESTLIB")/../../contrib/mount.vdiskfs.in" >"$T/mount.vdiskfs"
    sh "$T/mount.vdiskfs" "$D" "$M" -o ro,nosuid,nodev,_netdev,nofail || fail "mount.vdiskfs failed"
    mountpoint -q "$M" || fail "mount.vdiskfs mounted nothing"
    grep " $M " /proc/self/mountinfo | grep -q "fuse.vdiskfs.*ro" || fail "not a read-only vdiskfs mount"
    grep " $M " /proc/self/mountinfo | grep -q nosuid || fail "nosuid did not reach the kernel"
    [ "$(stat -c %s "$M/a.img")" = 1048576 ] || fail "a.img through the helper's mount"
    unmount_vdiskfs "$M"
else
    fail "mount.fuse3 is missing (fuse3)"
fi

note "make install: binaries, man pages, unit, completion, mount helpers"
top_build=$(dirname "$VDISKFS")
# Not the make that runs this test: its MAKEFLAGS would print directories.
unset MAKEFLAGS MFLAGS MAKELEVEL
make -s -C "$top_build" install DESTDIR="$T/root" >"$T/install.log" 2>&1 || fail "make install: $(tail -5 "$T/install.log")"
unit=$(sed -n 's/^systemdsystemunitdir = //p' "$top_build/Makefile")
sbin=$(make -s --no-print-directory -C "$top_build" -f Makefile -f - print-mounthelperdir <<'EOF' 2>/dev/null
print-mounthelperdir:
	@echo $(mounthelperdir)
EOF
)
bin=$(make -s --no-print-directory -C "$top_build" -f Makefile -f - print-bindir <<'EOF' 2>/dev/null
print-bindir:
	@echo $(bindir)
EOF
)
for f in "$bin/vdiskfs" "$bin/vdisk" "$sbin/mount.vdiskfs" "$unit/vdiskfs@.service"; do
    [ -f "$T/root$f" ] || fail "make install did not install $f: $(find "$T/root" -type f | head -20)"
done
[ -L "$T/root$sbin/mount.fuse.vdiskfs" ] || fail "no mount.fuse.vdiskfs link"
grep -q "^Type=notify" "$T/root$unit/vdiskfs@.service" || fail "the unit is not Type=notify"
grep -q "^ExecStart=$bin/vdiskfs " "$T/root$unit/vdiskfs@.service" || fail "the unit's ExecStart"
grep -q "$bin/vdiskfs#" "$T/root$sbin/mount.vdiskfs" || fail "the helper does not name $bin/vdiskfs"
find "$T/root" -name vdiskfs.1 | grep -q . || fail "no vdiskfs.1 installed"
find "$T/root" -path '*bash-completion/completions/vdisk' | grep -q . || fail "no completion for vdisk"
echo PASS
