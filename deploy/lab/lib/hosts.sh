# lab hosts: "lab up", "lab down" and "lab status": network namespaces on a private
# bridge, one private libvirtd + virtlogd per lab host, the guests, the ring relay,
# keys and configs, and the lockstep daemons once they are built.

LAB_MARKER=.lockstep-lab

# Placement rule: VMs are numbered in tier order web1, app1, db1, web2, ... (i = 0,
# 1, 2, ...); VM i goes to host (i + floor(i / L)) mod N with L = lcm(N, 3). The
# shift after each L VMs keeps a host from getting the same tier twice while it
# can still get another one, so each host holds several tiers when N allows.
vm_layout() { # hosts, vms -> lines "name tier hostindex"
        local n=$1 m=$2 i l g a b t
        a=$n b=3
        while ((b)); do t=$((a % b)) a=$b b=$t; done
        g=$a
        l=$((n * 3 / g))
        for ((i = 0; i < m; i++)); do
                printf '%s%d %s %d\n' "${LAB_TIERS[i % 3]}" $((i / 3 + 1)) "${LAB_TIERS[i % 3]}" \
                        $(((i + i / l) % n))
        done
}

check_tools() {
        local missing=() c
        for c in virsh libvirtd virtlogd qemu-system-x86_64 qemu-img mkfs.ext4 e2fsck debugfs \
                dumpe2fs ip unshare gcc cpio depmod modprobe gzip apt-get dpkg openssl; do
                command -v "$c" > /dev/null || missing+=("$c")
        done
        ((${#missing[@]} == 0)) || die "missing programs: ${missing[*]} (run: deploy/lab/lab deps)"
        for c in /etc/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
                [ -d "$c" ] || die "$c does not exist: the lab mounts its own directory over it (install libvirt-daemon-system: deploy/lab/lab deps)"
        done
}

# True when no process of the lab in that dir runs any more (a session or a
# machine that stopped under it): such a lab cannot be used, only removed.
lab_is_dead() { # lab dir
        local dir=$1 f prog
        for f in "$dir"/pids/*.pid "$dir"/hosts/*/*.pid "$dir"/hosts/*/run/libvirt/qemu/*.pid; do
                [ -e "$f" ] || continue
                case "$f" in
                */relay.pid) prog=lab-relay ;;
                */agent.pid) prog=lockstep-agent ;;
                */etcd-*.pid) prog=etcd ;;
                */lockstepd-*.pid) prog=lockstepd ;;
                */qemu/*.pid) prog=qemu-system ;;
                *) prog=$(basename "$f" .pid) ;;
                esac
                pid_alive "$f" "$prog" > /dev/null && return 1
        done
        return 0
}

# Removes a dead lab (ours or one in another lab dir that still holds the
# bridge), so that leftovers of a stopped session do not block the next up.
reap_dead_lab() { # lab dir
        local dir=$1
        [ -e "$dir/$LAB_MARKER" ] && lab_is_dead "$dir" || return 1
        say "removing a dead lab in $dir (none of its processes runs)"
        LOCKSTEP_LAB_DIR=$dir "$LAB_SELF" down || die "could not remove the dead lab in $dir"
}

# A lab that another LOCKSTEP_LAB_DIR left behind when its session was killed:
# the bridge names its dir. Removed when none of its processes runs; a live one
# is left alone. When that dir is gone too, only the network is left: the lab
# namespaces are removed when no process runs in them.
reap_foreign_lab() {
        local owner ns
        owner=$(sed -n 's/^lockstep-lab //p' "/sys/class/net/$LAB_BRIDGE/ifalias" 2>/dev/null || true)
        [ -n "$owner" ] && [ "$owner" != "$LAB_DIR" ] || return 0
        if [ -e "$owner/$LAB_MARKER" ]; then
                reap_dead_lab "$owner" || say "down: the lab in $owner is up (it holds $LAB_BRIDGE); left alone"
                return 0
        fi
        for ns in $(ip netns list | awk '{ print $1 }'); do
                case "$ns" in "$LAB_NETNS_PREFIX"*) ;; *) continue ;; esac
                if [ -n "$(ip netns pids "$ns" 2>/dev/null)" ]; then
                        say "down: $ns still has processes; the network of the lab in $owner is left alone"
                        return 0
                fi
        done
        say "down: removing the network of a lab whose dir $owner is gone"
        for ns in $(ip netns list | awk '{ print $1 }'); do
                case "$ns" in "$LAB_NETNS_PREFIX"*)
                        ip netns del "$ns" || warn "ip netns del $ns failed"
                        ! ip link show "lsv-${ns#"$LAB_NETNS_PREFIX"}" > /dev/null 2>&1 ||
                                ip link del "lsv-${ns#"$LAB_NETNS_PREFIX"}" || true ;;
                esac
        done
        ip link del "$LAB_BRIDGE" || warn "ip link del $LAB_BRIDGE failed"
}

# Refuses to start over anything that is already there, ours or not.
check_free() {
        local h owner
        if [ -e "$LAB_DIR/$LAB_MARKER" ]; then
                reap_dead_lab "$LAB_DIR" || die "a lab is already up in $LAB_DIR (run: deploy/lab/lab down)"
        fi
        owner=$(sed -n 's/^lockstep-lab //p' "/sys/class/net/$LAB_BRIDGE/ifalias" 2>/dev/null || true)
        if [ -n "$owner" ] && [ "$owner" != "$LAB_DIR" ]; then
                reap_dead_lab "$owner" ||
                        die "the lab in $owner is up and holds $LAB_BRIDGE (run: LOCKSTEP_LAB_DIR=$owner deploy/lab/lab down)"
        fi
        if [ -e "$LAB_DIR" ] && [ -n "$(ls -A "$LAB_DIR" 2>/dev/null)" ]; then
                die "$LAB_DIR exists and is not empty, and is not a lab dir; set LOCKSTEP_LAB_DIR or remove it"
        fi
        ! ip link show "$LAB_BRIDGE" > /dev/null 2>&1 ||
                die "bridge $LAB_BRIDGE already exists (a lab from another LOCKSTEP_LAB_DIR?); remove it or run lab down there"
        for h in $(ip netns list | awk '{ print $1 }'); do
                case "$h" in "$LAB_NETNS_PREFIX"*)
                        die "network namespace $h already exists (a lab from another LOCKSTEP_LAB_DIR?)" ;;
                esac
        done
        ! ip -4 route show | grep -q "^$LAB_NET_PREFIX\." ||
                die "a route to $LAB_NET_PREFIX.0/24 already exists on this machine; the lab network must be private"
}

write_libvirt_conf() { # host dir
        local d=$1
        mkdir -p "$d/etc/libvirt" "$d/run/libvirt" "$d/lib/libvirt" "$d/log/libvirt"
        # Only the lab's own libvirtd reads these, through the bind mount over /etc/libvirt.
        cat > "$d/etc/libvirt/qemu.conf" << 'EOF'
# lockstep lab: QEMU driver settings for a lab host's private libvirtd.
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
dynamic_ownership = 0
remember_owner = 0
EOF
        cat > "$d/etc/libvirt/libvirtd.conf" << 'EOF'
# lockstep lab: root-only sockets, no network listeners.
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
# The agent freezes every member of a host at once over one connection.
max_client_requests = 32
EOF
        cat > "$d/etc/libvirt/virtlogd.conf" << 'EOF'
log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
EOF
}

# Starts virtlogd and libvirtd for one lab host, inside its network namespace and
# a private mount namespace where the lab's directories hide the machine's own
# /etc/libvirt, /run, /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt.
# The capability cache is shared (in the lab cache) so only the first lab up
# pays QEMU's probing.
host_start_libvirt() { # host
        local h=$1 d ns
        d=$(host_dir "$h")
        ns=$(host_netns "$h")
        write_libvirt_conf "$d"
        mkdir -p "$LAB_CACHE/libvirt-cache" "$d/images"
        # Before libvirtd's private mount namespace is made, which would not see it.
        small_images "$h"
        ip netns exec "$ns" unshare -m --propagation private bash -euc '
                d=$1 cache=$2
                mount -t tmpfs -o mode=0755,size=16m lslab-run /run
                mkdir -p /run/libvirt /run/lock
                mount --bind "$d/etc/libvirt" /etc/libvirt
                mount --bind "$d/run/libvirt" /run/libvirt
                mount --bind "$d/lib/libvirt" /var/lib/libvirt
                mount --bind "$d/log/libvirt" /var/log/libvirt
                mount --bind "$cache" /var/cache/libvirt
                virtlogd -d -p "$d/virtlogd.pid"
                libvirtd -d -p "$d/libvirtd.pid"
        ' lab-host "$d" "$LAB_CACHE/libvirt-cache" ||
                die "$h: starting virtlogd/libvirtd failed (log: $d/log/libvirt/)"
}

# Starts a host's libvirtd again after it died (a fault test kills it), in the
# namespaces its virtlogd still holds; the guests' QEMU ran on without it.
host_restart_libvirtd() { # host
        local h=$1 d lp
        d=$(host_dir "$h")
        pid_alive "$d/libvirtd.pid" libvirtd > /dev/null && die "$h: libvirtd still runs"
        lp=$(pid_alive "$d/virtlogd.pid" virtlogd) || die "$h: virtlogd does not run: lab down, lab up"
        rm -f "$d/libvirtd.pid"
        nsenter -t "$lp" -m -n libvirtd -d -p "$d/libvirtd.pid" || die "$h: starting libvirtd again failed"
        host_wait_libvirt "$h" 60
}

host_wait_libvirt() { # host, seconds
        local h=$1 secs=$2 d i
        d=$(host_dir "$h")
        for ((i = 0; i < secs * 5; i++)); do
                if [ -S "$(host_sock "$h")" ] && hvirsh "$h" version > /dev/null 2>&1; then
                        return 0
                fi
                pid_alive "$d/libvirtd.pid" libvirtd > /dev/null || {
                        tail -n 5 "$d/log/libvirt/libvirtd.log" >&2 2>/dev/null || true
                        die "$h: libvirtd exited during startup (log: $d/log/libvirt/libvirtd.log)"
                }
                sleep 0.2
        done
        die "$h: libvirtd did not answer on $(host_sock "$h") within ${secs}s (log: $d/log/libvirt/libvirtd.log)"
}

# One lab host's network namespace, its eth0 on the bridge at ip.
netns_make() { # name ip
        local ns
        ns=$(host_netns "$1")
        ip netns add "$ns"
        ip link add "lsv-$1" type veth peer name eth0 netns "$ns"
        ip link set "lsv-$1" master "$LAB_BRIDGE" up
        ip -n "$ns" addr add "$2/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
}

netns_remove() { # name
        local ns
        ns=$(host_netns "$1")
        if ip netns list | awk '{ print $1 }' | grep -qx "$ns"; then
                ip netns del "$ns" || warn "$1: ip netns del $ns failed"
        fi
        ! ip link show "lsv-$1" > /dev/null 2>&1 || ip link del "lsv-$1" || true
}

# The bridge, and a namespace for each host and coordinator.
net_up() {
        local i c
        ip link add "$LAB_BRIDGE" type bridge
        # Names the lab dir that owns the bridge, for the next up to find a dead lab.
        ip link set "$LAB_BRIDGE" alias "lockstep-lab $LAB_DIR"
        ip addr add "$LAB_NET_PREFIX.1/24" dev "$LAB_BRIDGE"
        ip link set "$LAB_BRIDGE" up
        for ((i = 0; i < LAB_N_HOSTS; i++)); do
                netns_make "$(host_name "$i")" "$(host_ip "$i")"
        done
        for c in $(state_coords); do
                netns_make "$c" "$(state_coord_ip "$c")"
        done
}

# Makes one ext4 data disk whose root holds /lslab-id, so a checker can tell
# which VM and disk an image is without trusting its file name.
make_disk() { # vm tier disk path
        local vm=$1 tier=$2 disk=$3 path=$4 seed raw
        seed=$(mktemp -d "$LAB_DIR/tmp/seed.XXXXXX")
        raw=$seed.raw
        printf 'vm=%s disk=%s tier=%s\n' "$vm" "$disk" "$tier" > "$seed/lslab-id"
        truncate -s "$LAB_DISK_SIZE" "$raw"
        mkfs.ext4 -q -F -L "$vm-$disk" -d "$seed" "$raw" ||
                die "$vm: mkfs.ext4 for $disk failed"
        qemu-img convert -q -f raw -O qcow2 "$raw" "$path" ||
                die "$vm: qemu-img convert for $disk failed"
        rm -rf "$seed" "$raw"
}

domain_xml() { # vm tier host noga
        local vm=$1 tier=$2 h=$3 noga=$4 d disk letter=a
        d=$(host_dir "$h")
        cat << EOF
<domain type='qemu'>
  <name>$vm</name>
  <metadata>
    <lockstep:member xmlns:lockstep="https://lockstep.dev/xmlns/member/1" group="$LAB_GROUP" tier="$tier"/>
  </metadata>
  <memory unit='MiB'>$LAB_VM_MEM_MIB</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$LAB_KERNEL</kernel>
    <initrd>$LAB_INITRD</initrd>
    <cmdline>console=ttyS0 loglevel=4 $LAB_GUEST_BOOT_ARGS lslab.vm=$vm lslab.tier=$tier lslab.noga=$noga lslab.send_ms=$LAB_SEND_MS lslab.tick_ms=$LAB_TICK_MS</cmdline>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
EOF
        for disk in $(vm_disks "$vm"); do
                cat << EOF
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$d/images/$vm-$disk.qcow2'/>
      <target dev='$disk' bus='virtio'/>
    </disk>
EOF
        done
        cat << EOF
    <serial type='file'>
      <source path='$d/console/$vm.log' append='on'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='$d/console/$vm.log' append='on'/>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <source mode='bind'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <channel type='unix'>
      <source mode='bind' path='$d/ring/$vm.sock'/>
      <target type='virtio' name='org.lockstep.ring.0'/>
    </channel>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}

# LOCKSTEP_LAB_SMALL_IMAGES=HOST:MB puts that host's image directory on an ext4
# of its own, MB large (a loop device, no reserved blocks), so a test can fill
# it; lab down unmounts it. Mounted before the host's libvirtd starts.
small_images() { # host
        local h=$1 d want mb
        want=${LOCKSTEP_LAB_SMALL_IMAGES:-}
        [ "${want%%:*}" = "$h" ] || return 0
        d=$(host_dir "$h")
        mountpoint -q "$d/images" && return 0
        mb=${want#*:}
        [[ $mb =~ ^[1-9][0-9]*$ ]] || die "LOCKSTEP_LAB_SMALL_IMAGES=$want: not HOST:MB"
        truncate -s "${mb}M" "$LAB_DIR/tmp/$h-images.ext4"
        mkfs.ext4 -q -F -m 0 "$LAB_DIR/tmp/$h-images.ext4" || die "$h: mkfs.ext4 of the small image fs failed"
        mount -o loop "$LAB_DIR/tmp/$h-images.ext4" "$d/images" || die "$h: mounting the small image fs failed"
        say "$h: images on a ${mb} MiB file system of their own"
}

vm_create() { # vm
        local vm=$1 tier h d disk
        tier=$(vm_tier "$vm")
        h=$(vm_host "$vm")
        d=$(host_dir "$h")
        mkdir -p "$d/images" "$d/console" "$d/ring" "$d/domains"
        for disk in $(vm_disks "$vm"); do
                make_disk "$vm" "$tier" "$disk" "$d/images/$vm-$disk.qcow2"
        done
        domain_xml "$vm" "$tier" "$h" 0 > "$d/domains/$vm.xml"
        hvirsh "$h" define "$d/domains/$vm.xml" > /dev/null ||
                die "$vm@$h: virsh define failed (xml: $d/domains/$vm.xml)"
}

vm_start() { # vm
        local vm=$1 h
        h=$(vm_host "$vm")
        now_ms > "$LAB_DIR/tmp/start.$vm"
        # The console log is appended to across restarts; readiness is judged on
        # what this boot writes.
        stat -c %s "$(vm_console "$vm")" > "$LAB_DIR/tmp/console-offset.$vm" 2>/dev/null ||
                echo 0 > "$LAB_DIR/tmp/console-offset.$vm"
        hvirsh "$h" start "$vm" > /dev/null ||
                die "$vm@$h: virsh start failed (log: $(host_dir "$h")/log/libvirt/qemu/$vm.log)"
}

# Prints libvirt's error when the guest agent does not answer.
ga_ping() { # vm
        hvirsh "$(vm_host "$1")" qemu-agent-command "$1" '{"execute":"guest-ping"}' 2>&1 > /dev/null
}

# Waits until every VM given answers guest-ping (or, for a VM started without
# qemu-ga, until its workload runs); prints each VM's boot time.
vms_wait_ready() { # seconds vm...
        local secs=$1 vm t0 con boot err late
        shift
        local -A pending=() started=() restarts=()
        t0=$(now_ms)
        for vm in "$@"; do
                pending[$vm]=1
                started[$vm]=$(cat "$LAB_DIR/tmp/start.$vm" 2>/dev/null || echo "$t0")
        done
        while ((${#pending[@]})); do
                # Each guest's time counts from its own virsh start (the daemons
                # start while the guests boot), checked before its first ping.
                late=()
                for vm in "${!pending[@]}"; do
                        (($(now_ms) - ${started[$vm]} <= secs * 1000)) || late+=("$vm")
                done
                if ((${#late[@]})); then
                        for vm in "${late[@]}"; do
                                warn "$vm@$(vm_host "$vm"): not ready ${secs}s after virsh start; console: $(vm_console "$vm")"
                                tail -n 5 "$(vm_console "$vm")" >&2 2>/dev/null || true
                        done
                        die "boot: ${late[*]} did not come up"
                fi
                for vm in "${!pending[@]}"; do
                        con=$(vm_console "$vm")
                        boot=$(tail -c +$(($(cat "$LAB_DIR/tmp/console-offset.$vm" 2>/dev/null || echo 0) + 1)) "$con" 2>/dev/null || true)
                        if grep -q "lslab: .*qemu-ga not started" <<< "$boot"; then
                                grep -q "lab-workload: $vm: running" <<< "$boot" || continue
                        elif ! err=$(ga_ping "$vm"); then
                                if [ "$(hvirsh "$(vm_host "$vm")" domstate "$vm" 2>/dev/null)" != running ]; then
                                        die "$vm@$(vm_host "$vm"): the domain stopped while booting (console: $con)"
                                fi
                                # libvirt 9.0: an agent call in flight when QEMU died marks the
                                # agent failed, sometimes only after the next start has begun,
                                # and the mark outlives that start ("not available due to an
                                # error") until the domain stops again. Judged once this boot's
                                # qemu-ga is up.
                                if [[ $err == *"not available due to an error"* ]] &&
                                        grep -q "lslab: .*ready vm=$vm" <<< "$boot" && ((${restarts[$vm]:-0} < 2)); then
                                        restarts[$vm]=$((${restarts[$vm]:-0} + 1))
                                        say "  $vm@$(vm_host "$vm"): libvirt kept a guest-agent error from the QEMU before; starting it once more"
                                        hvirsh "$(vm_host "$vm")" destroy "$vm" > /dev/null 2>&1 || true
                                        vm_start "$vm"
                                        started[$vm]=$(cat "$LAB_DIR/tmp/start.$vm")
                                fi
                                continue
                        fi
                        say "  $vm@$(vm_host "$vm"): ready $(($(now_ms) - ${started[$vm]})) ms after virsh start"
                        printf '%s %d\n' "$vm" $(($(now_ms) - ${started[$vm]})) >> "$LAB_DIR/boot-times"
                        unset "pending[$vm]"
                done
                ((${#pending[@]})) || break
                sleep 0.25
        done
}

relay_start() {
        local vm args=()
        for vm in $(state_vms); do
                args+=("$(vm_tier "$vm"):$vm:$(host_dir "$(vm_host "$vm")")/ring/$vm.sock")
        done
        mkdir -p "$LAB_DIR/pids" "$LAB_DIR/logs"
        setsid "$LAB_RELAY" --tiers "$(
                IFS=,
                echo "${LAB_TIERS[*]}"
        )" "${args[@]}" >> "$LAB_DIR/logs/relay.log" 2>&1 < /dev/null &
        echo $! > "$LAB_DIR/pids/relay.pid"
}

yaml_q() { # a double-quoted YAML scalar
        local s=${1//\\/\\\\}
        printf '"%s"' "${s//\"/\\\"}"
}

write_configs() {
        local h i vm tier members
        for ((i = 0; i < LAB_N_HOSTS; i++)); do
                h=$(host_name "$i")
                mkdir -p "$(host_dir "$h")/journal"
                cat > "$(host_dir "$h")/agent.yaml" << EOF
# lockstep lab: agent of lab host $h (network namespace $(host_netns "$h")).
id: $h
listen: $(yaml_q "$(agent_url "$i")")
key: $(yaml_q "$LAB_DIR/keys/$h.key")
authorized:
  - name: coordinator
    pubkey: $(yaml_q "$LAB_DIR/keys/coordinator.pub")
    roles: [snapshot, revert, delete, admin]
$(for c in $(state_coords); do
        printf '  - name: %s\n    pubkey: %s\n    roles: [snapshot, revert, delete, admin]\n' "$c" "$(yaml_q "$LAB_DIR/keys/$c.pub")"
done)
libvirt_uri: $(yaml_q "$(host_uri "$h")")
backend: libvirt
journal_dir: $(yaml_q "$(host_dir "$h")/journal")
lease_max_s: 60
time_window_s: 30
guest_agent_timeout_s: 10
$(tls_agent_yaml "$h")
EOF
        done
        {
                echo "# lockstep lab: coordinator (root network namespace)."
                echo "control: $(yaml_q "ipc://$LAB_DIR/control.sock")"
                echo "key: $(yaml_q "$LAB_DIR/keys/coordinator.key")"
                echo "catalog: $(yaml_q "$LAB_DIR/catalog.db")"
                echo "step_timeout_s: 30"
                ! tls_on || echo "tls_ca: $(yaml_q "$(tls_dir)/ca.pem")"
                echo "agents:"
                for ((i = 0; i < LAB_N_HOSTS; i++)); do
                        h=$(host_name "$i")
                        echo "  - id: $h"
                        echo "    url: $(yaml_q "$(agent_url "$i")")"
                        echo "    pubkey: $(yaml_q "$LAB_DIR/keys/$h.pub")"
                        ! tls_on || echo "    server_name: $h"
                done
                echo "groups:"
                echo "  - name: $LAB_GROUP"
                echo "    tiers:"
                for tier in "${LAB_TIERS[@]}"; do
                        members=()
                        for vm in $(state_vms); do
                                [ "$(vm_tier "$vm")" = "$tier" ] && members+=("$vm@$(vm_host "$vm")")
                        done
                        ((${#members[@]})) || continue
                        echo "      - name: $tier"
                        echo "        members: [$(
                                IFS=,
                                echo "${members[*]}" | sed 's/,/, /g'
                        )]"
                done
                echo "    mode: quiesce"
                echo "    lease_s: 30"
        } > "$LAB_DIR/coordinator.yaml"
}

lockstep_bin() { printf '%s/coordinator/lockstep' "$LAB_BUILD"; }
lockstepd_bin() { printf '%s/coordinator/lockstepd' "$LAB_BUILD"; }
agent_bin() { printf '%s/agent/lockstep-agent' "$LAB_BUILD"; }

make_keys() {
        local name
        mkdir -p "$LAB_DIR/keys"
        chmod 0700 "$LAB_DIR/keys"
        if [ ! -x "$(lockstep_bin)" ]; then
                say "keys: skipped ($(lockstep_bin) is not built yet)"
                return 0
        fi
        for name in coordinator $(state_coords) $(state_hosts); do
                "$(lockstep_bin)" keygen --out "$LAB_DIR/keys/$name" > /dev/null ||
                        die "keys: lockstep keygen --out $LAB_DIR/keys/$name failed"
        done
}

agents_start() {
        local h d
        if [ ! -x "$(agent_bin)" ]; then
                say "agents: skipped ($(agent_bin) is not built yet)"
                return 0
        fi
        [ -f "$LAB_DIR/keys/coordinator.pub" ] || {
                say "agents: skipped (no keys: $(lockstep_bin) is not built yet)"
                return 0
        }
        for h in $(state_hosts); do
                d=$(host_dir "$h")
                ip netns exec "$(host_netns "$h")" setsid "$(agent_bin)" -c "$d/agent.yaml" \
                        >> "$d/agent.log" 2>&1 < /dev/null &
                echo $! > "$d/agent.pid"
        done
        sleep 0.3
        for h in $(state_hosts); do
                d=$(host_dir "$h")
                pid_alive "$d/agent.pid" lockstep-agent > /dev/null || {
                        tail -n 5 "$d/agent.log" >&2 || true
                        warn "$h: lockstep-agent exited at start (log: $d/agent.log)"
                        continue
                }
                say "agents: $h: lockstep-agent running in $(host_netns "$h") ($(sed -n 's/^listen: "\(.*\)"$/\1/p' "$d/agent.yaml"))"
        done
}

lockstepd_start() {
        if coords_on; then
                coords_start
                return 0
        fi
        if [ ! -x "$(lockstepd_bin)" ]; then
                say "lockstepd: skipped ($(lockstepd_bin) is not built yet)"
                return 0
        fi
        [ -f "$LAB_DIR/keys/coordinator.key" ] || {
                say "lockstepd: skipped (no keys)"
                return 0
        }
        setsid "$(lockstepd_bin)" -c "$LAB_DIR/coordinator.yaml" >> "$LAB_DIR/logs/lockstepd.log" 2>&1 < /dev/null &
        echo $! > "$LAB_DIR/pids/lockstepd.pid"
        sleep 0.3
        if ! pid_alive "$LAB_DIR/pids/lockstepd.pid" lockstepd > /dev/null; then
                tail -n 5 "$LAB_DIR/logs/lockstepd.log" >&2 || true
                warn "lockstepd exited at start (log: $LAB_DIR/logs/lockstepd.log)"
                return 0
        fi
        say "lockstepd: running (control ipc://$LAB_DIR/control.sock)"
}

lab_up() {
        local i vm tier hi t0 t1 h cache_lock
        need_root "lab up"
        LAB_N_HOSTS=2 LAB_N_VMS=3
        LAB_SEND_MS=${LOCKSTEP_LAB_SEND_MS:-100} LAB_TICK_MS=${LOCKSTEP_LAB_TICK_MS:-100}
        local app_vdb=1 daemons=${LOCKSTEP_LAB_DAEMONS:-1} ncoords=0
        while (($#)); do
                case "$1" in
                --hosts) LAB_N_HOSTS=${2:?--hosts needs a number}; shift 2 ;;
                --vms) LAB_N_VMS=${2:?--vms needs a number}; shift 2 ;;
                --send-ms) LAB_SEND_MS=${2:?}; shift 2 ;;
                --tick-ms) LAB_TICK_MS=${2:?}; shift 2 ;;
                --no-vdb) app_vdb=0; shift ;;
                --no-daemons) daemons=0; shift ;;
                --coordinators) ncoords=${2:?--coordinators needs a number}; shift 2 ;;
                *) die "up: unknown option '$1' (see: deploy/lab/lab help)" ;;
                esac
        done
        if ! [[ $LAB_N_HOSTS =~ ^[0-9]+$ ]] || ((LAB_N_HOSTS < 1 || LAB_N_HOSTS > 26)); then
                die "up: --hosts must be 1..26"
        fi
        if ! [[ $LAB_N_VMS =~ ^[0-9]+$ ]] || ((LAB_N_VMS < 1 || LAB_N_VMS > 30)); then
                die "up: --vms must be 1..30"
        fi
        [[ $LAB_SEND_MS =~ ^[0-9]+$ && $LAB_TICK_MS =~ ^[0-9]+$ ]] || die "up: --send-ms/--tick-ms must be numbers"
        coords_check "$ncoords"
        check_tools
        check_free
        # Unix socket paths are limited to 107 bytes; the longest the lab makes:
        local longest="$LAB_DIR/hosts/host-z/run/libvirt/libvirt-sock-ro"
        ((${#longest} <= 100)) || die "up: LOCKSTEP_LAB_DIR '$LAB_DIR' is too long for unix socket paths (keep it under 50 characters)"
        t0=$(now_ms)
        trap 'rc=$?; ((rc == 0)) || warn "lab up failed; what it made is in $LAB_DIR (console logs under hosts/*/console); clean up with: deploy/lab/lab down"' EXIT

        # Labs in other dirs share the cache: one builds, another waits and reuses.
        mkdir -p "$LAB_CACHE"
        exec {cache_lock}> "$LAB_CACHE/.build.lock"
        flock "$cache_lock"
        image_build
        tools_build
        exec {cache_lock}>&-

        # The marker and the state come first, so that "lab down" can undo a
        # half-finished "lab up" from them.
        mkdir -p "$LAB_DIR"/{tmp,pids,logs,cuts}
        touch "$LAB_DIR/$LAB_MARKER"
        {
                for ((i = 0; i < LAB_N_HOSTS; i++)); do
                        printf 'host %s %s %s\n' "$(host_name "$i")" "$(host_ip "$i")" \
                                "$(host_netns "$(host_name "$i")")"
                done
                vm_layout "$LAB_N_HOSTS" "$LAB_N_VMS" | while read -r vm tier hi; do
                        if [ "$tier" = app ] && ((app_vdb)); then
                                printf 'vm %s %s %s vda,vdb\n' "$vm" "$tier" "$(host_name "$hi")"
                        else
                                printf 'vm %s %s %s vda\n' "$vm" "$tier" "$(host_name "$hi")"
                        fi
                done
                printf 'bridge %s\n' "$LAB_BRIDGE"
                printf 'image %s %s\n' "$LAB_KERNEL" "$LAB_INITRD"
                printf 'tools %s %s\n' "$LAB_RELAY" "$LAB_CHECK"
                if [ "$LAB_TLS" = 0 ]; then echo 'tls off'; else echo 'tls on'; fi
                coords_state "$ncoords"
        } > "$LAB_STATE"

        say "network: bridge $LAB_BRIDGE $LAB_NET_PREFIX.1/24, hosts $(state_hosts | tr '\n' ' ')"
        net_up

        # The first libvirtd alone, so the shared capability cache is written once.
        t1=$(now_ms)
        h=$(host_name 0)
        host_start_libvirt "$h"
        host_wait_libvirt "$h" 120
        for h in $(state_hosts | tail -n +2); do
                host_start_libvirt "$h"
        done
        for h in $(state_hosts | tail -n +2); do
                host_wait_libvirt "$h" 120
        done
        say "libvirt: $LAB_N_HOSTS private libvirtd up in $(($(now_ms) - t1)) ms"

        t1=$(now_ms)
        for vm in $(state_vms); do
                vm_create "$vm"
        done
        say "guests: disks and domains defined in $(($(now_ms) - t1)) ms; booting (TCG)"
        relay_start
        t1=$(now_ms)
        for vm in $(state_vms); do
                vm_start "$vm"
        done
        # Keys, configs and daemons while the guests boot: none of them needs
        # a guest, and TCG boots take most of an up.
        make_tls
        write_configs
        coords_on && coords_write_configs
        make_keys
        if ((daemons)); then
                agents_start
                lockstepd_start
        else
                say "agents, lockstepd: not started (--no-daemons)"
        fi
        local vms
        mapfile -t vms < <(state_vms)
        vms_wait_ready "$LAB_BOOT_TIMEOUT" "${vms[@]}"
        say "guests: all ready in $(($(now_ms) - t1)) ms"
        trap - EXIT
        say "lab up in $(($(now_ms) - t0)) ms: $LAB_N_HOSTS hosts, $LAB_N_VMS VMs ($(for vm in $(state_vms); do printf '%s@%s ' "$vm" "$(vm_host "$vm")"; done))"
        printf '%s\n' "$LAB_DIR"
}

