#!/usr/bin/env bash
# A throwaway pg_auto_failover cluster on 127.0.0.1 for ordo's failover tests: one monitor
# and two PostgreSQL nodes (a primary and a synchronous secondary) holding a database `ordo`,
# with failover timings shortened so that a test sees a failover in seconds, not a minute.
#
#   bash tests/ha/cluster.sh up               build it, wait for primary + secondary, print the state
#   bash tests/ha/cluster.sh url              postgres://postgres@127.0.0.1:6601,127.0.0.1:6602/ordo?target_session_attrs=read-write
#   bash tests/ha/cluster.sh primary          the port of the current primary
#   bash tests/ha/cluster.sh switchover       planned failover; prints the new primary's port
#   bash tests/ha/cluster.sh kill-primary     SIGKILL the primary's postgres and keeper; prints its port
#   bash tests/ha/cluster.sh wait-primary [S] wait (default 60 s) until a node is primary and read-write
#   bash tests/ha/cluster.sh wait-sync [S]    wait (default 60 s) until the cluster is synchronous again:
#                                             a primary and a secondary, and each commit on the
#                                             primary waits for the standby
#   bash tests/ha/cluster.sh status           pg_autoctl show state
#   bash tests/ha/cluster.sh events [N]       the monitor's last N (default 60) state changes
#   bash tests/ha/cluster.sh down             stop everything `up` started and remove its directory
#
# How a test uses it (`down` is safe to call at any time, also after a failed `up`):
#
#   trap 'bash tests/ha/cluster.sh down' EXIT
#   bash tests/ha/cluster.sh up
#   export ORDO_DATABASE_URL="$(bash tests/ha/cluster.sh url)"
#   ... start ordo, drive it ...
#   bash tests/ha/cluster.sh wait-sync 60
#   bash tests/ha/cluster.sh kill-primary
#   bash tests/ha/cluster.sh wait-primary 60
#   ... check that every acknowledged order is there ...
#
# It can also be sourced (`source tests/ha/cluster.sh`): the ha_up, ha_down, ha_url,
# ha_primary, ha_switchover, ha_kill_primary, ha_wait_primary, ha_wait_sync, ha_status and
# ha_events functions return non-zero on failure instead of exiting.
#
# Runs as root (the cluster runs as the `postgres` user through runuser) or as `postgres`.
# Needs pg_autoctl (`up` installs postgresql-NN-auto-failover with apt-get when it is
# missing). Never touches any other PostgreSQL on the machine: every process it starts has its
# working directory under the base directory, and only such processes are stopped or killed.
#
# Environment (read by `up`; the other commands read what `up` recorded in the state file):
#   ORDO_HA_DIR            base directory (default: a new mktemp -d /tmp/ordo-ha.XXXX);
#                          holds the data directories, pg_autoctl's files and the logs
#   ORDO_HA_STATE          state file (default /tmp/ordo-ha.state)
#   ORDO_HA_MONITOR_PORT   monitor port (6600); ORDO_HA_PORT1, ORDO_HA_PORT2: nodes (6601, 6602)
#   ORDO_HA_USER           the user in the printed URL (postgres; the role `ordo` also exists
#                          and owns the database)
#   ORDO_HA_PG_BIN         PostgreSQL's bin directory (default: the newest /usr/lib/postgresql/*/bin)
#   ORDO_HA_UP_TIMEOUT     seconds `up` waits for each step (120)
#
# Failover timings (monitor GUCs, milliseconds, and keeper settings, seconds); the defaults
# of pg_auto_failover are in brackets:
#   pgautofailover.health_check_period            1000  [5000]
#   pgautofailover.health_check_timeout           1000  [5000]
#   pgautofailover.health_check_max_retries          1  [2]
#   pgautofailover.health_check_retry_delay        500  [2000]
#   pgautofailover.node_considered_unhealthy_timeout 3000 [20000]
#   pgautofailover.startup_grace_period           2000  [10000]
#   pgautofailover.primary_demote_timeout         5000  [30000]  must exceed the next one
#   timeout.network_partition_timeout                3  [20]
#   timeout.postgresql_restart_failure_timeout       5  [20]
# Each can be overridden with ORDO_HA_<NAME IN CAPITALS>, e.g. ORDO_HA_PRIMARY_DEMOTE_TIMEOUT=8000.

