# lab coords: "up --coordinators 3": three lab hosts of their own (c1, c2, c3), each
# with one member of an etcd cluster (TLS between peers and to clients) and one
# lockstepd in high-availability mode, its catalog in that etcd, forwarding its
# followers' requests to the leader over TLS (port 7420).

LAB_ETCD=${LOCKSTEP_LAB_ETCD:-/usr/bin/etcd}
LAB_ETCD_CLIENT_PORT=2379
LAB_ETCD_PEER_PORT=2380
LAB_COORD_PEER_PORT=7420
# etcd's defaults (100 ms heartbeat, 1 s election) flap on 2 shared cores under
# TCG guests: 250 ms and 2.5 s keep one etcd leader through the tests' load.
LAB_ETCD_HEARTBEAT_MS=${LOCKSTEP_LAB_ETCD_HEARTBEAT_MS:-250}
LAB_ETCD_ELECTION_MS=${LOCKSTEP_LAB_ETCD_ELECTION_MS:-2500}
# The leader's lease (ha.lease_ttl_s): the issue's 5 s.
LAB_COORD_TTL_S=${LOCKSTEP_LAB_COORD_TTL_S:-5}

# Coordinators are c1, c2, ... at .101, .102, ... (hosts stop at .27).
coord_name() { printf 'c%d' $(($1 + 1)); }
coord_ip() { printf '%s.%d' "$LAB_NET_PREFIX" $(($1 + 101)); }
coord_dir() { printf '%s/coords/%s' "$LAB_DIR" "$1"; }
state_coords() { awk '$1 == "coord" { print $2 }' "$LAB_STATE" 2> /dev/null || true; }
state_coord_ip() { awk -v c="$1" '$1 == "coord" && $2 == c { print $3 }' "$LAB_STATE"; }
coords_on() { [ -n "$(state_coords)" ]; }
coord_yaml() { printf '%s/coordinator.yaml' "$(coord_dir "$1")"; }
etcd_pidfile() { printf '%s/pids/etcd-%s.pid' "$LAB_DIR" "$1"; }
coord_pidfile() { printf '%s/pids/lockstepd-%s.pid' "$LAB_DIR" "$1"; }
etcd_url() { printf 'https://%s:%s' "$(state_coord_ip "$1")" "$LAB_ETCD_CLIENT_PORT"; }

# The state lines of N coordinators (written with the hosts').
coords_state() { # n
        local i c
        for ((i = 0; i < $1; i++)); do
                c=$(coord_name "$i")
                printf 'coord %s %s %s\n' "$c" "$(coord_ip "$i")" "$(host_netns "$c")"
        done
}

coords_check() { # n
        (($1 == 0)) && return 0
        (($1 == 3)) || die "up: --coordinators must be 3 (an etcd cluster of three) or left out"
        [ -x "$LAB_ETCD" ] || die "up: --coordinators needs etcd ($LAB_ETCD; Debian: apt-get install etcd-server)"
        [ "$LAB_TLS" != 0 ] || die "up: --coordinators needs the lab's TLS (LOCKSTEP_LAB_TLS=1): etcd's peers talk TLS"
}

