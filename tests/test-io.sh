#!/bin/bash
# Reads and writes through the mount, verified byte for byte.
# It swaps nothing and attaches no loop device: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_root
requires_fuse

dir=$(make_tempdir)
mnt=$dir/mnt
size=$((256 << 20))
mount_vramfs "$mnt" "size=256M,cache=4M"
file=$mnt/swapfile

info "random writes and reads from 1 byte to 4 MiB at unaligned offsets"
"$VRAMFS_IO" random "$file" 3000 $((4 << 20)) 42

info "O_DIRECT writes and reads"
"$VRAMFS_IO" fill "$file" $((8 << 20)) $((32 << 20)) 7 direct
"$VRAMFS_IO" verify "$file" $((8 << 20)) $((32 << 20)) 7 direct
dd if="$file" of=/dev/null bs=1M iflag=direct status=none

info "punch hole: zeros, and fewer blocks"
before=$(stat -c %b "$file")
"$VRAMFS_IO" punch "$file" $((8 << 20)) $((16 << 20))
after=$(stat -c %b "$file")
[ "$after" -lt "$before" ] || fail "st_blocks $before -> $after after punching 16 MiB"
[ $((before - after)) -eq $((16 << 20 >> 9)) ] || fail "punching 16 MiB freed $(( (before - after) << 9 )) bytes"
"$VRAMFS_IO" zeros "$file" $((8 << 20)) $((16 << 20))
"$VRAMFS_IO" verify "$file" $((24 << 20)) $((16 << 20)) 7
info "a hole that cuts blocks in half"
"$VRAMFS_IO" fill "$file" 0 $((1 << 20)) 9
"$VRAMFS_IO" punch "$file" 1000 100000
"$VRAMFS_IO" verify "$file" 0 1000 9
"$VRAMFS_IO" zeros "$file" 1000 100000
"$VRAMFS_IO" verify "$file" 101000 $(((1 << 20) - 101000)) 9

info "the whole file punched: no data left"
"$VRAMFS_IO" punch "$file" 0 $size
[ "$(stat -c %b "$file")" = 0 ] || fail "st_blocks $(stat -c %b "$file") after punching everything"
[ "$(stat_value "$mnt" data_bytes)" = 0 ] || fail "data_bytes $(stat_value "$mnt" data_bytes)"
[ "$(stat_value "$mnt" errors)" = 0 ] || fail "errors counted: $(stat_value "$mnt" errors)"
umount "$mnt"

info "lazy mode: memory is taken on write and given back on discard"
mount_vramfs "$mnt" "size=256M,lazy"
[ "$(stat_value "$mnt" held_bytes)" = 0 ] || fail "lazy mount holds $(stat_value "$mnt" held_bytes) bytes"
"$VRAMFS_IO" fill "$file" 0 $((64 << 20)) 3
held=$(stat_value "$mnt" held_bytes)
[ "$held" -ge $((64 << 20)) ] || fail "after 64 MiB of writes only $held bytes held"
"$VRAMFS_IO" punch "$file" 0 $((32 << 20))
"$VRAMFS_IO" verify "$file" $((32 << 20)) $((32 << 20)) 3
[ "$(stat_value "$mnt" held_bytes)" -le $((32 << 20)) ] ||
  fail "after discarding 32 MiB, $(stat_value "$mnt" held_bytes) bytes held"
