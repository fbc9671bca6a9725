# lab image: the guest kernel + initramfs and the lab's C tools, built into the
# cache and rebuilt only when an input changes (the directory name is their hash).

LAB_CFLAGS=(-std=gnu17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla)
LAB_MODULES=(virtio virtio_pci virtio_blk virtio_console ext4)

# Finds the Debian kernel package that linux-image-amd64 points at now; falls back
# to the newest one already in the cache when apt has no lists (offline rebuild).
kernel_package() {
        local pkg
        pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
                awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
        if [ -z "$pkg" ]; then
                say "apt has no package lists yet; running apt-get update"
                apt-get update -qq >&2 || true
                pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
                        awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
        fi
        if [ -z "$pkg" ]; then
                pkg=$(find "$LAB_CACHE/debs" -name 'linux-image-*.deb' 2>/dev/null | sort -V |
                        tail -n1 | sed 's|.*/||; s|_.*||')
        fi
        [ -n "$pkg" ] || die "image: cannot find the Debian kernel package (apt-cache depends linux-image-amd64 gave nothing, and the cache has none)"
        printf '%s' "$pkg"
}

# Downloads and unpacks the kernel package once; prints the unpacked root.
kernel_unpacked() {
        local pkg=$1 deb root
        mkdir -p "$LAB_CACHE/debs"
        deb=$(find "$LAB_CACHE/debs" -name "${pkg}_*.deb" | sort -V | tail -n1)
        if [ -z "$deb" ]; then
                say "image: downloading $pkg"
                (cd "$LAB_CACHE/debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) ||
                        die "image: apt-get download $pkg failed"
                deb=$(find "$LAB_CACHE/debs" -name "${pkg}_*.deb" | sort -V | tail -n1)
                [ -n "$deb" ] || die "image: apt-get download $pkg left no .deb in $LAB_CACHE/debs"
        fi
        root=$LAB_CACHE/kernel/$(basename "$deb" .deb)
        if [ ! -f "$root/.done" ]; then
                rm -rf "$root"
                mkdir -p "$root"
                dpkg -x "$deb" "$root"
                local ver
                ver=$(ls "$root/lib/modules")
                depmod -b "$root" "$ver"
                touch "$root/.done"
        fi
        printf '%s' "$root"
}

# Removes older builds of one kind, except the one just made and any that the
# running lab uses (its state file names them).
cache_prune() { # prefix keep-dir
        local old
        for old in "$LAB_CACHE/$1"*; do
                if [ ! -d "$old" ] || [ "$old" = "$2" ]; then continue; fi
                grep -qF "$old/" "$LAB_STATE" 2>/dev/null && continue
                rm -rf "$old"
        done
}

files_hash() { # files... -> one hash of names and contents
        local f
        for f in "$@"; do
                printf '%s\n' "${f##*/}"
                cat "$f"
        done | sha256sum | cut -c1-16
}

# Builds lab-relay and lab-check for the host; sets LAB_RELAY and LAB_CHECK.
tools_build() {
        local src=$LAB_SRC/src h dir
        h=$(files_hash "$src/lab_crc32.h" "$src/lab_rec.h" "$src/relay.c" "$src/check.c" \
                "$LAB_SRC/lib/image.sh")
        dir=$LAB_CACHE/tools-$h
        if [ ! -f "$dir/.done" ]; then
                command -v gcc > /dev/null || die "tools: gcc is missing (run: deploy/lab/lab deps)"
                rm -rf "$dir"
                mkdir -p "$dir"
                gcc "${LAB_CFLAGS[@]}" -o "$dir/lab-relay" "$src/relay.c" ||
                        die "tools: building lab-relay failed"
                gcc "${LAB_CFLAGS[@]}" -o "$dir/lab-check" "$src/check.c" ||
                        die "tools: building lab-check failed"
                touch "$dir/.done"
                cache_prune tools- "$dir"
        fi
        LAB_RELAY=$dir/lab-relay
        LAB_CHECK=$dir/lab-check
}

# Copies a dynamically linked program and every library ldd names into a root.
copy_with_libs() { # program, root
        local prog=$1 root=$2 lib
        install -D -m 0755 "$prog" "$root$prog"
        for lib in $(ldd "$prog" | awk '/=> \// { print $3 } /^\t\// { print $1 }'); do
                install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
        done
}

# The kernel ELF inside a bzImage, for QEMU to boot by its PVH entry: under TCG
# that skips the firmware's real-mode path and the in-guest decompression (a
# lab guest reached init in 2.2 s instead of 5.3 s). Leaves nothing when the
# kernel has no PVH entry or the payload is not xz/gzip/zstd: the bzImage boots.
kernel_pvh() { # bzImage config out
        local bz=$1 config=$2 out=$3 setup off len magic unpack
        grep -qx 'CONFIG_PVH=y' "$config" 2>/dev/null || return 0
        # boot protocol: setup_sects at 0x1f1; payload_offset/length at 0x248/0x24c,
        # counted from the protected-mode code after the setup sectors.
        setup=$(od -An -tu1 -j $((0x1f1)) -N1 "$bz" | tr -d ' ')
        ((setup)) || setup=4
        read -r off len < <(od -An -tu4 -j $((0x248)) -N8 "$bz")
        off=$(((setup + 1) * 512 + off))
        magic=$(od -An -tx1 -j "$off" -N4 "$bz" | tr -d ' ')
        case "$magic" in
        fd377a58) unpack=(xz -dc --single-stream) ;;
        1f8b*) unpack=(gzip -dc) ;;
        28b52ffd) unpack=(zstd -dcq) ;;
        *) return 0 ;;
        esac
        command -v "${unpack[0]}" > /dev/null || return 0
        if dd if="$bz" iflag=skip_bytes,count_bytes skip="$off" count="$len" bs=64K status=none |
                "${unpack[@]}" > "$out.tmp" 2> /dev/null &&
                [ "$(od -An -tx1 -N4 "$out.tmp" | tr -d ' ')" = 7f454c46 ]; then
                mv "$out.tmp" "$out"
        else
                rm -f "$out.tmp"
        fi
}

