#!/bin/bash
# lab test "soak": a group that lives long. The lab's group on 2 hosts is cut
# N times (default 40) with retention keep_last 3 applied by "lockstep prune"
# after each cut; halfway, a revert and its undo, then the branch the undo left
# behind (the reverted-to state) is deleted. Every cut commits with 0 orphans
# and intact images; every disk's backing chain stays within keep_last + 2
# images; at the end the image directories hold exactly the files that the
# catalog's cuts and the VMs' chains name (nothing leaked, nothing missing) and
# every kept cut's images pass qemu-img check and e2fsck -fn.
#
#   soak.sh [--cuts N] [--check-every K] [--out FILE.jsonl]
# --out writes one JSON object per cut: {cut, id, window_ms, max_frozen_ms,
# depth (longest chain), files (image files), prune_ms, orphans}. bench/soak.sh
# runs this for long soaks and plots the result.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CUTS=40 EVERY=1 OUT="" KEEP=3
while (($#)); do
        case "$1" in
        --cuts) CUTS=$2; shift ;;
        --check-every) EVERY=$2; shift ;;
        --out) OUT=$2; shift ;;
        *) echo "usage: soak.sh [--cuts N] [--check-every K] [--out FILE.jsonl]" >&2; exit 2 ;;
        esac
        shift
done
((CUTS >= 4 && EVERY >= 1)) || t_fail "--cuts must be at least 4 and --check-every at least 1"