: "${ORDO_HA_STATE:=/tmp/ordo-ha.state}"

ha__log() { printf 'cluster.sh: %s\n' "$*" >&2; }

ha__pg_bin() {
    if [ -n "${ORDO_HA_PG_BIN:-}" ]; then
        printf '%s\n' "$ORDO_HA_PG_BIN"
        return 0
    fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$d" ] || { ha__log "no /usr/lib/postgresql/*/bin: set ORDO_HA_PG_BIN"; return 1; }
    printf '%s\n' "$d"
}

# Reads the state file into HA_DIR, HA_MPORT, HA_PORT1, HA_PORT2, HA_USER, HA_PG_BIN.
ha__load() {
    HA_DIR= HA_MPORT= HA_PORT1= HA_PORT2= HA_USER= HA_PG_BIN=
    [ -f "$ORDO_HA_STATE" ] || return 1
    local k v
    while IFS='=' read -r k v; do
        case "$k" in
            dir) HA_DIR=$v ;;
            monitor_port) HA_MPORT=$v ;;
            port1) HA_PORT1=$v ;;
            port2) HA_PORT2=$v ;;
            user) HA_USER=$v ;;
            pg_bin) HA_PG_BIN=$v ;;
        esac
    done <"$ORDO_HA_STATE"
    [ -n "$HA_DIR" ] && [ -n "$HA_MPORT" ] && [ -n "$HA_PORT1" ] && [ -n "$HA_PORT2" ]
}

ha__require() {
    ha__load || { ha__log "no cluster: $ORDO_HA_STATE is missing (run 'up' first)"; return 1; }
    [ -f "$HA_DIR/.ordo-ha" ] || { ha__log "$HA_DIR is not a cluster.sh directory"; return 1; }
}

# Runs a command as postgres, with pg_autoctl's configuration, state and pid files kept inside
# the base directory (XDG_*), so that removing the directory removes every trace.
ha__as_pg() {
    local envs=(env "XDG_CONFIG_HOME=$HA_DIR/xdg/config" "XDG_DATA_HOME=$HA_DIR/xdg/data"
        "XDG_RUNTIME_DIR=$HA_DIR/xdg/run" "PATH=$HA_PG_BIN:$PATH")
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "${envs[@]}" "$@"
    elif [ "$(id -un)" = postgres ]; then
        "${envs[@]}" "$@"
    else
        ha__log "run as root or as postgres"
        return 1
    fi
}

ha__autoctl() { ha__as_pg pg_autoctl "$@"; }

# ha__sql PORT DBNAME SQL: statements over TCP as postgres (trust), each in its own
# transaction (read from stdin, so that ALTER SYSTEM works), unaligned output.
ha__sql() {
    psql -X -At -q -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=$1 dbname=$2 user=postgres connect_timeout=2 sslmode=disable" \
        -f - <<<"$3" 2>/dev/null
}

ha__monitor_sql() { ha__sql "$HA_MPORT" pg_auto_failover "$1"; }

ha__port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ha__wait SECONDS COMMAND...: retries COMMAND every 0.2 s until it succeeds.
ha__wait() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# Pids of the processes whose working directory is under $1: the keeper started there and
# the PostgreSQL server processes of the data directory below it (postgres chdirs to PGDATA).
ha__pids_under() {
    local p cwd
    for p in /proc/[0-9]*; do
        cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
        case "$cwd" in
            "$1" | "$1"/*) printf '%s\n' "${p#/proc/}" ;;
        esac
    done
}

ha__no_pids_under() { [ -z "$(ha__pids_under "$1")" ]; }

ha__node_dir() {
    case "$1" in
        "$HA_PORT1") printf '%s\n' "$HA_DIR/node1" ;;
        "$HA_PORT2") printf '%s\n' "$HA_DIR/node2" ;;
        *) return 1 ;;
    esac
}

# Starts `pg_autoctl run` for $1/pgdata in the background, detached, with $1 as its
# working directory and its log in $1/pg_autoctl.log.
ha__start_keeper() {
    (cd "$1" && ha__as_pg setsid -f pg_autoctl run --pgdata "$1/pgdata" \
        >>"$1/pg_autoctl.log" 2>&1 </dev/null)
}

# node states as "port reported goal" lines
ha__states() {
    ha__monitor_sql "SELECT nodeport, reportedstate, goalstate FROM pgautofailover.node
                     WHERE formationid = 'default' ORDER BY nodeport"
}

ha__is_writable() { [ "$(ha__sql "$1" ordo 'SELECT NOT pg_is_in_recovery()')" = t ]; }

# The port of the node the monitor holds as primary and that accepts writes.
ha_primary() {
    ha__require || return 1
    local port
    port=$(ha__monitor_sql "SELECT nodeport FROM pgautofailover.node
              WHERE formationid = 'default' AND reportedstate = goalstate
                AND goalstate IN ('single', 'wait_primary', 'primary', 'join_primary')
              ORDER BY nodeport LIMIT 1") || return 1
    [ -n "$port" ] && ha__is_writable "$port" || return 1
    printf '%s\n' "$port"
}

ha__primary_and_secondary() {
    local states
    states=$(ha__states) || return 1
    printf '%s\n' "$states" | grep -q '|primary|primary$' &&
        printf '%s\n' "$states" | grep -q '|secondary|secondary$'
}

# Is the cluster synchronous: primary and secondary as the monitor sees them, and the
# primary's commits wait for a standby that is streaming? Between a failover and the old
# node's return (wait_primary), and while the monitor holds the standby unhealthy,
# pg_auto_failover runs a two-node formation asynchronously: a crash of the primary then may
# lose acknowledged commits, by design. A test of "nothing acknowledged is lost" starts its
# crash from a synchronous cluster.
ha__synchronous() {
    ha__primary_and_secondary || return 1
    local port
    port=$(ha_primary) || return 1
    [ "$(ha__sql "$port" postgres "SELECT current_setting('synchronous_standby_names') <> ''
        AND EXISTS (SELECT 1 FROM pg_stat_replication
                    WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum'))")" = t ]
}

ha_wait_sync() {
    ha__require || return 1
    local timeout=${1:-60}
    if ha__wait "$timeout" ha__synchronous; then
        return 0
    fi
    ha__log "the cluster is not synchronous after ${timeout}s:"
    ha_status >&2
    return 1
}

ha__single_ready() { [ "$(ha__states)" = "$1|single|single" ] && ha__is_writable "$1"; }

ha__monitor_ready() { [ "$(ha__monitor_sql 'SELECT count(*) FROM pgautofailover.formation')" -ge 1 ] 2>/dev/null; }

ha__fail_up() {
    ha__log "up failed: $1"
    local f
    for f in "$HA_DIR"/*.log "$HA_DIR"/*/pg_autoctl.log; do
        [ -f "$f" ] || continue
        printf '%s\n' "--- tail of $f" >&2
        tail -n 15 "$f" >&2
    done
    ha__log "the directory $HA_DIR is kept for inspection; run 'down' to remove it"
    return 1
}