host_stop() { # host
        local h=$1 d vm f pid
        d=$(host_dir "$h")
        stop_pidfile "$d/agent.pid" lockstep-agent "$h: lockstep-agent"
        if pid_alive "$d/libvirtd.pid" libvirtd > /dev/null && [ -S "$(host_sock "$h")" ]; then
                # destroy waits for QEMU to exit (over a second under TCG): all at once.
                for vm in $(hvirsh "$h" list --name 2>/dev/null); do
                        hvirsh "$h" destroy "$vm" > /dev/null 2>&1 &
                done
                wait
                for vm in $(hvirsh "$h" list --all --name 2>/dev/null); do
                        hvirsh "$h" undefine "$vm" --snapshots-metadata > /dev/null 2>&1 ||
                                warn "$vm@$h: undefine failed"
                done
        fi
        stop_pidfile "$d/libvirtd.pid" libvirtd "$h: libvirtd"
        stop_pidfile "$d/virtlogd.pid" virtlogd "$h: virtlogd"
        # QEMU outlives a libvirtd that died: find it by libvirt's own pid files.
        for f in "$d"/run/libvirt/qemu/*.pid; do
                [ -e "$f" ] || continue
                pid=$(pid_alive "$f" qemu-system) || continue
                warn "$h: killing leftover QEMU pid $pid ($f)"
                kill -KILL "$pid" 2>/dev/null || true
        done
}

lab_down() {
        local h t0 ns
        need_root "lab down"
        t0=$(now_ms)
        if [ ! -e "$LAB_DIR/$LAB_MARKER" ]; then
                if [ -e "$LAB_DIR" ]; then
                        die "$LAB_DIR has no $LAB_MARKER: not a lab dir, leaving it alone"
                fi
                say "down: no lab in $LAB_DIR"
                reap_foreign_lab
                return 0
        fi
        stop_pidfile "$LAB_DIR/pids/lockstepd.pid" lockstepd lockstepd
        coords_stop
        stop_pidfile "$LAB_DIR/pids/relay.pid" lab-relay lab-relay 5
        # Hosts in parallel: each one's guests take a while to die.
        for h in $(state_hosts); do
                host_stop "$h" &
        done
        wait
        for h in $(state_hosts) $(state_coords); do
                netns_remove "$h"
        done
        if grep -q "^bridge $LAB_BRIDGE\$" "$LAB_STATE" 2>/dev/null &&
                ip link show "$LAB_BRIDGE" > /dev/null 2>&1; then
                ip link del "$LAB_BRIDGE" || warn "ip link del $LAB_BRIDGE failed"
        fi
        # File systems mounted under the lab (small image dirs, a test's) go
        # first, deepest first; a loop mount's device goes with it.
        findmnt -rn -o TARGET | awk -v p="$LAB_DIR/" 'index($0, p) == 1' | sort -r |
                while read -r m; do umount "$m" || umount -l "$m" || warn "umount $m failed"; done
        rm -rf --one-file-system "$LAB_DIR"
        reap_foreign_lab
        say "lab down in $(($(now_ms) - t0)) ms"
}

lab_status() {
        local h d vm state ga rc=0
        if [ ! -e "$LAB_DIR/$LAB_MARKER" ]; then
                echo "no lab in $LAB_DIR"
                return 3
        fi
        echo "lab: $LAB_DIR"
        if pid_alive "$LAB_DIR/pids/relay.pid" lab-relay > /dev/null; then
                echo "relay: running"
        else
                echo "relay: NOT running"
                rc=1
        fi
        if coords_on; then
                coords_status
        elif [ -x "$(lockstepd_bin)" ]; then
                pid_alive "$LAB_DIR/pids/lockstepd.pid" lockstepd > /dev/null &&
                        echo "lockstepd: running" || echo "lockstepd: not running"
        else
                echo "lockstepd: not built"
        fi
        for h in $(state_hosts); do
                d=$(host_dir "$h")
                printf 'host %s: %s netns %s, libvirtd %s, agent %s\n' "$h" \
                        "$(state_host_ip "$h")" \
                        "$(ip netns list | awk '{ print $1 }' | grep -qx "$(host_netns "$h")" && echo up || echo MISSING)" \
                        "$(pid_alive "$d/libvirtd.pid" libvirtd > /dev/null && echo running || echo DOWN)" \
                        "$(pid_alive "$d/agent.pid" lockstep-agent > /dev/null && echo running || echo 'not running')"
        done
        for vm in $(state_vms); do
                h=$(vm_host "$vm")
                state=$(hvirsh "$h" domstate "$vm" 2>/dev/null || echo unknown)
                ga=no
                ga_ping "$vm" > /dev/null && ga=yes
                printf 'vm %s@%s (%s, %s): %s, guest agent %s, disks %s\n' "$vm" "$h" \
                        "$(vm_tier "$vm")" "$(vm_disks "$vm" | tr ' ' ,)" "${state:-unknown}" "$ga" \
                        "$(hvirsh "$h" domblklist "$vm" 2>/dev/null | awk '{ printf "%s=%s ", $1, $2 }')"
                [ "$state" = running ] || rc=1
        done
        return $rc
}
