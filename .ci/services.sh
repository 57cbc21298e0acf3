#!/usr/bin/env bash
# make test needs PostgreSQL, Redis and RabbitMQ (one test runs Celery over it) and bubblewrap. Start them if
# they are down; fail loudly if that fails.
set -u

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if ! pg_up; then
  echo "PostgreSQL is down on 127.0.0.1:5432; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql 2>/dev/null | head -1)" main start 2>&1 || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! redis_up; then
  echo "Redis is down on 127.0.0.1:6379; starting it"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/redis-switchboard.log 2>&1 || true
  for _ in $(seq 1 30); do redis_up && break; sleep 1; done
fi

if ! rabbit_up; then
  echo "RabbitMQ is down on 127.0.0.1:5672; starting it"
  rabbitmq-server -detached 2>&1 || true
  for _ in $(seq 1 60); do rabbit_up && break; sleep 1; done
fi

# The agents' sandbox (inference/agents/sandbox) runs model-written code inside bubblewrap's namespaces,
# and its tests require them.
if [ ! -x /usr/bin/bwrap ]; then
  echo "bubblewrap (/usr/bin/bwrap) is missing; installing it"
  as_root=""; [ "$(id -u)" = 0 ] || as_root="sudo -n"
  $as_root apt-get install -y bubblewrap 2>&1 || { $as_root apt-get update 2>&1 && $as_root apt-get install -y bubblewrap 2>&1; } || true
fi

failed=0
[ -x /usr/bin/bwrap ] || { echo "error: /usr/bin/bwrap is missing and could not be installed (apt-get install -y bubblewrap)" >&2; failed=1; }
pg_up || { echo "error: PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started" >&2; failed=1; }
redis_up || { echo "error: Redis is not reachable on 127.0.0.1:6379 and could not be started" >&2; failed=1; }
rabbit_up || { echo "error: RabbitMQ is not reachable on 127.0.0.1:5672 and could not be started" >&2; failed=1; }
exit $failed
