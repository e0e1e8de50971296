#!/bin/bash
# docs/operations.md's PostgreSQL recipe, tried on a private throw-away cluster: a primary that
# archives its WAL, a hot standby made with `pg_basebackup -R` that streams from it, and a
# point-in-time recovery from a base backup and the archive to just before a mistake; then the
# archive kept short with pg_archivecleanup. Run by tests/test_backup.py (as a user PostgreSQL
# runs as: not root). Environment: BIN (PostgreSQL's bin directory), D (an empty directory),
# PORT (three ports from it on: primary, standby, recovered copy).
set -euo pipefail
B=$BIN
P1=$PORT; P2=$((PORT + 1)); P3=$((PORT + 2))
mkdir -p $D/archive
# Whatever happens, no cluster is left running.
trap 'for c in pitr standby primary; do [ -f $D/$c/postmaster.pid ] && $B/pg_ctl -D $D/$c -w -m fast stop >/dev/null 2>&1; done; true' EXIT
cat > $D/archive-wal <<SH
#!/bin/sh
# archive_command: copy one WAL segment into the archive, never overwriting one already there.
set -e
dest=$D/archive
test ! -f "\$dest/\$2"
cp "\$1" "\$dest/\$2.part"
sync "\$dest/\$2.part"
mv "\$dest/\$2.part" "\$dest/\$2"
SH
chmod +x $D/archive-wal
$B/initdb -D $D/primary -U postgres -A trust >/dev/null
cat >> $D/primary/postgresql.conf <<CONF
port = $P1
listen_addresses = '127.0.0.1'
unix_socket_directories = '$D'
wal_level = replica
max_wal_senders = 5
archive_mode = on
archive_command = '$D/archive-wal %p %f'
archive_timeout = 60
CONF
echo "host replication replicator 127.0.0.1/32 trust" >> $D/primary/pg_hba.conf
$B/pg_ctl -D $D/primary -l $D/primary.log -w start >/dev/null
P="$B/psql -h 127.0.0.1 -p $P1 -U postgres -qAt"
$P -c "CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD 'x'"
$P -c "CREATE DATABASE hub"
$P -d hub -c "CREATE TABLE t (id int primary key, v text); INSERT INTO t VALUES (1, 'one')"
# The hot standby.
$B/pg_basebackup -h 127.0.0.1 -p $P1 -U replicator -D $D/standby -R -X stream --checkpoint=fast
echo "port = $P2" >> $D/standby/postgresql.auto.conf
$B/pg_ctl -D $D/standby -l $D/standby.log -w start >/dev/null
S="$B/psql -h 127.0.0.1 -p $P2 -U postgres -qAt"
$P -d hub -c "INSERT INTO t VALUES (2, 'two')"
for i in $(seq 50); do [ "$($S -d hub -c 'select count(*) from t')" = 2 ] && break; sleep 0.1; done
echo "standby in recovery: $($S -c 'select pg_is_in_recovery()'), rows: $($S -d hub -c 'select count(*) from t')"
$P -c "select application_name, state from pg_stat_replication"
# Point-in-time recovery: a base backup, changes, a mistake; recover to just before it.
$B/pg_basebackup -h 127.0.0.1 -p $P1 -U replicator -D $D/base -Ft -z -X none --checkpoint=fast
$P -d hub -c "INSERT INTO t VALUES (3, 'three')"
T=$($P -c "select now()")
sleep 1
$P -d hub -c "DELETE FROM t"
$P -c "select pg_switch_wal()" >/dev/null
for i in $(seq 100); do [ "$($P -c 'select last_archived_wal is not null and last_archived_time > now() - interval '"'"'5 s'"'"' from pg_stat_archiver')" = t ] && break; sleep 0.1; done
mkdir -m 700 $D/pitr
tar -xzf $D/base/base.tar.gz -C $D/pitr
rm -rf $D/pitr/pg_wal/*
cat >> $D/pitr/postgresql.auto.conf <<CONF
port = $P3
archive_mode = off
restore_command = 'cp $D/archive/%f %p'
recovery_target_time = '$T'
recovery_target_action = 'promote'
CONF
touch $D/pitr/recovery.signal
$B/pg_ctl -D $D/pitr -l $D/pitr.log -w start >/dev/null
R="$B/psql -h 127.0.0.1 -p $P3 -U postgres -qAt"
for i in $(seq 100); do [ "$($R -c 'select pg_is_in_recovery()')" = f ] && break; sleep 0.1; done
rows=$($R -d hub -c "select string_agg(v, ',' order by id) from t")
echo "recovered to $T: $rows; primary now: $($P -d hub -c 'select count(*) from t') rows"
# Keeping the archive: remove the segments the oldest kept base backup does not need (it starts
# where its backup_label says).
segment=$(tar -xzOf $D/base/base.tar.gz backup_label | sed -n 's/^START WAL LOCATION: .*(file \(.*\))$/\1/p')
before=$(ls $D/archive | grep -vc '\.backup$')
$B/pg_archivecleanup $D/archive "$segment"
echo "archive: $before segments, after cleanup to $segment: $(ls $D/archive | grep -vc '\.backup$'), oldest $(ls $D/archive | grep -v '\.backup$' | sort | head -1)"
