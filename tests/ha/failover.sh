#!/usr/bin/env bash
# The failover test: builds a pg_auto_failover cluster on 127.0.0.1 (tests/ha/cluster.sh:
# a monitor and two nodes, in a temporary directory, as the postgres user), runs
# `failover_under_load` against its multi-host URL (two `ordo serve` under continuous order
# placement through a switchover and a SIGKILL of the primary), and removes the cluster
# whatever happens. Leaves the PostgreSQL on 5432 alone. The measured write gaps are printed
# and kept in target/failover-report.txt.
#
#   bash tests/ha/failover.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

export ORDO_HA_STATE="${ORDO_HA_STATE:-$(mktemp -u /tmp/ordo-ha.state.XXXX)}"
cluster="$PWD/tests/ha/cluster.sh"
trap 'bash "$cluster" down' EXIT

bash "$cluster" up
export ORDO_HA_URL="$(bash "$cluster" url)"
export ORDO_HA_CLUSTER="$cluster"
echo "cluster up: $ORDO_HA_URL"
bash tests/run-one.sh failover::failover_under_load --nocapture