ha_up() {
    if ha__load && [ -d "$HA_DIR" ]; then
        ha__log "a cluster is already recorded in $ORDO_HA_STATE ($HA_DIR): run 'down' first"
        return 1
    fi
    HA_MPORT=${ORDO_HA_MONITOR_PORT:-6600}
    HA_PORT1=${ORDO_HA_PORT1:-6601}
    HA_PORT2=${ORDO_HA_PORT2:-6602}
    HA_USER=${ORDO_HA_USER:-postgres}
    HA_PG_BIN=$(ha__pg_bin) || return 1
    local major
    major=$(basename "$(dirname "$HA_PG_BIN")")

    if ! command -v pg_autoctl >/dev/null 2>&1; then
        [ "$(id -u)" = 0 ] || { ha__log "pg_autoctl is missing; install postgresql-$major-auto-failover"; return 1; }
        ha__log "installing postgresql-$major-auto-failover"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "postgresql-$major-auto-failover" >&2 ||
            { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "postgresql-$major-auto-failover" >&2; } ||
            { ha__log "could not install postgresql-$major-auto-failover"; return 1; }
    fi

    local p
    for p in "$HA_MPORT" "$HA_PORT1" "$HA_PORT2"; do
        ha__port_free "$p" || { ha__log "port $p is in use"; return 1; }
    done

    if [ -n "${ORDO_HA_DIR:-}" ]; then
        HA_DIR=$ORDO_HA_DIR
        mkdir -p "$HA_DIR" || return 1
        if [ -n "$(ls -A "$HA_DIR")" ]; then
            ha__log "$HA_DIR is not empty"
            return 1
        fi
    else
        HA_DIR=$(mktemp -d /tmp/ordo-ha.XXXX) || return 1
    fi
    HA_DIR=$(cd "$HA_DIR" && pwd -P)
    # The marker lets `down` remove the directory, and nothing else.
    : >"$HA_DIR/.ordo-ha"
    printf 'dir=%s\nmonitor_port=%s\nport1=%s\nport2=%s\nuser=%s\npg_bin=%s\n' \
        "$HA_DIR" "$HA_MPORT" "$HA_PORT1" "$HA_PORT2" "$HA_USER" "$HA_PG_BIN" >"$ORDO_HA_STATE" || return 1
    mkdir -p "$HA_DIR"/monitor "$HA_DIR"/node1 "$HA_DIR"/node2 \
        "$HA_DIR"/xdg/config "$HA_DIR"/xdg/data "$HA_DIR"/xdg/run || return 1
    chmod 700 "$HA_DIR"/xdg/run
    if [ "$(id -u)" = 0 ]; then
        chown -R postgres:postgres "$HA_DIR" || return 1
    fi

    local t=${ORDO_HA_UP_TIMEOUT:-120}
    local pgctl=$HA_PG_BIN/pg_ctl
    local monitor_url="postgres://autoctl_node@127.0.0.1:$HA_MPORT/pg_auto_failover?sslmode=disable"

    # The monitor.
    (cd "$HA_DIR/monitor" && ha__autoctl create monitor --pgdata "$HA_DIR/monitor/pgdata" \
        --pgport "$HA_MPORT" --hostname 127.0.0.1 --auth trust --no-ssl --ssl-mode disable \
        --pgctl "$pgctl") >>"$HA_DIR/create-monitor.log" 2>&1 ||
        { ha__fail_up "pg_autoctl create monitor"; return 1; }
    ha__autoctl config set --pgdata "$HA_DIR/monitor/pgdata" postgresql.listen_addresses 127.0.0.1 \
        >>"$HA_DIR/create-monitor.log" 2>&1 || { ha__fail_up "monitor listen_addresses"; return 1; }
    ha__start_keeper "$HA_DIR/monitor" || { ha__fail_up "pg_autoctl run (monitor)"; return 1; }
    ha__wait "$t" ha__monitor_ready || { ha__fail_up "the monitor did not start"; return 1; }
    ha__monitor_sql "
        ALTER SYSTEM SET pgautofailover.health_check_period = ${ORDO_HA_HEALTH_CHECK_PERIOD:-1000};
        ALTER SYSTEM SET pgautofailover.health_check_timeout = ${ORDO_HA_HEALTH_CHECK_TIMEOUT:-1000};
        ALTER SYSTEM SET pgautofailover.health_check_max_retries = ${ORDO_HA_HEALTH_CHECK_MAX_RETRIES:-1};
        ALTER SYSTEM SET pgautofailover.health_check_retry_delay = ${ORDO_HA_HEALTH_CHECK_RETRY_DELAY:-500};
        ALTER SYSTEM SET pgautofailover.node_considered_unhealthy_timeout = ${ORDO_HA_NODE_CONSIDERED_UNHEALTHY_TIMEOUT:-3000};
        ALTER SYSTEM SET pgautofailover.startup_grace_period = ${ORDO_HA_STARTUP_GRACE_PERIOD:-2000};
        ALTER SYSTEM SET pgautofailover.primary_demote_timeout = ${ORDO_HA_PRIMARY_DEMOTE_TIMEOUT:-5000};
        SELECT pg_reload_conf();" >/dev/null || { ha__fail_up "monitor settings"; return 1; }

    # Two data nodes: node1 starts as the single primary, node2 joins as its standby.
    local n port dir
    for n in 1 2; do
        port=$([ "$n" = 1 ] && echo "$HA_PORT1" || echo "$HA_PORT2")
        dir=$HA_DIR/node$n
        if [ "$n" = 2 ]; then
            # A fresh checkpoint lets the standby's base backup start at once.
            ha__sql "$HA_PORT1" postgres CHECKPOINT >/dev/null
        fi
        (cd "$dir" && ha__autoctl create postgres --pgdata "$dir/pgdata" --pgport "$port" \
            --listen 127.0.0.1 --hostname 127.0.0.1 --name "node$n" --dbname ordo \
            --auth trust --no-ssl --ssl-mode disable --monitor "$monitor_url" \
            --pgctl "$pgctl") >>"$HA_DIR/create-node$n.log" 2>&1 ||
            { ha__fail_up "pg_autoctl create postgres (node$n)"; return 1; }
        local kv
        for kv in "timeout.network_partition_timeout ${ORDO_HA_NETWORK_PARTITION_TIMEOUT:-3}" \
            "timeout.postgresql_restart_failure_timeout ${ORDO_HA_POSTGRESQL_RESTART_FAILURE_TIMEOUT:-5}"; do
            # shellcheck disable=SC2086
            ha__autoctl config set --pgdata "$dir/pgdata" $kv >>"$HA_DIR/create-node$n.log" 2>&1 ||
                { ha__fail_up "pg_autoctl config set $kv (node$n)"; return 1; }
        done
        ha__start_keeper "$dir" || { ha__fail_up "pg_autoctl run (node$n)"; return 1; }
        if [ "$n" = 1 ]; then
            ha__wait "$t" ha__single_ready "$HA_PORT1" || { ha__fail_up "node1 did not become single"; return 1; }
            ha__sql "$HA_PORT1" ordo "
                DO \$\$ BEGIN
                    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ordo') THEN
                        CREATE ROLE ordo LOGIN CREATEDB;
                    END IF;
                END \$\$;
                ALTER DATABASE ordo OWNER TO ordo;" >/dev/null ||
                { ha__fail_up "role ordo"; return 1; }
        fi
    done
    ha__wait "$t" ha__primary_and_secondary || { ha__fail_up "no primary and secondary after ${t}s"; return 1; }
    ha__wait 10 ha_primary >/dev/null || { ha__fail_up "the primary does not accept writes"; return 1; }
    ha_status
}

