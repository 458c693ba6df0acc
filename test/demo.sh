#!/usr/bin/env bash
# lockext demo: concurrent balance transfers with a racy read-modify-write
# (read both balances, compute, write them back), run by pgbench from 8
# clients, once unguarded and once guarded by dlock_acquire.  Prints
# committed transfers, throughput and what lost updates did to the balances
# for each; when
# redis-server is available, also runs the guarded transfers from two
# clusters sharing one Redis.  Everything runs on throwaway clusters and
# servers on loopback, removed at exit with the user that ran them.
#
#   bash test/demo.sh        (as root on Debian 12: installs what it needs)
#   LOCKEXT_DEMO_USER=name   the unprivileged user (default lockext_demo;
#                            created and removed again when missing)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/test/lib.sh"
CLIENTS=8
TRANSFERS=150			# per client
ACCOUNTS=6

WORK=$(mktemp -d /tmp/lockext-demo.XXXXXX)
cleanup() {
	set +e
	if [ -n "${RUN_USER:-}" ]; then
		for d in "$WORK"/pg_*; do
			[ -d "$d" ] && as_user "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1
		done
		if [ -n "${REDIS_PID:-}" ]; then
			redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill "$REDIS_PID"
			wait "$REDIS_PID" 2>/dev/null
		fi
		remove_runner
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

setup_runner "${LOCKEXT_DEMO_USER:-lockext_demo}"
chown "$RUN_USER" "$WORK"
log "building and installing lockext"
build_and_install "$ROOT"

# start_cluster NAME [extra postgresql.conf lines]: prints the port
start_cluster() {
	local name=$1 extra=${2:-} port
	port=$(free_port 55000)
	# clusters listen on unix sockets only: skip ports whose socket exists
	while [ -e "$WORK/.s.PGSQL.$port" ]; do
		port=$(free_port $((port + 1)))
	done
	as_user "$PGBIN/initdb" -D "$WORK/pg_$name" -A trust -U postgres >/dev/null
	cat >>"$WORK/pg_$name/postgresql.conf" <<-EOF
		listen_addresses = ''
		unix_socket_directories = '$WORK'
		port = $port
		max_connections = 50
		cluster_name = '$name'
		$extra
	EOF
	as_user "$PGBIN/pg_ctl" -D "$WORK/pg_$name" -l "$WORK/$name.log" -w start >/dev/null
	echo "$port"
}

psql_on() {
	local port=$1
	shift
	as_user "$PGBIN/psql" -h "$WORK" -p "$port" -U postgres -X -q -v ON_ERROR_STOP=1 -At "$@" postgres
}

# The transfer: read both balances, pause (a real application computes),
# write both back in one UPDATE (rows locked in index order, so the
# unguarded run does not deadlock).  The guard is the two dlock_acquire
# calls, in account order so two transfers never wait in a cycle.
write_script() {
	cat >"$WORK/transfer_$1.sql" <<-EOF
		\set src random(1, $ACCOUNTS)
		\set dst 1 + (:src + random(0, $((ACCOUNTS - 2)))) % $ACCOUNTS
		\set amount random(1, 100)
		\set lo least(:src, :dst)
		\set hi greatest(:src, :dst)
		BEGIN;
		$2
		SELECT balance AS src_balance FROM accounts WHERE id = :src \gset
		SELECT balance AS dst_balance FROM accounts WHERE id = :dst \gset
		SELECT pg_sleep(0.001);
		UPDATE accounts SET balance = CASE id WHEN :src THEN :src_balance - :amount
		                                      ELSE :dst_balance + :amount END
		 WHERE id IN (:src, :dst);
		INSERT INTO transfers (src, dst, amount) VALUES (:src, :dst, :amount);
		COMMIT;
	EOF
	chown "$RUN_USER" "$WORK/transfer_$1.sql"
}
write_script unguarded ""
write_script guarded "SELECT dlock_acquire('account:' || :lo); SELECT dlock_acquire('account:' || :hi);"

reset_accounts() {
	psql_on "$1" -c "TRUNCATE transfers; DELETE FROM accounts;
		INSERT INTO accounts SELECT g, 10000 FROM generate_series(1, $ACCOUNTS) g;"
}

# Lost updates: each account's balance against what the ledger of
# committed transfers says it must be; a transfer whose write was
# overwritten shows as a difference.  "money short" adds up what accounts
# hold less than that (money their holders lost), "money over" what they
# hold more (money made from nothing); the balances' total moved by
# over - short.
report() {
	local label=$1 tps=$2 port=$3
	psql_on "$port" -F '|' -c "
		WITH expected AS (
		  SELECT a.id, 10000
		         - coalesce((SELECT sum(amount) FROM transfers WHERE src = a.id), 0)
		         + coalesce((SELECT sum(amount) FROM transfers WHERE dst = a.id), 0) AS balance
		    FROM accounts a)
		SELECT (SELECT count(*) FROM transfers),
		       count(*) FILTER (WHERE e.balance <> a.balance),
		       coalesce(sum(greatest(e.balance - a.balance, 0)), 0),
		       coalesce(sum(greatest(a.balance - e.balance, 0)), 0)
		  FROM accounts a JOIN expected e USING (id)" |
		while IFS='|' read -r committed wrong short over; do
			printf '%-34s %9s %10s %15s %12s %12s\n' "$label" "$committed" "$tps" \
				"$wrong/$ACCOUNTS" "$short" "$over"
			echo "$label|$wrong|$short|$over" >>"$WORK/results"
		done
}

# run_pgbench PORT SCRIPT: prints tps (excluding connection time)
run_pgbench() {
	as_user "$PGBIN/pgbench" -h "$WORK" -p "$1" -U postgres -n -c "$CLIENTS" -j 2 \
		-t "$TRANSFERS" -f "$WORK/transfer_$2.sql" postgres 2>&1 |
		sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p'
}

log "starting a throwaway cluster"
PORT_A=$(start_cluster alpha)
psql_on "$PORT_A" -c "CREATE EXTENSION lockext;
	CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
	CREATE TABLE transfers (src int, dst int, amount int);"

echo
echo "$CLIENTS clients x $TRANSFERS transfers among $ACCOUNTS accounts, read-modify-write with a 1 ms pause"
printf '%-34s %9s %10s %15s %12s %12s\n' "run" "committed" "tps" "wrong accounts" "money short" "money over"
for run in unguarded guarded; do
	reset_accounts "$PORT_A"
	tps=$(run_pgbench "$PORT_A" "$run")
	report "one cluster, $run" "$tps" "$PORT_A"
done

if command -v redis-server >/dev/null 2>&1; then
	REDIS_PORT=$(free_port 56379)
	as_user redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
		--dir "$WORK" --logfile "$WORK/redis.log" &
	REDIS_PID=$!
	for _ in $(seq 50); do
		redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	nodes="lockext.redis_nodes = 'redis://127.0.0.1:$REDIS_PORT'
		shared_preload_libraries = 'lockext'"
	as_user "$PGBIN/pg_ctl" -D "$WORK/pg_alpha" -w stop >/dev/null
	printf '%s\n' "lockext.redis_nodes = 'redis://127.0.0.1:$REDIS_PORT'" \
		"shared_preload_libraries = 'lockext'" >>"$WORK/pg_alpha/postgresql.conf"
	as_user "$PGBIN/pg_ctl" -D "$WORK/pg_alpha" -l "$WORK/alpha.log" -w start >/dev/null
	PORT_B=$(start_cluster beta "$nodes")
	# beta reaches alpha's accounts through postgres_fdw; the lock is in Redis
	psql_on "$PORT_B" -c "CREATE EXTENSION lockext; CREATE EXTENSION postgres_fdw;
		CREATE SERVER alpha FOREIGN DATA WRAPPER postgres_fdw
		  OPTIONS (host '$WORK', port '$PORT_A', dbname 'postgres');
		CREATE USER MAPPING FOR postgres SERVER alpha OPTIONS (user 'postgres');
		CREATE FOREIGN TABLE accounts (id int, balance bigint) SERVER alpha;
		CREATE FOREIGN TABLE transfers (src int, dst int, amount int) SERVER alpha;"
	reset_accounts "$PORT_A"
	run_pgbench "$PORT_A" guarded >"$WORK/tps_a" &
	pid_a=$!
	tps_b=$(run_pgbench "$PORT_B" guarded)
	wait "$pid_a"
	report "two clusters + Redis, guarded" "$(cat "$WORK/tps_a")+$tps_b" "$PORT_A"
else
	echo "(redis-server not installed: skipping the two-cluster run)"
fi

echo
if [ -z "$(awk -F'|' '$1 ~ /, guarded$/ && $2 != 0' "$WORK/results")" ]; then
	awk -F'|' '$1 == "one cluster, unguarded" {
		printf "guarded runs lost no update; in the unguarded run %d of %d accounts were wrong, %d short and %d over.\n", $2, '"$ACCOUNTS"', $3, $4 }' \
		"$WORK/results"
else
	echo "a guarded run lost updates: this is a bug" >&2
	exit 1
fi
