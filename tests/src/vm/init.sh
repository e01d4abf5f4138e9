#!/bin/sh
# /init of the lvs-mesh lab VM: mount the basics, load the modules the host listed
# in /mods/order (dependencies first), then hand over to lvs-lab-guest
# (lvs.mode=run: run the scenarios on the kernel command line; lvs.mode=shell:
# build the seed topology and give the console a shell). Always powers off.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin:/lvs/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
mkdir -p /run/netns
# busybox ash may prefer its own applets over PATH, and its ip lacks netns
/sbin/ip link set lo up
while read -r m; do
  insmod "/mods/$m" || echo "lvs-lab: insmod $m failed"
done < /mods/order
case " $(cat /proc/cmdline) " in
  *" lvs.mode=shell "*)
    lvs-lab-guest shell
    setsid cttyhack sh -l
    ;;
  *)
    lvs-lab-guest run
    ;;
esac
poweroff -f