ha_status() {
    ha__require || return 1
    ha__autoctl show state --pgdata "$HA_DIR/monitor/pgdata" 2>/dev/null
}

ha_events() {
    ha__require || return 1
    ha__autoctl show events --pgdata "$HA_DIR/monitor/pgdata" --formation default --count "${1:-60}" 2>/dev/null
}

ha_url() {
    ha__require || return 1
    local uri hosts db
    # pg_autoctl's own formation URI, brought to one form: user, hosts in port order, dbname,
    # target_session_attrs=read-write only.
    uri=$(ha__autoctl show uri --pgdata "$HA_DIR/monitor/pgdata" --formation default 2>/dev/null)
    case "$uri" in
        postgres://*/*) ;;
        *) ha__log "pg_autoctl show uri gave '$uri'"; return 1 ;;
    esac
    hosts=${uri#postgres://}
    hosts=${hosts%%/*}
    hosts=${hosts#*@}
    hosts=$(printf '%s\n' "$hosts" | tr ',' '\n' | sort -t: -k2,2n | paste -sd, -)
    db=${uri#postgres://*/}
    db=${db%%\?*}
    printf 'postgres://%s@%s/%s?target_session_attrs=read-write\n' "$HA_USER" "$hosts" "$db"
}

ha_wait_primary() {
    ha__require || return 1
    local timeout=${1:-60}
    if ha__wait "$timeout" ha_primary >/dev/null; then
        return 0
    fi
    ha__log "no read-write primary after ${timeout}s"
    return 1
}