# The guest image's files in one built image dir: the PVH ELF when there is one.
image_set_paths() { # dir
        LAB_KERNEL=$1/vmlinuz
        [ ! -f "$1/vmlinux" ] || LAB_KERNEL=$1/vmlinux
        LAB_INITRD=$1/initrd.img
}

# Builds (or finds) the guest image; sets LAB_KERNEL and LAB_INITRD.
image_build() {
        local t0 pkg kroot kver h dir stage mod prog
        t0=$(now_ms)
        for prog in /bin/busybox /usr/sbin/qemu-ga; do
                [ -x "$prog" ] || die "image: $prog is missing (run: deploy/lab/lab deps)"
        done
        pkg=$(kernel_package)
        h=$( {
                printf 'kernel %s\n' "$pkg"
                dpkg-query -W -f='${Package} ${Version}\n' busybox-static qemu-guest-agent libc6 2>/dev/null || true
                sha256sum /bin/busybox /usr/sbin/qemu-ga
                files_hash "$LAB_SRC/guest/init" "$LAB_SRC/guest/shutdown" "$LAB_SRC/src/workload.c" \
                        "$LAB_SRC/src/lab_rec.h" "$LAB_SRC/src/lab_crc32.h" "$LAB_SRC/lib/image.sh"
        } | sha256sum | cut -c1-16)
        dir=$LAB_CACHE/image-$h
        if [ -f "$dir/.done" ]; then
                image_set_paths "$dir"
                LAB_IMAGE_MS=$(($(now_ms) - t0))
                return 0
        fi

        say "image: building the guest image ($pkg) into $dir"
        kroot=$(kernel_unpacked "$pkg")
        kver=$(ls "$kroot/lib/modules")
        rm -rf "$dir"
        mkdir -p "$dir"
        stage=$dir/stage
        mkdir -p "$stage"/{bin,sbin,dev,proc,sys,run,tmp,lib/modules,data,data2}

        install -m 0755 /bin/busybox "$stage/bin/busybox"
        install -m 0755 "$LAB_SRC/guest/init" "$stage/init"
        install -m 0755 "$LAB_SRC/guest/shutdown" "$stage/sbin/shutdown"
        copy_with_libs /usr/sbin/qemu-ga "$stage"
        # The kernel opens /dev/console before init mounts devtmpfs.
        mknod -m 0600 "$stage/dev/console" c 5 1

        command -v gcc > /dev/null || die "image: gcc is missing (run: deploy/lab/lab deps)"
        gcc "${LAB_CFLAGS[@]}" -static -o "$stage/bin/lab-workload" "$LAB_SRC/src/workload.c" ||
                die "image: building lab-workload (static) failed; is libc6-dev installed?"

        # Modules with their dependencies, in load order, each once.
        : > "$stage/lib/modules/load.order"
        for mod in "${LAB_MODULES[@]}"; do
                modprobe -d "$kroot" -S "$kver" --show-depends "$mod" |
                        awk '$1 == "insmod" { print $2 }'
        done | awk '!seen[$0]++' | while read -r ko; do
                cp "$ko" "$stage/lib/modules/"
                printf '%s\n' "${ko##*/}" >> "$stage/lib/modules/load.order"
        done
        [ -s "$stage/lib/modules/load.order" ] || die "image: no modules found in $kroot for ${LAB_MODULES[*]}"

        cp "$kroot/boot/vmlinuz-$kver" "$dir/vmlinuz"
        kernel_pvh "$dir/vmlinuz" "$kroot/boot/config-$kver" "$dir/vmlinux"
        (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
                cpio --quiet -o -H newc --reproducible) | gzip -6n > "$dir/initrd.img"
        rm -rf "$stage"
        printf 'kernel %s\n' "$pkg" > "$dir/inputs"
        touch "$dir/.done"
        # The unpacked kernel is 400 MB and only needed here; the .deb stays.
        rm -rf "$kroot"
        cache_prune image- "$dir"
                image_set_paths "$dir"
        LAB_IMAGE_MS=$(($(now_ms) - t0))
        say "image: built in $((LAB_IMAGE_MS / 1000)).$((LAB_IMAGE_MS % 1000 / 100)) s ($(du -h "$dir/initrd.img" | cut -f1) initramfs, boots $(basename "$LAB_KERNEL"))"
}
