# lab cuts: taking group snapshots with plain virsh (the baselines lockstep is
# measured against), recording which image holds each member's disk, and checking
# a cut with lab-check.

lab_tools() {
        LAB_RELAY=$(awk '$1 == "tools" { print $2 }' "$LAB_STATE" 2>/dev/null || true)
        LAB_CHECK=$(awk '$1 == "tools" { print $3 }' "$LAB_STATE" 2>/dev/null || true)
        if [ -z "$LAB_CHECK" ] || [ ! -x "$LAB_CHECK" ]; then
                tools_build
        fi
}

need_lab() {
        if [ ! -e "$LAB_DIR/$LAB_MARKER" ] || ! state_exists; then
                die "no lab in $LAB_DIR (run: deploy/lab/lab up)"
        fi
}

# "disk path" lines of a VM's current (active) images.
vm_active_disks() { # vm
        hvirsh "$(vm_host "$1")" domblklist "$1" | awk 'NF == 2 { print $1, $2 }'
}

new_cut_dir() { # kind -> prints the cut name; creates its directory
        local kind=$1 name
        name=$kind-$(date +%Y%m%d-%H%M%S)
        while [ -e "$LAB_DIR/cuts/$name" ]; do
                name=$kind-$(date +%Y%m%d-%H%M%S)-$RANDOM
        done
        mkdir -p "$LAB_DIR/cuts/$name"
        printf '%s' "$name"
}

