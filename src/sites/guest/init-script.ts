// The guest's /init and its power-button handler: a fixed, self-describing workload that every
// boot runs on /dev/vda, so that a test (or the drill, or the RTO benchmark) learns from the
// console alone what the disk held and whether anything was lost. Lines it prints start with
// "REBOUND " (docs/sites.md lists them):
//   REBOUND ready                          first thing /init does (the RTO benchmark times it)
//   REBOUND guest agent started            qemu-ga answers on the virtio-serial channel
//   REBOUND mkfs /dev/vda                  the disk held no file system: made ext4
//   REBOUND last shutdown clean|unclean    whether the previous boot ended through the handler
//   REBOUND gen K ok N files | gen K FAILED M of N files: NAMES | gen K incomplete | gen K missing
//   REBOUND ticks ok N | ticks FAILED M of N
//   REBOUND gen K written N files          the new generation is on the disk and synced
//   REBOUND running                        ticking (one synced file a second) until the power button
//   REBOUND power button / REBOUND clean shutdown ticks N
// Kernel command line: rebound.files=N (default 20), rebound.oneshot=1 (power off after the
// generation), rebound.nobutton=1 (ignore the power button: a shutdown must be forced),
// rebound.noqga=1 (do not start the QEMU guest agent: freeze finds nobody to answer).

/** Modules /init loads, in this order (dependencies first; the build checks each exists). */
export const GUEST_MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_legacy_dev',
  'virtio_pci_modern_dev',
  'virtio_pci',
  'virtio_blk',
  'crc16',
  'mbcache',
  'jbd2',
  'crc32c_generic',
  'ext4',
  // The ACPI power button as an input device, read by busybox acpid through evdev.
  'button',
  'evdev',
  // virtio-serial: the QEMU guest agent's channel (used when a guest has qemu-ga).
  'virtio_console',
];