t_up_product --vms 4
VMS=$(awk '$1 == "vm" { print $2 }' "$D/lab.state" | tr '\n' ' ')
# Every disk of every VM as "vm disk path", from libvirt's view.
disks() {
        local vm
        for vm in $VMS; do
                "$LAB" virsh "$vm" domblklist "$vm" | awk -v v="$vm" '$1 ~ /^vd/ { print v, $1, $2 }'
        done
}
chain_of() { qemu-img info -U --backing-chain --output=json "$1" | jq -r '.[].filename'; }
max_depth() {
        local vm disk path d max=0
        while read -r vm disk path; do
                d=$(chain_of "$path" | wc -l)
                ((d > max)) && max=$d
        done < <(disks)
        echo "$max"
}
image_files() { find "$D"/hosts/*/images -maxdepth 1 -type f | sort; }
kept_cuts() { ls_cli snapshot list shop --json | jq -r '.[] | select(.kind == "snapshot" and .state == "committed") | .id'; }

echo "    retention: {keep_last: $KEEP}" >> "$D/coordinator.yaml"
ls_cli reload > /dev/null || t_fail "lockstepd refused the retention setting"
for vm in $VMS; do
        for _ in $(seq 1 60); do [ "$(t_records "$vm")" -gt 5 ] 2> /dev/null && break; sleep 0.5; done
done
[ -z "$OUT" ] || : > "$OUT"
first_ms=() last_ms=()
deepest=0
half=$((CUTS / 2))

for i in $(seq 1 "$CUTS"); do
        rc=0
        if ((i % EVERY == 0 || i == CUTS)); then
                j=$("$LAB" lockstep-cut --json 2>> "$T_LOG") || rc=$?
                [ -n "$j" ] && jq -e . > /dev/null 2>&1 <<< "$j" || { tail -n 20 "$T_LOG"; t_fail "cut $i: no result (exit $rc)"; }
                o=$(jq -r '.orphans' <<< "$j")
                ((rc == 0 && o == 0)) || t_fail "cut $i: $o orphans ($(jq -c .orphan_ids <<< "$j")), exit $rc"
                [ "$(jq -r '.intact and .in_time' <<< "$j")" = true ] || t_fail "cut $i: not intact or a record after the first thaw"
                [ "$(jq -r '[.members[].disks[].fsck] | all(. == "clean")' <<< "$j")" = true ] || t_fail "cut $i: an ext4 is not clean"
                id=$(ls_cli snapshot list shop --json | jq -r '[.[] | select(.kind == "snapshot")][0].id')
                r=$(ls_cli snapshot show "$id" --json)
        else
                o=0
                r=$(ls_cli snapshot create shop --json) || rc=$?
                ((rc == 0)) || t_fail "cut $i: exit $rc: $(jq -r .reason <<< "$r")"
                id=$(jq -r .id <<< "$r")
        fi
        depth=$(max_depth)
        ((depth > deepest)) && deepest=$depth
        ((depth <= KEEP + 2)) || t_fail "cut $i: a backing chain is $depth images long, more than keep_last + 2 = $((KEEP + 2))"
        t0=$(date +%s%3N)
        ls_cli prune shop > "$T_LOG.prune" || { cat "$T_LOG.prune"; t_fail "cut $i: prune failed"; }
        prune_ms=$(($(date +%s%3N) - t0))
        files=$(image_files | wc -l)
        w=$(jq -r .group_window_ms <<< "$r")
        [ -z "$OUT" ] || jq -nc --argjson cut "$i" --arg id "$id" --argjson w "$w" --argjson f "$(jq .max_frozen_ms <<< "$r")" \
                --argjson depth "$depth" --argjson files "$files" --argjson prune "$prune_ms" --argjson o "$o" \
                '{cut: $cut, id: $id, window_ms: $w, max_frozen_ms: $f, depth: $depth, files: $files, prune_ms: $prune, orphans: $o}' >> "$OUT"
        ((i <= 10)) && first_ms+=("$w")
        ((i > CUTS - 10)) && last_ms+=("$w")

        if ((i == half)); then
                # Halfway: revert to the second newest kept cut, undo it, then
                # delete the branch the undo left (the reverted-to state).
                target=$(kept_cuts | sed -n 2p)
                [ -n "$target" ] || t_fail "no second kept cut to revert to"
                rv=$(ls_cli snapshot revert "$target" --yes --json) || t_fail "revert to $target: $(jq -r .reason <<< "$rv")"
                R=$(jq -r .id <<< "$rv")
                un=$(ls_cli snapshot revert --undo "$R" --yes --json) || t_fail "undo of $R: $(jq -r .reason <<< "$un")"
                U=$(jq -r .id <<< "$un")
                mapfile -t tops < <(ls_cli snapshot show "$U" --json | jq -r '.members[].disks[].image')
                ls_cli snapshot delete "$U" > "$T_LOG.del" || { cat "$T_LOG.del"; t_fail "delete of the branch of $U failed"; }
                for f in "${tops[@]}"; do [ ! -e "$f" ] || t_fail "the deleted branch's file $f is still there"; done
                [ "$(ls_cli snapshot show "$R" --json | jq -r .state)/$(ls_cli snapshot show "$U" --json | jq -r .state)" = undone/deleted ] ||
                        t_fail "after the undo and the branch delete, the revert and the undo are not undone/deleted"
                for vm in $VMS; do
                        for _ in $(seq 1 180); do [ "$(t_records "$vm")" -gt 5 ] 2> /dev/null && break; sleep 0.5; done
                done
                t_ok "cut $i: reverted to $target, undone, and the branch the undo kept deleted (${#tops[@]} file(s))"
        fi
done
t_ok "$CUTS cuts committed with 0 orphans ($(((CUTS + EVERY - 1) / EVERY)) checked), chains at most $deepest images (keep_last $KEEP + 2 = $((KEEP + 2)))"

# Nothing leaked, nothing missing: the files on disk are exactly the chains
# the VMs run on, and every kept cut's image is one of them.
mapfile -t kept < <(kept_cuts)
((${#kept[@]} == KEEP)) || t_fail "${#kept[@]} cuts kept, not $KEEP"
{
        while read -r vm disk path; do chain_of "$path"; done < <(disks)
} | sort -u > "$T_LOG.want"
image_files > "$T_LOG.have"
diff "$T_LOG.want" "$T_LOG.have" > "$T_LOG.diff" || { cat "$T_LOG.diff"; t_fail "image files differ from the VMs' chains (< missing, > leaked)"; }
args=()
for id in "${kept[@]}"; do
        while read -r vm img; do
                grep -qxF "$img" "$T_LOG.have" || t_fail "cut $id: its image $img is missing"
                args+=("$vm=$img")
        done < <(ls_cli snapshot show "$id" --json | jq -r '.members[] | .vm as $v | .disks[] | "\($v) \(.image)"')
        for a in "${args[@]}"; do qemu-img check -U -q "${a#*=}" || t_fail "cut $id: ${a#*=} fails qemu-img check"; done
        out=$("$LAB" check --json "${args[@]}") || { jq . <<< "$out"; t_fail "cut $id: its images fail the checks"; }
        [ "$(jq -r '[.members[].disks[].fsck] | all(. == "clean")' <<< "$out")/$(jq -r .orphans <<< "$out")" = true/0 ] ||
                t_fail "cut $id: e2fsck or orphans: $out"
        args=()
done
t_ok "at the end: $(wc -l < "$T_LOG.have") image files, exactly the VMs' chains; the $KEEP kept cuts' images pass qemu-img check and e2fsck -fn, 0 orphans"
t_info "group window, first 10 cuts: $(printf '%s\n' "${first_ms[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms median; last 10: $(printf '%s\n' "${last_ms[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms median"