# Takes one external disk-only snapshot of a VM into new overlays named after the
# cut, and records in the manifest the images that now hold the cut (the old
# active images, which become the overlays' backing files).
snapshot_vm() { # cut vm extra-virsh-flags...
        local cut=$1 vm=$2 h d disk path specs=()
        shift 2
        h=$(vm_host "$vm")
        d=$(host_dir "$h")
        while read -r disk path; do
                specs+=(--diskspec "$disk,snapshot=external,file=$d/images/$vm-$disk.$cut.qcow2")
                printf 'member %s %s %s %s\n' "$vm" "$h" "$disk" "$path" >> "$LAB_DIR/cuts/$cut/manifest"
        done < <(vm_active_disks "$vm")
        ((${#specs[@]})) || die "$vm@$h: no disks found (virsh domblklist)"
        hvirsh "$h" snapshot-create-as "$vm" --name "$cut" --disk-only --atomic "$@" "${specs[@]}" > /dev/null
}

cut_images() { # cut -> "vm=image" arguments for lab-check
        awk '$1 == "member" { print $2 "=" $5 }' "$LAB_DIR/cuts/$1/manifest"
}

# Checks a recorded cut; prints lab-check's report (or its JSON, with the cut's
# name, method and timings added in front) and returns lab-check's exit code.
check_cut() { # cut json(0/1) [lab-check options...]
        local cut=$1 json=$2 args=() out rc=0 method timings
        shift 2
        mapfile -t args < <(cut_images "$cut")
        ((${#args[@]})) || die "cut $cut: empty manifest"
        args=("$@" "${args[@]}")
        if ((json)); then
                out=$("$LAB_CHECK" --json "${args[@]}") || rc=$?
                method=$(awk '$1 == "method" { print $2 }' "$LAB_DIR/cuts/$cut/manifest")
                timings=$(awk '$1 == "timing" { printf "%s\"%s\":%s", (n++ ? "," : ""), $2, $3 + 0 }' \
                        "$LAB_DIR/cuts/$cut/manifest")
                printf '{"cut":"%s","method":"%s","timings_ms":{%s},%s\n' "$cut" "${method:-}" \
                        "$timings" "${out#\{}"
        else
                "$LAB_CHECK" "${args[@]}" || rc=$?
        fi
        return $rc
}

timing() { # cut key value
        printf 'timing %s %s\n' "$2" "$3" >> "$LAB_DIR/cuts/$1/manifest"
}

# The way users do it today: virsh snapshot-create-as --quiesce one VM after the
# other. Each VM is consistent by itself, but the VMs are cut at different times.
lab_sequential_cut() {
        local json=0 cut vm t0 t1 tstart rc=0 summary=()
        [ "${1:-}" = --json ] && json=1
        need_root "lab sequential-cut"
        need_lab
        lab_tools
        cut=$(new_cut_dir seq)
        echo "method sequential-virsh-quiesce" >> "$LAB_DIR/cuts/$cut/manifest"
        tstart=$(now_ms)
        for vm in $(state_vms); do
                t0=$(now_ms)
                snapshot_vm "$cut" "$vm" --quiesce ||
                        die "$vm@$(vm_host "$vm"): snapshot-create-as --quiesce failed (cut $cut)"
                t1=$(now_ms)
                # When virsh returns, this VM is thawed again: a bound for
                # lab check --not-after (the later VMs' images go past it).
                printf 'released %s %s\n' "$vm" "$(date +%s%6N)" >> "$LAB_DIR/cuts/$cut/manifest"
                timing "$cut" "$vm.snapshot_ms" $((t1 - t0))
                summary+=("$vm $((t1 - t0)) ms")
        done
        timing "$cut" span_ms $(($(now_ms) - tstart))
        say "sequential cut $cut: $(IFS=,; echo "${summary[*]}" | sed 's/,/, /g') (freeze+snapshot+thaw each); span $(($(now_ms) - tstart)) ms"
        check_cut "$cut" "$json" || rc=$?
        # Orphans are what this method is expected to produce; only damage fails.
        ((rc == 4)) && rc=0
        return $rc
}

# The baseline the product is compared with: freeze every VM first, then snapshot
# each and thaw it at once, as lockstep's protocol does, but driven by plain virsh
# from one place, without leases, votes or rollback.
lab_group_cut_virsh() {
        local json=0 cut vm t0 t1 tstart tfrozen rc=0 frozen=() f
        local -A fstart=()
        [ "${1:-}" = --json ] && json=1
        need_root "lab group-cut-virsh"
        need_lab
        lab_tools
        cut=$(new_cut_dir group)
        echo "method group-virsh-freeze-all" >> "$LAB_DIR/cuts/$cut/manifest"
        thaw_all() {
                for f in "${frozen[@]}"; do
                        hvirsh "$(vm_host "$f")" domfsthaw "$f" > /dev/null 2>&1 || true
                done
        }
        tstart=$(now_ms)
        for vm in $(state_vms); do
                t0=$(now_ms)
                fstart[$vm]=$t0
                if ! hvirsh "$(vm_host "$vm")" domfsfreeze "$vm" > /dev/null; then
                        thaw_all
                        die "$vm@$(vm_host "$vm"): domfsfreeze failed; thawed ${frozen[*]:-nothing} (cut $cut abandoned)"
                fi
                frozen+=("$vm")
                timing "$cut" "$vm.freeze_ms" $(($(now_ms) - t0))
        done
        tfrozen=$(now_ms)
        for vm in $(state_vms); do
                t0=$(now_ms)
                if ! snapshot_vm "$cut" "$vm"; then
                        thaw_all
                        die "$vm@$(vm_host "$vm"): snapshot-create-as failed while all were frozen (cut $cut incomplete)"
                fi
                t1=$(now_ms)
                hvirsh "$(vm_host "$vm")" domfsthaw "$vm" > /dev/null ||
                        warn "$vm@$(vm_host "$vm"): domfsthaw failed"
                timing "$cut" "$vm.snapshot_ms" $((t1 - t0))
                timing "$cut" "$vm.thaw_ms" $(($(now_ms) - t1))
                timing "$cut" "$vm.frozen_ms" $(($(now_ms) - ${fstart[$vm]}))
        done
        timing "$cut" all_frozen_after_ms $((tfrozen - tstart))
        local window=$(($(now_ms) - tstart)) per=()
        timing "$cut" window_ms "$window"
        for vm in $(state_vms); do
                per+=("$vm $(awk -v v="$vm" '$1 == "timing" {
                        split($2, k, "."); if (k[1] == v) t[k[2]] = $3 }
                        END { printf "%s/%s/%s", t["freeze_ms"], t["snapshot_ms"], t["thaw_ms"] }' \
                        "$LAB_DIR/cuts/$cut/manifest")")
        done
        say "group cut $cut: all frozen after $((tfrozen - tstart)) ms; freeze/snapshot/thaw ms: $(IFS=,; echo "${per[*]}" | sed 's/,/, /g'); window $window ms"
        check_cut "$cut" "$json" || rc=$?
        return $rc
}

# The product: one cut through lockstepd and the agents (lockstep snapshot create),
# then the same checks. Needs the lab to have been brought up with them built.
lab_lockstep_cut() { # [--json] [--from FILE]
        local json=0 out rc=0 id state cut per=() bound from=""
        while (($#)); do
                case "$1" in
                --json) json=1 ;;
                --from) from=${2:?--from needs the file of a lockstep snapshot create --json}; shift ;;
                *) die "lockstep-cut: unknown argument '$1'" ;;
                esac
                shift
        done
        need_root "lab lockstep-cut"
        need_lab
        lab_tools
        [ -x "$(lockstep_bin)" ] || die "lockstep-cut: $(lockstep_bin) is not built"
        # --from checks a cut taken before: no lockstepd needed. With
        # coordinators, the lab's coordinator.yaml is c1's.
        if [ -n "$from" ]; then
                :
        elif coords_on; then
                pid_alive "$(coord_pidfile c1)" lockstepd > /dev/null ||
                        die "lockstep-cut: c1's lockstepd does not run (deploy/lab/lab coord-start c1)"
        else
                pid_alive "$LAB_DIR/pids/lockstepd.pid" lockstepd > /dev/null ||
                        die "lockstep-cut: lockstepd does not run in this lab (built after lab up? run lab down, lab up)"
        fi
        command -v jq > /dev/null || die "lockstep-cut: jq is missing (run: deploy/lab/lab deps)"
        # --from: a cut already taken (a fault test's), only checked here.
        if [ -n "$from" ]; then
                out=$(cat "$from")
        else
                out=$("$(lockstep_bin)" -c "$LAB_DIR/coordinator.yaml" snapshot create "$LAB_GROUP" --json) || rc=$?
        fi
        id=$(jq -r '.id // empty' <<< "$out" 2>/dev/null || true)
        state=$(jq -r '.state // empty' <<< "$out" 2>/dev/null || true)
        if ((rc != 0)) || [ "$state" != committed ]; then
                printf '%s\n' "$out" >&2
                die "lockstep-cut: lockstep snapshot create $LAB_GROUP: exit $rc, state '${state:-none}' ($(jq -r '.reason // empty' <<< "$out" 2>/dev/null || true))"
        fi
        [[ $id =~ ^[A-Za-z0-9._-]+$ ]] || die "lockstep-cut: unexpected cut id '$id'"
        cut=$id
        mkdir -p "$LAB_DIR/cuts/$cut"
        printf '%s\n' "$out" > "$LAB_DIR/cuts/$cut/lockstep.json"
        {
                echo "method lockstep-$(jq -r .mode <<< "$out")"
                jq -r '.members[] | .vm as $v | .agent as $a | .disks[] | "member \($v) \($a) \(.disk) \(.image)"' <<< "$out"
                jq -r '.members[] | "timing \(.vm).freeze_ms \(.freeze_ms)\ntiming \(.vm).snapshot_ms \(.snapshot_ms)\ntiming \(.vm).thaw_ms \(.thaw_ms)\ntiming \(.vm).frozen_ms \(.frozen_ms)"' <<< "$out"
                jq -r '"timing window_ms \(.group_window_ms)\ntiming freeze_skew_ms \(.freeze_skew_ms)\ntiming max_frozen_ms \(.max_frozen_ms)"' <<< "$out"
        } > "$LAB_DIR/cuts/$cut/manifest"
        # The first member to run again bounds what any image may hold.
        bound=$(jq -r '[.members[].thawed_at_us] | min' <<< "$out")
        echo "bound $bound" >> "$LAB_DIR/cuts/$cut/manifest"
        mapfile -t per < <(jq -r '.members[] | "\(.vm) \(.freeze_ms|floor)/\(.snapshot_ms|floor)/\(.thaw_ms|floor)"' <<< "$out")
        say "lockstep cut $cut: committed; freeze/snapshot/thaw ms: $(IFS=,; echo "${per[*]}" | sed 's/,/, /g'); window $(jq -r '.group_window_ms|floor' <<< "$out") ms, freeze skew $(jq -r '.freeze_skew_ms|floor' <<< "$out") ms"
        rc=0
        check_cut "$cut" "$json" --not-after "$bound" || rc=$?
        return $rc
}

lab_check() {
        local json=0 args=() opts=() cut=""
        need_root "lab check" # qemu-img -U on images of root's QEMU, e2fsck on copies
        while (($#)); do
                case "$1" in
                --json) json=1 ;;
                --not-after)
                        opts+=(--not-after "${2:?--not-after needs Unix microseconds}")
                        shift
                        ;;
                --cut) cut=${2:?--cut needs a name}; shift ;;
                *) args+=("$1") ;;
                esac
                shift
        done
        if [ -n "$cut" ]; then
                need_lab
                lab_tools
                [ -f "$LAB_DIR/cuts/$cut/manifest" ] || die "check: no cut '$cut' in $LAB_DIR/cuts"
                check_cut "$cut" "$json" "${opts[@]}"
                return
        fi
        ((${#args[@]})) || die "check: give images (IMAGE or VM=IMAGE) or --cut NAME"
        if state_exists; then lab_tools; else tools_build; fi
        if ((json)); then
                "$LAB_CHECK" --json "${opts[@]}" "${args[@]}"
        else
                "$LAB_CHECK" "${opts[@]}" "${args[@]}"
        fi
}

# Reads a running VM's current images (crash-consistent copy, journal replayed on
# the copy) and reports its log: how tests watch a guest's writes from outside.
lab_peek() { # [--json] vm
        local json=0 vm args=() disk path
        [ "${1:-}" = --json ] && {
                json=1
                shift
        }
        vm=${1:?peek needs a VM name}
        need_root "lab peek"
        need_lab
        lab_tools
        [ -n "$(vm_host "$vm")" ] || die "peek: no VM '$vm' in this lab"
        while read -r disk path; do
                args+=("$vm=$path")
        done < <(vm_active_disks "$vm")
        if ((json)); then
                "$LAB_CHECK" --live --json "${args[@]}"
        else
                "$LAB_CHECK" --live "${args[@]}"
        fi
}