export const INIT_SCRIPT = `#!/bin/sh
echo "REBOUND ready"
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /run /mnt
for m in $(cat /etc/modules); do
  insmod /lib/modules/$m.ko || echo "REBOUND insmod $m failed"
done

FILES=20; ONESHOT=0; BUTTON=1; QGA=1
for a in $(cat /proc/cmdline); do
  case "$a" in
    rebound.files=*) FILES=\${a#*=} ;;
    rebound.oneshot=1) ONESHOT=1 ;;
    rebound.nobutton=1) BUTTON=0 ;;
    rebound.noqga=1) QGA=0 ;;
  esac
done

halt_now() { echo "REBOUND halt: $1"; sync; poweroff -f; while :; do sleep 60; done; }

i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || halt_now "no disk /dev/vda"

# ext4's magic 0xEF53 at byte 1080: only a disk without it is formatted, never a damaged one.
magic=$(dd if=/dev/vda bs=2 skip=540 count=1 2>/dev/null | od -An -tx1 | tr -d ' \\n')
FRESH=0
if [ "$magic" != "53ef" ]; then
  echo "REBOUND mkfs /dev/vda"
  # A path: busybox ash would run its own mke2fs applet (ext2 only) for a bare name.
  /sbin/mke2fs -q -F -t ext4 -E nodiscard /dev/vda || halt_now "mkfs failed"
  FRESH=1
fi
mount -t ext4 /dev/vda /mnt || halt_now "mount of /dev/vda FAILED"

# The QEMU guest agent (freeze/thaw for app-consistent points) on its virtio-serial port.
if [ $QGA = 1 ] && [ -x /usr/sbin/qemu-ga ]; then
  port=
  for p in /sys/class/virtio-ports/*; do
    [ "$(cat $p/name 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/\${p##*/}
  done
  if [ -n "$port" ]; then
    mkdir -p /var/run
    /usr/sbin/qemu-ga -d -m virtio-serial -p $port -l /dev/null && echo "REBOUND guest agent started"
  fi
fi

R=/mnt/rebound
T=$R/ticks
mkdir -p $R $T

if [ -f $R/clean-shutdown ]; then
  echo "REBOUND last shutdown clean"
  rm -f $R/clean-shutdown
  sync
elif [ $FRESH = 1 ]; then
  echo "REBOUND new file system"
else
  echo "REBOUND last shutdown unclean"
fi

max=0
for d in $R/gen-*; do
  [ -d "$d" ] || continue
  k=\${d##*/gen-}
  [ "$k" -gt $max ] 2>/dev/null && max=$k
done
k=1
while [ $k -le $max ]; do
  d=$R/gen-$k
  if [ ! -d $d ]; then
    echo "REBOUND gen $k missing"
  elif [ ! -f $d/SHA256SUMS ]; then
    echo "REBOUND gen $k incomplete"
  else
    n=$(grep -c . $d/SHA256SUMS)
    ok=$(cd $d && sha256sum -c SHA256SUMS 2>/dev/null | grep -c ': OK$')
    if [ "$ok" = "$n" ]; then
      echo "REBOUND gen $k ok $n files"
    else
      bad=$(cd $d && sha256sum -c SHA256SUMS 2>&1 | grep -v ': OK$' | head -5 | tr '\\n' ' ')
      echo "REBOUND gen $k FAILED $((n-ok)) of $n files: $bad"
    fi
  fi
  k=$((k+1))
done
if [ -s $T/SHA256SUMS ]; then
  n=$(grep -c . $T/SHA256SUMS)
  ok=$(cd $T && sha256sum -c SHA256SUMS 2>/dev/null | grep -c ': OK$')
  if [ "$ok" = "$n" ]; then echo "REBOUND ticks ok $n"; else echo "REBOUND ticks FAILED $((n-ok)) of $n"; fi
fi

# A generation is complete once its SHA256SUMS exists: written aside, synced, then renamed in.
GEN=$((max+1))
d=$R/gen-$GEN
mkdir $d
i=1
while [ $i -le $FILES ]; do
  head -c $(( (RANDOM % 16 + 1) * 1024 )) /dev/urandom > $d/file-$i
  i=$((i+1))
done
(cd $d && sha256sum file-* > $R/sums.tmp)
sync
mv $R/sums.tmp $d/SHA256SUMS
sync
echo "REBOUND gen $GEN written $FILES files"
echo $GEN > /run/gen
echo 0 > /run/ticks

if [ $ONESHOT = 1 ]; then
  touch /run/stopped
  exec /etc/acpi/PWRF/00000080 oneshot
fi

# One tick a second: the file is synced before its checksum line is appended, so every listed
# tick must verify after any crash or failover.
(
  cd $T
  n=0
  while [ ! -f /run/stop ]; do
    n=$((n+1))
    f=t$GEN-$n
    head -c 512 /dev/urandom > $f
    sync
    sha256sum $f >> SHA256SUMS
    echo $n > /run/ticks
    sleep 1
  done
  touch /run/stopped
) &

if [ $BUTTON = 1 ]; then
  i=0
  while [ ! -c /dev/input/event0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  acpid -c /etc/acpi -l /dev/null
fi
echo "REBOUND running"
while :; do sleep 3600; done
`;

/** Run by acpid on the power button (and by /init itself in oneshot mode): a clean shutdown. */
export const POWER_BUTTON_SCRIPT = `#!/bin/sh
exec >/dev/console 2>&1
cd /
[ "$1" = oneshot ] || echo "REBOUND power button"
# Let the tick loop finish the tick it is writing.
touch /run/stop
i=0
while [ ! -f /run/stopped ] && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done
n=$(cat /run/ticks 2>/dev/null)
echo "gen $(cat /run/gen 2>/dev/null) ticks $n" > /mnt/rebound/clean-shutdown
sync
umount /mnt || { echo "REBOUND umount failed"; mount -o remount,ro /mnt; sync; }
echo "REBOUND clean shutdown ticks $n"
poweroff -f
`;
