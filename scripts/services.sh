#!/usr/bin/env bash
# Make sure the Redis and PostgreSQL servers the tests use are up on 127.0.0.1.
# Uses them where already running; starts them where installed; installs them (Debian) where not.
set -euo pipefail

have_redis() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
have_pg() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
wait_for() { for _ in $(seq 1 60); do "$1" && return 0; sleep 0.5; done; echo "services: $2 did not start" >&2; return 1; }

apt_install() {
  if ! command -v apt-get >/dev/null; then echo "services: need $* but apt-get is not available" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "$@" >/dev/null
}

if ! have_redis; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for have_redis redis
fi

if ! have_pg; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then apt_install postgresql; fi
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  conf=/etc/postgresql/$ver/main
  # Trust local TCP connections: the tests use the `postgres` role on 127.0.0.1 only.
  if ! grep -q "syndicate-tests" "$conf/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust # syndicate-tests' "$conf/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || pg_ctlcluster "$ver" main start
  wait_for have_pg postgresql
fi
# Dovecot (IMAP) for the bounce-mailbox tests: they start a private instance of their own on a
# free loopback port (tests/imapserver.py); only the binary is needed here, the system's service
# is never started.
if ! command -v dovecot >/dev/null && [ ! -x /usr/sbin/dovecot ]; then apt_install dovecot-imapd; fi
echo "services: redis on 127.0.0.1:6379, postgresql on 127.0.0.1:5432, dovecot installed"