# etcd member c of the cluster, in c's namespace: TLS to peers (both ends
# verified against the lab CA) and to clients (client certificates required).
etcd_start() { # coord
        local c=$1 d t cluster="" x
        d=$(coord_dir "$c")
        t=$(tls_dir)
        for x in $(state_coords); do
                cluster+="${cluster:+,}$x=https://$(state_coord_ip "$x"):$LAB_ETCD_PEER_PORT"
        done
        mkdir -p "$d/etcd"
        chmod 0700 "$d/etcd"
        ip netns exec "$(host_netns "$c")" setsid "$LAB_ETCD" --name "$c" --data-dir "$d/etcd" \
                --listen-client-urls "$(etcd_url "$c")" --advertise-client-urls "$(etcd_url "$c")" \
                --listen-peer-urls "https://$(state_coord_ip "$c"):$LAB_ETCD_PEER_PORT" \
                --initial-advertise-peer-urls "https://$(state_coord_ip "$c"):$LAB_ETCD_PEER_PORT" \
                --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token lockstep-lab \
                --heartbeat-interval "$LAB_ETCD_HEARTBEAT_MS" --election-timeout "$LAB_ETCD_ELECTION_MS" \
                --cert-file "$t/$c.pem" --key-file "$t/$c.key" --trusted-ca-file "$t/ca.pem" --client-cert-auth \
                --peer-cert-file "$t/$c.pem" --peer-key-file "$t/$c.key" --peer-trusted-ca-file "$t/ca.pem" \
                --peer-client-cert-auth --logger zap --log-outputs stderr --log-level warn \
                >> "$d/etcd.log" 2>&1 < /dev/null &
        echo $! > "$(etcd_pidfile "$c")"
}

# Whether c's etcd member answers as part of a cluster with a leader.
etcd_healthy() { # coord
        local c=$1 t
        t=$(tls_dir)
        ip netns exec "$(host_netns "$c")" curl -sf --max-time 2 --cacert "$t/ca.pem" --cert "$t/$c.pem" \
                --key "$t/$c.key" "$(etcd_url "$c")/health" 2> /dev/null | grep -q '"health":"true"'
}

etcd_wait() { # seconds coord...
        local secs=$1 c i
        shift
        for c in "$@"; do
                for ((i = 0; i < secs * 5; i++)); do
                        etcd_healthy "$c" && break
                        pid_alive "$(etcd_pidfile "$c")" etcd > /dev/null || {
                                tail -n 5 "$(coord_dir "$c")/etcd.log" >&2 || true
                                die "$c: etcd exited (log: $(coord_dir "$c")/etcd.log)"
                        }
                        sleep 0.2
                done
                ((i < secs * 5)) || die "$c: etcd not healthy within ${secs}s (log: $(coord_dir "$c")/etcd.log)"
        done
}

# coordinator.yaml of c: the lab's, with c's key, control socket and counter,
# no SQLite catalog, and the ha: section.
coords_write_configs() {
        local c d t x eps=""
        t=$(tls_dir)
        for x in $(state_coords); do
                eps+="${eps:+, }$(yaml_q "$(etcd_url "$x")")"
        done
        for c in $(state_coords); do
                d=$(coord_dir "$c")
                mkdir -p "$d"
                {
                        echo "# lockstep lab: coordinator $c (network namespace $(host_netns "$c")), one of a cluster."
                        sed -e '/^# lockstep lab: coordinator/d' -e '/^catalog:/d' \
                                -e "s|^control: .*|control: $(yaml_q "ipc://$d/control.sock")|" \
                                -e "s|^key: .*|key: $(yaml_q "$LAB_DIR/keys/$c.key")|" "$LAB_DIR/coordinator.yaml"
                        echo "counter_file: $(yaml_q "$d/counter")"
                        echo "ha:"
                        echo "  name: $c"
                        echo "  etcd: [$eps]"
                        echo "  etcd_ca: $(yaml_q "$t/ca.pem")"
                        echo "  etcd_cert: $(yaml_q "$t/$c.pem")"
                        echo "  etcd_key: $(yaml_q "$t/$c.key")"
                        echo "  prefix: /lockstep/"
                        echo "  lease_ttl_s: $LAB_COORD_TTL_S"
                        # A follower hands the CLI's requests to the leader.
                        echo "  listen: $(yaml_q "tls+tcp://$(state_coord_ip "$c"):$LAB_COORD_PEER_PORT")"
                        echo "  tls_cert: $(yaml_q "$t/$c.pem")"
                        echo "  tls_key: $(yaml_q "$t/$c.key")"
                        echo "  tls_ca: $(yaml_q "$t/ca.pem")"
                        echo "  coordinators:"
                        for x in $(state_coords); do
                                echo "    - name: $x"
                                echo "      pubkey: $(yaml_q "$LAB_DIR/keys/$x.pub")"
                        done
                } > "$d/coordinator.yaml.new"
        done
        for c in $(state_coords); do
                mv "$(coord_dir "$c")/coordinator.yaml.new" "$(coord_yaml "$c")"
        done
        # The lab's own commands (lockstep-cut, demo) talk to c1, which leads
        # or forwards.
        cp "$(coord_yaml c1)" "$LAB_DIR/coordinator.yaml"
}

