#!/usr/bin/env bash
# grafana_dashboard: every PromQL expression of the Grafana dashboard (panel
# targets and template variables) names only series a running lockstepd
# exports: the names come from a live scrape of its /metrics, not from a list
# kept by hand. Then the check itself is checked: a copy of the dashboard with
# one bogus metric must be refused.
# usage: BUILD=build-dir grafana_dashboard.sh DASHBOARD.json
command -v jq > /dev/null || { echo "SKIP: needs jq"; exit 77; }
DASH=${1:?usage: grafana_dashboard.sh DASHBOARD.json}
. "$(dirname "$0")/integration/lib.sh"

# The expressions, one a line: targets anywhere in the panel tree (rows hold
# panels), and the variables' queries (a string or {query: ...}).
exprs() {
        jq -r '[.. | objects | select(has("targets")) | .targets[]? | .expr // empty]
               + [.templating.list[]? | select(.type == "query") | .query | if type == "object" then .query else . end]
               | .[] | gsub("\n"; " ")' "$1"
}

# The metric names an expression uses: strings, label matchers, ranges,
# Grafana variables, numbers and by/without/on/ignoring lists dropped; what
# is left that is not a function call or a keyword is a metric name.
# label_values(metric, label) keeps its metric only.
names() {
        sed -E -e 's/"([^"\\]|\\.)*"//g' -e 's/\{[^}]*\}//g' -e 's/\[[^]]*\]//g' \
                -e 's/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?//g' \
                -e 's/label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,[^)]*\)/\1/g' \
                -e 's/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)//g' \
                -e 's/(^|[^A-Za-z0-9_:.])[0-9][0-9.]*([eE][-+]?[0-9]+)?/\1/g' |
                grep -oE '[A-Za-z_:][A-Za-z0-9_:]*\s*\(?' |
                grep -vE '\($' | sed -E 's/\s+$//' |
                grep -vxE 'by|without|on|ignoring|group_left|group_right|bool|offset|and|or|unless|inf|nan|Inf|NaN' |
                sort -u
}

# unknown DASHBOARD: prints each metric the dashboard names that lockstepd does
# not export; fails when there is one, or when no metric is found at all.
unknown() {
        local used bad
        used=$(exprs "$1" | names)
        [ -n "$used" ] || { echo "(no metric found in $1)"; return 1; }
        bad=$(comm -23 <(echo "$used") "$T/exported")
        [ -z "$bad" ] || { echo "$bad"; return 1; }
}

scrape() {
        local resp
        exec 3<> "/dev/tcp/127.0.0.1/$MPORT" || return 1
        printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
        resp=$(cat <&3 | tr -d '\r')
        exec 3<&-
        head -n 1 <<<"$resp" | grep -q '^HTTP/1.[01] 200' || return 1
        sed '1,/^$/d' <<<"$resp" > "$T/metrics"
}

# A lockstepd with /metrics on a port of its own; its agent need not run: the
# families are declared (# TYPE) whether or not they have samples yet.
sim_agent host-a "domain vm1"
GROUP_YAML="  - name: g
    members: [vm1@host-a]"
MPORT=$(free_port)
COORD_EXTRA="metrics: http://127.0.0.1:$MPORT" coordinator host-a
start_lockstepd
check "lockstepd serves /metrics" wait_for 20 scrape
# Series names: a histogram family X is queried as X_bucket, X_sum, X_count.
awk '/^# TYPE / { if ($4 == "histogram") { print $3 "_bucket"; print $3 "_sum"; print $3 "_count" } else print $3 }' \
        "$T/metrics" | sort -u > "$T/exported"
echo "# lockstepd exports: $(tr '\n' ' ' < "$T/exported")"
check "lockstepd declares its metric families" [ "$(wc -l < "$T/exported")" -ge 10 ]

jqe() { jq -e "$@" > /dev/null; }
check "the dashboard is valid JSON with panels" jqe '.panels | length > 0' "$DASH"
check "every panel with a datasource queries \${DS_PROMETHEUS}" \
        jqe '[.. | objects | select(has("datasource") and (.datasource | type) == "object" and .datasource.type == "prometheus") | .datasource.uid] | all(. == "${DS_PROMETHEUS}")' "$DASH"
check "... a datasource variable named DS_PROMETHEUS" \
        jqe '[.templating.list[] | select(.type == "datasource" and .name == "DS_PROMETHEUS" and .query == "prometheus")] | length == 1' "$DASH"
check "every non-row panel has a query" \
        jqe '[.panels[] | select(.type != "row") | (.targets // []) | map(.expr // "") | map(select(. != "")) | length] | all(. > 0)' "$DASH"
out=$(unknown "$DASH") && rc=0 || rc=$?
check "every metric the dashboard names is exported by lockstepd${out:+ (not exported: $(echo $out))}" [ "$rc" = 0 ]
echo "# used: $(exprs "$DASH" | names | tr '\n' ' ')"
unused=$(comm -13 <(exprs "$DASH" | names) "$T/exported" | grep -v '_sum$' || true)
[ -z "$unused" ] || echo "# exported, not on the dashboard: $(echo $unused)"

# The check refuses a dashboard naming a metric lockstepd does not export,
# inside a row's panels and in a variable's query alike.
jq '.panels[1].targets[0].expr += " + lockstep_no_such_metric_total"' "$DASH" > "$T/bogus1.json"
out=$(unknown "$T/bogus1.json") && rc=0 || rc=$?
check "a bogus metric in a panel is refused, by name" bash -c "[ $rc != 0 ] && [ '$out' = lockstep_no_such_metric_total ]"
jq '.panels[0].panels = [{"type": "stat", "targets": [{"expr": "sum(rate(lockstep_cuts_totl[5m]))"}]}]' "$DASH" > "$T/bogus2.json"
out=$(unknown "$T/bogus2.json") && rc=0 || rc=$?
check "... in a collapsed row's panel too" bash -c "[ $rc != 0 ] && [ '$out' = lockstep_cuts_totl ]"
jq '(.templating.list[] | select(.name == "group") | .query.query) = "label_values(lockstep_cut_total, group)"' "$DASH" > "$T/bogus3.json"
out=$(unknown "$T/bogus3.json") && rc=0 || rc=$?
check "... and in a variable's query" bash -c "[ $rc != 0 ] && [ '$out' = lockstep_cut_total ]"
finish
