# lab tls: at "up", a lab CA and one server certificate per lab host signed by it
# (subjectAltName: the host's name and address), so agents listen on tls+tcp://
# and lockstepd verifies them. LOCKSTEP_LAB_TLS=0 keeps plain tcp:// (debugging).

LAB_TLS=${LOCKSTEP_LAB_TLS:-1}

# "tls on" in the state file, written by up: later commands follow what up made.
tls_on() { grep -qx 'tls on' "$LAB_STATE" 2> /dev/null; }
tls_dir() { printf '%s/tls' "$LAB_DIR"; }

# The URL an agent listens on and lockstepd dials.
agent_url() { # host index
        local scheme=tcp
        tls_on && scheme=tls+tcp
        printf '%s://%s:%s' "$scheme" "$(host_ip "$1")" "$LAB_AGENT_PORT"
}

tls_make_cert() { # dir host ip [extendedKeyUsage]
        local d=$1 h=$2 ip=$3 eku=${4:-serverAuth}
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$h" \
                -keyout "$d/$h.key" -out "$d/$h.csr"
        printf '%s\n' "subjectAltName=DNS:$h,IP:$ip" "basicConstraints=CA:FALSE" \
                "keyUsage=digitalSignature" "extendedKeyUsage=$eku" > "$d/$h.ext"
        openssl x509 -req -in "$d/$h.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 30 \
                -extfile "$d/$h.ext" -out "$d/$h.pem"
        rm -f "$d/$h.csr" "$d/$h.ext"
}

# The lab CA (ca.pem, its key ca.key) and <host>.pem/<host>.key for each host,
# keys mode 0600 as the agent wants them.
make_tls() {
        local d h
        tls_on || return 0
        command -v openssl > /dev/null ||
                die "tls: openssl is not installed (run: deploy/lab/lab deps), or start the lab with LOCKSTEP_LAB_TLS=0"
        d=$(tls_dir)
        mkdir -p "$d" "$LAB_DIR/logs"
        chmod 0700 "$d"
        (
                set -e
                umask 077
                openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
                        -subj "/CN=lockstep lab CA" -keyout "$d/ca.key" -out "$d/ca.pem"
                for h in $(state_hosts); do
                        tls_make_cert "$d" "$h" "$(state_host_ip "$h")"
                done
                # A coordinator's certificate serves its etcd member and its
                # lockstepd's peer port, and is its client certificate for both.
                for h in $(state_coords); do
                        tls_make_cert "$d" "$h" "$(state_coord_ip "$h")" serverAuth,clientAuth
                done
        ) >> "$LAB_DIR/logs/tls.log" 2>&1 || die "tls: openssl failed (log: $LAB_DIR/logs/tls.log)"
        say "tls: lab CA $d/ca.pem, a certificate per host ($(state_hosts | tr '\n' ' ')$(state_coords | tr '\n' ' '))"
}

# The agent.yaml lines of one host's certificate, none without TLS.
tls_agent_yaml() { # host
        tls_on || return 0
        echo "tls_cert: $(yaml_q "$(tls_dir)/$1.pem")"
        echo "tls_key: $(yaml_q "$(tls_dir)/$1.key")"
}