ha__primary_is_not() {
    local p
    p=$(ha_primary) && [ "$p" != "$1" ]
}

ha_switchover() {
    ha__require || return 1
    local old new
    old=$(ha_primary) || { ha__log "no primary to switch over from"; return 1; }
    ha__autoctl perform switchover --pgdata "$HA_DIR/monitor/pgdata" --formation default --group 0 \
        >>"$HA_DIR/switchover.log" 2>&1 || { ha__log "pg_autoctl perform switchover failed (see $HA_DIR/switchover.log)"; return 1; }
    ha__wait 60 ha__primary_is_not "$old" || { ha__log "no new primary after the switchover"; return 1; }
    new=$(ha_primary) || return 1
    printf '%s\n' "$new"
}

ha_kill_primary() {
    ha__require || return 1
    local port dir pids
    port=$(ha_primary) || { ha__log "no primary to kill"; return 1; }
    dir=$(ha__node_dir "$port") || return 1
    pids=$(ha__pids_under "$dir")
    [ -n "$pids" ] || { ha__log "no process under $dir"; return 1; }
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null
    printf '%s\n' "$port"
}

# Removes the System V semaphores (pg_autoctl's log lock, in its pid files) and shared
# memory segments (postmaster.pid, line 7) that SIGKILLed processes of this cluster leave.
ha__collect_ipc() {
    local f
    for f in "$HA_DIR"/xdg/run/pg_autoctl/"$HA_DIR"/*/pgdata/pg_autoctl.pid \
        /tmp/pg_autoctl/"$HA_DIR"/*/pgdata/pg_autoctl.pid; do
        [ -f "$f" ] && printf 'sem %s\n' "$(sed -n 5p "$f")"
    done
    for f in "$HA_DIR"/*/pgdata/postmaster.pid; do
        [ -f "$f" ] && printf 'shm %s\n' "$(sed -n 7p "$f" | awk '{print $2}')"
    done
}

ha__remove_ipc() {
    local kind id nattch
    while read -r kind id; do
        case "$id" in '' | *[!0-9]*) continue ;; esac
        case "$kind" in
            sem)
                ipcs -s -i "$id" >/dev/null 2>&1 && ipcrm -s "$id" 2>/dev/null ;;
            shm)
                nattch=$(ipcs -m | awk -v id="$id" '$2 == id {print $6}')
                [ "$nattch" = 0 ] && ipcrm -m "$id" 2>/dev/null ;;
        esac
    done
}

ha_down() {
    if ! ha__load; then
        HA_DIR=${ORDO_HA_DIR:-}
        if [ -z "$HA_DIR" ] || [ ! -f "$HA_DIR/.ordo-ha" ]; then
            return 0
        fi
    fi
    HA_PG_BIN=${HA_PG_BIN:-$(ha__pg_bin 2>/dev/null)}
    if [ -d "$HA_DIR" ] && [ -f "$HA_DIR/.ordo-ha" ] && [ "$HA_DIR" != / ]; then
        local ipc d pids
        ipc=$(ha__collect_ipc)
        # Keepers first, the monitor last; each stops its own postgres.
        for d in node1 node2 monitor; do
            if [ -f "$HA_DIR/$d/pgdata/PG_VERSION" ]; then
                ha__autoctl stop --pgdata "$HA_DIR/$d/pgdata" --fast >/dev/null 2>&1 || true
            fi
        done
        ha__wait 15 ha__no_pids_under "$HA_DIR" || true
        pids=$(ha__pids_under "$HA_DIR")
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null
            ha__wait 10 ha__no_pids_under "$HA_DIR" ||
                ha__log "processes still running under $HA_DIR: $(ha__pids_under "$HA_DIR" | paste -sd' ' -)"
        fi
        printf '%s\n' "$ipc" | ha__remove_ipc
        # pg_autoctl's pid files land in /tmp/pg_autoctl/<pgdata> when XDG_RUNTIME_DIR is unusable.
        rm -rf "/tmp/pg_autoctl/${HA_DIR#/}" 2>/dev/null
        d=/tmp/pg_autoctl/${HA_DIR#/}
        while d=$(dirname "$d") && [ "$d" != /tmp ] && [ "$d" != / ]; do
            rmdir "$d" 2>/dev/null || break
        done
        rm -rf "$HA_DIR"
    fi
    rm -f "$ORDO_HA_STATE"
    return 0
}

ha__main() {
    local cmd=${1:-}
    shift || true
    case "$cmd" in
        up) ha_up ;;
        down) ha_down ;;
        url) ha_url ;;
        primary) ha_primary || { ha__log "no read-write primary"; return 1; } ;;
        switchover) ha_switchover ;;
        kill-primary) ha_kill_primary ;;
        wait-primary) ha_wait_primary "$@" ;;
        wait-sync) ha_wait_sync "$@" ;;
        status) ha_status ;;
        events) ha_events "$@" ;;
        *)
            echo "usage: bash $0 up|down|url|primary|switchover|kill-primary|wait-primary [TIMEOUT_S]|wait-sync [TIMEOUT_S]|status|events [N]" >&2
            return 2
            ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -o pipefail
    ha__main "$@"
    exit $?
fi