# Starts lockstepd of c in c's namespace, optionally with environment settings
# (LOCKSTEP_FAILPOINT_DIR=...), and waits until its control socket answers.
coord_start() { # coord [VAR=value...]
        local c=$1 d
        shift
        d=$(coord_dir "$c")
        rm -f "$d/control.sock"
        ip netns exec "$(host_netns "$c")" env "$@" setsid "$(lockstepd_bin)" -c "$d/coordinator.yaml" \
                >> "$d/lockstepd.log" 2>&1 < /dev/null &
        echo $! > "$(coord_pidfile "$c")"
}

# Until c's lockstepd answers cluster status (it says its role even when etcd
# is slow to answer it: exit 1 then).
coord_wait() { # seconds coord
        local i j alive=1
        for ((i = 0; i < $1 * 10; i++)); do
                j=$("$(lockstep_bin)" -c "$(coord_yaml "$2")" cluster status --json 2> "$LAB_DIR/logs/coord-wait.err") || true
                [ -n "$(jq -r '.role // empty' <<< "${j:-{\}}" 2> /dev/null)" ] && return 0
                pid_alive "$(coord_pidfile "$2")" lockstepd > /dev/null || { alive=0; break; }
                sleep 0.1
        done
        tail -n 5 "$(coord_dir "$2")/lockstepd.log" >&2 || true
        ((alive)) || die "$2: lockstepd exited (log: $(coord_dir "$2")/lockstepd.log)"
        die "$2: lockstepd runs but does not answer within $1 s: $(head -c 300 "$LAB_DIR/logs/coord-wait.err") (log: $(coord_dir "$2")/lockstepd.log)"
}

coords_start() {
        local c
        [ -x "$(lockstepd_bin)" ] || {
                say "coordinators: skipped ($(lockstepd_bin) is not built yet)"
                return 0
        }
        for c in $(state_coords); do
                etcd_start "$c"
        done
        # shellcheck disable=SC2046
        etcd_wait 60 $(state_coords)
        say "etcd: a cluster of $(state_coords | wc -l) ($(state_coords | tr '\n' ' ')), TLS between peers and to clients, heartbeat ${LAB_ETCD_HEARTBEAT_MS} ms, election ${LAB_ETCD_ELECTION_MS} ms"
        for c in $(state_coords); do
                coord_start "$c"
        done
        for c in $(state_coords); do
                coord_wait 30 "$c"
        done
        say "lockstepd: $(state_coords | tr '\n' ' ')running, leader lease ${LAB_COORD_TTL_S} s (lockstep -c $(coord_dir c1)/coordinator.yaml cluster status)"
}

coords_stop() {
        local c
        for c in $(state_coords); do
                stop_pidfile "$(coord_pidfile "$c")" lockstepd "$c: lockstepd" &
        done
        wait
        for c in $(state_coords); do
                stop_pidfile "$(etcd_pidfile "$c")" etcd "$c: etcd" &
        done
        wait
}

coords_status() {
        local c
        for c in $(state_coords); do
                printf 'coordinator %s: %s netns %s, etcd %s, lockstepd %s\n' "$c" "$(state_coord_ip "$c")" \
                        "$(ip netns list | awk '{ print $1 }' | grep -qx "$(host_netns "$c")" && echo up || echo MISSING)" \
                        "$(etcd_healthy "$c" && echo healthy || echo DOWN)" \
                        "$(pid_alive "$(coord_pidfile "$c")" lockstepd > /dev/null && echo running || echo 'not running')"
        done
}
