# shellcheck shell=bash
# Throwaway PostgreSQL, MariaDB, Redis and OpenSSH instances, and moto (a
# local AWS STS and IAM), for the test suite. Source, don't run. Needs
# scripts/lib/common.sh; moto needs deps_install_aws_tools (scripts/lib/deps.sh)
# to have set AWS_TOOLS.
#
#   services_start       start them all (in parallel), export HALLPASS_TEST_*
#   services_check       talk to each running service with its real client
#   services_stop        stop everything started and delete the temp dir
#
# Every service lives in its own directory under one `mktemp -d` directory
# ($HALLPASS_TEST_TMP), listens on a free port on 127.0.0.1 only, and is found
# again at cleanup through its pid file, so services_stop works even when the
# start-up was interrupted half way.
#
# A service that fails to start is fatal when CI=true; otherwise a warning is
# printed and its HALLPASS_TEST_* variables are left unset.

SERVICES=(postgres mysql redis ssh moto)

SVC_TMP=""
SVC_PG_OSUSER=""
SVC_TIMEOUT=${HALLPASS_SERVICE_TIMEOUT:-60}
declare -gA SVC_STARTER_PID=()

# Run a command as the (non-root) OS user that owns the PostgreSQL cluster.
as_pg_user() {
  if ((EUID == 0)); then
    runuser -u "$SVC_PG_OSUSER" -- "$@"
  else
    "$@"
  fi
}

# initdb refuses to run as root: use the `postgres` system user when there is
# one, else a dedicated system user.
svc_pick_pg_osuser() {
  if ((EUID != 0)); then
    SVC_PG_OSUSER=$(id -un)
  elif id -u postgres >/dev/null 2>&1; then
    SVC_PG_OSUSER=postgres
  else
    SVC_PG_OSUSER=hallpass-test
    if ! id -u "$SVC_PG_OSUSER" >/dev/null 2>&1; then
      useradd --system --no-create-home --user-group \
        --home-dir /nonexistent --shell /usr/sbin/nologin "$SVC_PG_OSUSER"
    fi
  fi
}

# Append KEY=VALUE lines for the service to its env file (read by
# services_start once the starter finished successfully).
svc_env() {
  local svc=$1
  shift
  printf '%s\n' "$@" >>"$SVC_TMP/$svc.env"
}

svc_log_tail() {
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    printf -- '--- last lines of %s:\n' "$f" >&2
    tail -n 25 -- "$f" >&2
  done
}

# ---------------------------------------------------------------- PostgreSQL

start_postgres() {
  local port=$1 dir=$SVC_TMP/postgres bindir
  bindir=$(pg_bindir) || {
    warn "postgres: no server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin"
    return 1
  }
  mkdir -p "$dir/sock"
  if ((EUID == 0)); then
    chown -R "$SVC_PG_OSUSER:" "$dir"
  fi
  # The server user may not be able to read the caller's cwd.
  cd "$dir" || return 1

  as_pg_user "$bindir/initdb" --pgdata="$dir/data" --username=postgres \
    --auth=trust --encoding=UTF8 --no-locale --no-sync --no-instructions \
    >"$dir/initdb.log" 2>&1 || {
    warn "postgres: initdb failed"
    svc_log_tail "$dir/initdb.log"
    return 1
  }

  cat >>"$dir/data/postgresql.conf" <<EOF

# --- hallpass scripts/test ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF

  as_pg_user "$bindir/pg_ctl" --pgdata="$dir/data" --log="$dir/postgres.log" \
    --wait --timeout="$SVC_TIMEOUT" --silent start >"$dir/pg_ctl.log" 2>&1 || {
    warn "postgres: pg_ctl start failed"
    svc_log_tail "$dir/pg_ctl.log" "$dir/postgres.log"
    return 1
  }

  local pid
  pid=$(read_pidfile "$dir/data/postmaster.pid") || true
  wait_until "$SVC_TIMEOUT" "$pid" \
    pg_isready --quiet --host=127.0.0.1 --port="$port" --username=postgres --dbname=postgres || {
    warn "postgres: not accepting connections on 127.0.0.1:$port"
    svc_log_tail "$dir/postgres.log"
    return 1
  }

  svc_env postgres \
    "HALLPASS_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/postgres"
}

stop_postgres() {
  local dir=$SVC_TMP/postgres pid bindir
  pid=$(read_pidfile "$dir/data/postmaster.pid") || return 0
  pid_alive "$pid" || return 0
  if bindir=$(pg_bindir); then
    (cd / && as_pg_user "$bindir/pg_ctl" --pgdata="$dir/data" --mode=immediate \
      --wait --timeout=15 --silent stop) >/dev/null 2>&1 || true
  fi
  stop_pid "$pid" 5
}

# ------------------------------------------------------------------- MariaDB

start_mysql() {
  local port=$1 dir=$SVC_TMP/mysql installer server
  installer=$(find_cmd mariadb-install-db) || {
    warn "mysql: mariadb-install-db not found"
    return 1
  }
  server=$(find_cmd mariadbd) || {
    warn "mysql: mariadbd not found"
    return 1
  }
  local user_opt=()
  ((EUID == 0)) && user_opt=(--user=root)
  # Small and unsafe-but-fast InnoDB; same values for bootstrap and server.
  local innodb_opts=(--innodb-buffer-pool-size=64M --innodb-log-file-size=16M
    --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0)
  mkdir -p "$dir/tmp"
  cd "$dir" || return 1

  # --no-defaults everywhere: the machine's /etc/mysql config (and its own
  # server on 3306) must not leak in.
  "$installer" --no-defaults --datadir="$dir/data" "${user_opt[@]}" \
    --auth-root-authentication-method=normal --skip-test-db "${innodb_opts[@]}" \
    >"$dir/install-db.log" 2>&1 || {
    warn "mysql: mariadb-install-db failed"
    svc_log_tail "$dir/install-db.log"
    return 1
  }

  "$server" --no-defaults "${user_opt[@]}" \
    --datadir="$dir/data" --tmpdir="$dir/tmp" \
    --socket="$dir/mysqld.sock" --pid-file="$dir/mariadbd.pid" \
    --port="$port" --bind-address=127.0.0.1 --skip-networking=0 \
    --log-error="$dir/mariadbd.log" \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --max-connections=300 "${innodb_opts[@]}" \
    --skip-log-bin \
    </dev/null >"$dir/mariadbd.out" 2>&1 &
  local pid=$!
  # Our own pid file, written at once, so cleanup finds the server even when
  # interrupted before mariadbd wrote its own.
  echo "$pid" >"$dir/server.pid"

  local admin
  admin=$(find_cmd mariadb-admin) || admin=$(find_cmd mysqladmin) || {
    warn "mysql: mariadb-admin not found"
    return 1
  }
  wait_until "$SVC_TIMEOUT" "$pid" \
    "$admin" --no-defaults --protocol=tcp -h127.0.0.1 -P"$port" -uroot \
    --connect-timeout=2 ping || {
    warn "mysql: mariadbd not answering on 127.0.0.1:$port"
    svc_log_tail "$dir/mariadbd.log" "$dir/mariadbd.out"
    return 1
  }
  # `ping` succeeds even when access is denied: make sure root can log in
  # over TCP without a password.
  mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"$port" -uroot \
    -e 'SELECT 1' >/dev/null 2>"$dir/login.err" || {
    warn "mysql: root cannot log in over TCP without a password"
    svc_log_tail "$dir/login.err"
    return 1
  }

  svc_env mysql "HALLPASS_TEST_MYSQL_URL=mysql://root@127.0.0.1:$port/"
}

stop_mysql() {
  local dir=$SVC_TMP/mysql pid
  for pid in $(read_pidfile "$dir/server.pid") $(read_pidfile "$dir/mariadbd.pid"); do
    stop_pid "$pid" 15
  done
}

# --------------------------------------------------------------------- Redis

redis_ping() {
  [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]
}

start_redis() {
  local port=$1 dir=$SVC_TMP/redis server
  server=$(find_cmd redis-server) || {
    warn "redis: redis-server not found"
    return 1
  }
  mkdir -p "$dir"
  cd "$dir" || return 1
  "$server" --port "$port" --bind 127.0.0.1 \
    --save '' --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    </dev/null >"$dir/redis.out" 2>&1 || {
    warn "redis: redis-server failed to start"
    svc_log_tail "$dir/redis.out" "$dir/redis.log"
    return 1
  }
  wait_until "$SVC_TIMEOUT" "" redis_ping "$port" || {
    warn "redis: no PONG from 127.0.0.1:$port"
    svc_log_tail "$dir/redis.log"
    return 1
  }
  svc_env redis "HALLPASS_TEST_REDIS_URL=redis://127.0.0.1:$port"
}

stop_redis() {
  local pid
  pid=$(read_pidfile "$SVC_TMP/redis/redis.pid") || return 0
  stop_pid "$pid" 10
}

# ------------------------------------------------------------------- OpenSSH

ssh_ready() {
  [[ -n $(ssh-keyscan -T 2 -p "$1" 127.0.0.1 2>/dev/null) ]]
}

start_ssh() {
  local port=$1 dir=$SVC_TMP/ssh sshd=/usr/sbin/sshd
  [[ -x $sshd ]] || {
    warn "ssh: $sshd not found"
    return 1
  }
  mkdir -p "$dir"
  cd "$dir" || return 1
  # Privilege separation directory.
  if ((EUID == 0)); then
    mkdir -p /run/sshd
    chmod 0755 /run/sshd
  fi
  ssh-keygen -q -t ed25519 -N '' -C hallpass-test-host \
    -f "$dir/ssh_host_ed25519_key" >/dev/null || {
    warn "ssh: ssh-keygen failed"
    return 1
  }

  # For most keywords sshd uses the FIRST value it sees, and keywords after a
  # `Match` line only apply to that match: so there is no Match block here, and
  # tests can simply append lines (TrustedUserCAKeys ..., AuthorizedPrincipalsFile
  # ...) and reload with `kill -HUP $(cat $HALLPASS_TEST_SSHD_PIDFILE)`.
  cat >"$dir/sshd_config" <<EOF
# Throwaway sshd for hallpass tests (scripts/test).
ListenAddress 127.0.0.1
Port $port
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AuthorizedKeysFile .ssh/authorized_keys
MaxStartups 100:30:200
MaxSessions 100
LogLevel VERBOSE
Subsystem sftp internal-sftp
EOF
  # OpenSSH >= 9.8 penalises addresses with failed logins; tests fail logins on
  # purpose from 127.0.0.1. Older versions reject the keyword, so probe first.
  cp "$dir/sshd_config" "$dir/sshd_config.probe"
  echo 'PerSourcePenalties no' >>"$dir/sshd_config.probe"
  if "$sshd" -t -f "$dir/sshd_config.probe" >/dev/null 2>&1; then
    echo 'PerSourcePenalties no' >>"$dir/sshd_config"
  fi
  rm -f "$dir/sshd_config.probe"

  "$sshd" -t -f "$dir/sshd_config" >"$dir/sshd.out" 2>&1 || {
    warn "ssh: invalid sshd config"
    svc_log_tail "$dir/sshd.out"
    return 1
  }
  # sshd daemonizes; -E sends its log to a file.
  "$sshd" -f "$dir/sshd_config" -E "$dir/sshd.log" </dev/null >>"$dir/sshd.out" 2>&1 || {
    warn "ssh: sshd failed to start"
    svc_log_tail "$dir/sshd.out" "$dir/sshd.log"
    return 1
  }
  wait_until "$SVC_TIMEOUT" "" ssh_ready "$port" || {
    warn "ssh: sshd not answering on 127.0.0.1:$port"
    svc_log_tail "$dir/sshd.log"
    return 1
  }
  printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1-2 "$dir/ssh_host_ed25519_key.pub")" \
    >"$dir/known_hosts"

  svc_env ssh \
    "HALLPASS_TEST_SSH_HOST=127.0.0.1" \
    "HALLPASS_TEST_SSH_PORT=$port" \
    "HALLPASS_TEST_SSH_HOST_KEY=$dir/ssh_host_ed25519_key.pub" \
    "HALLPASS_TEST_SSH_KNOWN_HOSTS=$dir/known_hosts" \
    "HALLPASS_TEST_SSHD_CONFIG=$dir/sshd_config" \
    "HALLPASS_TEST_SSHD_PIDFILE=$dir/sshd.pid" \
    "HALLPASS_TEST_SSHD_LOG=$dir/sshd.log" \
    "HALLPASS_TEST_SSHD_BIN=$sshd"
}

stop_ssh() {
  local pid
  pid=$(read_pidfile "$SVC_TMP/ssh/sshd.pid") || return 0
  stop_pid "$pid" 10
}

# ---------------------------------------------------------------------- moto

moto_ready() {
  curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$1/moto-api/"
}

# moto's server answers STS and IAM (and every other service) on one port,
# takes any keys and keeps everything in memory. It runs from the venv of
# deps_install_aws_tools, whose python (with boto3) the tests use too.
start_moto() {
  local port=$1 dir=$SVC_TMP/moto tools=${AWS_TOOLS:-}
  [[ -n $tools && -x $tools/moto_server ]] || {
    warn "moto: moto_server is not installed (deps_install_aws_tools failed or was not run)"
    return 1
  }
  mkdir -p "$dir"
  cd "$dir" || return 1
  "$tools/moto_server" -H 127.0.0.1 -p "$port" </dev/null >"$dir/moto.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/moto.pid"
  wait_until "$SVC_TIMEOUT" "$pid" moto_ready "$port" || {
    warn "moto: not answering on 127.0.0.1:$port"
    svc_log_tail "$dir/moto.log"
    return 1
  }
  svc_env moto \
    "HALLPASS_TEST_AWS_ENDPOINT=http://127.0.0.1:$port" \
    "HALLPASS_TEST_AWS_PYTHON=$tools/python"
}

stop_moto() {
  local pid
  pid=$(read_pidfile "$SVC_TMP/moto/moto.pid") || return 0
  stop_pid "$pid" 10
}

# The tests' flow with AWS's own SDK: create a role, assume it, and call STS
# with the session's keys taken from the environment alone.
moto_assume_role_check() {
  env AWS_ACCESS_KEY_ID=AKIAHALLPASSCHECK001 AWS_SECRET_ACCESS_KEY=hallpass-check \
    AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
    "$HALLPASS_TEST_AWS_PYTHON" - <<'PY'
import json, os, boto3
endpoint = os.environ["HALLPASS_TEST_AWS_ENDPOINT"]
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
         "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]}
role = boto3.client("iam", endpoint_url=endpoint).create_role(
    RoleName="hallpass-check", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
keys = boto3.client("sts", endpoint_url=endpoint).assume_role(
    RoleArn=role["Arn"], RoleSessionName="hallpass-check")["Credentials"]
os.environ.update(AWS_ACCESS_KEY_ID=keys["AccessKeyId"], AWS_SECRET_ACCESS_KEY=keys["SecretAccessKey"],
                  AWS_SESSION_TOKEN=keys["SessionToken"], AWS_ENDPOINT_URL=endpoint)
print("assumed", boto3.session.Session().client("sts").get_caller_identity()["Arn"])
PY
}

# ------------------------------------------------------------------ lifecycle

services_start() {
  # Never let coordinates from the caller's environment leak through for a
  # service that then fails to start.
  unset HALLPASS_TEST_TMP HALLPASS_TEST_POSTGRES_URL HALLPASS_TEST_MYSQL_URL \
    HALLPASS_TEST_REDIS_URL HALLPASS_TEST_SSH_HOST HALLPASS_TEST_SSH_PORT \
    HALLPASS_TEST_SSH_HOST_KEY HALLPASS_TEST_SSH_KNOWN_HOSTS \
    HALLPASS_TEST_SSHD_CONFIG HALLPASS_TEST_SSHD_PIDFILE HALLPASS_TEST_SSHD_LOG \
    HALLPASS_TEST_SSHD_BIN HALLPASS_TEST_AWS_ENDPOINT HALLPASS_TEST_AWS_PYTHON

  SVC_TMP=$(mktemp -d -t hallpass-test.XXXXXX)
  # Other users (the postgres server user) must be able to reach their dirs.
  chmod 0755 "$SVC_TMP"
  export HALLPASS_TEST_TMP=$SVC_TMP
  info "temp dir: $SVC_TMP"

  svc_pick_pg_osuser

  local ports svc i=0
  read -r -a ports <<<"$(pick_free_ports "${#SERVICES[@]}")"
  ((${#ports[@]} == ${#SERVICES[@]})) || die "could not find free ports on 127.0.0.1"

  # Start all services in parallel; each starter runs in a subshell and
  # writes its variables to $SVC_TMP/<svc>.env when the service is ready.
  for svc in "${SERVICES[@]}"; do
    (
      t0=$(now_us)
      "start_$svc" "${ports[i]}"
      printf '%s\n' "$(fmt_duration "$t0")" >"$SVC_TMP/$svc.took"
    ) >"$SVC_TMP/$svc.start.log" 2>&1 &
    SVC_STARTER_PID[$svc]=$!
    i=$((i + 1))
  done

  local failed=() key value
  for svc in "${SERVICES[@]}"; do
    if wait "${SVC_STARTER_PID[$svc]}" && [[ -s $SVC_TMP/$svc.env ]]; then
      while IFS='=' read -r key value; do
        export "$key=$value"
      done <"$SVC_TMP/$svc.env"
      info "$(printf '%-9s ready in %s' "$svc" "$(cat "$SVC_TMP/$svc.took")")"
    else
      failed+=("$svc")
      printf -- '--- %s start-up output:\n' "$svc" >&2
      cat -- "$SVC_TMP/$svc.start.log" >&2 || true
    fi
    unset 'SVC_STARTER_PID[$svc]'
  done

  if ((${#failed[@]} > 0)); then
    if is_ci; then
      die "CI=true and these test services failed to start: ${failed[*]} (see output above)"
    fi
    loud_warning "these test services failed to start: ${failed[*]}" \
      "their HALLPASS_TEST_* variables are NOT set; tests needing them will skip or fail." \
      "(With CI=true this is a hard error.)"
  fi
}

# Prove each started service works with its real client and the exported
# coordinates. Returns non-zero if any service is missing or broken.
svc_check_one() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    info "$(printf 'check %-9s ok: %s' "$name" "$(tr '\n' ' ' <<<"$out" | cut -c1-100)")"
  else
    warn "check $name FAILED: $out"
    return 1
  fi
}

# Exercise the flow the tests use: trust a fresh user CA via an appended
# TrustedUserCAKeys line, reload sshd with SIGHUP, log in with a certificate.
# The original config is restored (and reloaded) afterwards.
ssh_cert_login_check() {
  local d=$HALLPASS_TEST_TMP/check-ssh-ca cfg=$HALLPASS_TEST_SSHD_CONFIG user pid rc=0
  user=$(id -un)
  pid=$(read_pidfile "$HALLPASS_TEST_SSHD_PIDFILE") || return 1
  mkdir -p "$d"
  ssh-keygen -q -t ed25519 -N '' -C check-ca -f "$d/ca" &&
    ssh-keygen -q -t ed25519 -N '' -C check-user -f "$d/user" &&
    ssh-keygen -q -s "$d/ca" -I check -n "$user" -V -1m:+10m "$d/user.pub" || return 1
  cp "$cfg" "$d/sshd_config.orig"
  echo "TrustedUserCAKeys $d/ca.pub" >>"$cfg"
  kill -HUP "$pid"
  local ssh_cmd=(ssh -F none -i "$d/user" -o IdentitiesOnly=yes -o BatchMode=yes
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$HALLPASS_TEST_SSH_KNOWN_HOSTS"
    -o ConnectTimeout=5 -p "$HALLPASS_TEST_SSH_PORT" "$user@127.0.0.1")
  # sshd re-executes itself on SIGHUP: retry while it comes back.
  wait_until 10 "" "${ssh_cmd[@]}" true || rc=1
  if ((rc == 0)); then
    # shellcheck disable=SC2016 # expanded on the remote side
    "${ssh_cmd[@]}" 'echo "certificate login as $(id -un) after SIGHUP reload"' || rc=1
  fi
  cp "$d/sshd_config.orig" "$cfg"
  kill -HUP "$pid"
  wait_until 10 "" ssh_ready "$HALLPASS_TEST_SSH_PORT" || rc=1
  return "$rc"
}

services_check() {
  local bad=0
  if [[ -n ${HALLPASS_TEST_POSTGRES_URL:-} ]]; then
    svc_check_one postgres psql "$HALLPASS_TEST_POSTGRES_URL" -X -Atqc 'select 1' || bad=1
  else
    warn "check postgres: not running"
    bad=1
  fi
  if [[ -n ${HALLPASS_TEST_MYSQL_URL:-} ]]; then
    local my_port=${HALLPASS_TEST_MYSQL_URL##*:}
    my_port=${my_port%/}
    svc_check_one mysql mariadb --no-defaults -h127.0.0.1 -P"$my_port" -uroot -N -e 'select 1' || bad=1
  else
    warn "check mysql: not running"
    bad=1
  fi
  if [[ -n ${HALLPASS_TEST_REDIS_URL:-} ]]; then
    svc_check_one redis redis-cli -u "$HALLPASS_TEST_REDIS_URL" ping || bad=1
  else
    warn "check redis: not running"
    bad=1
  fi
  if [[ -n ${HALLPASS_TEST_SSH_PORT:-} ]]; then
    svc_check_one ssh ssh-keyscan -T 5 -t ed25519 -p "$HALLPASS_TEST_SSH_PORT" 127.0.0.1 || bad=1
    if ((EUID == 0)); then
      svc_check_one ssh-cert ssh_cert_login_check || bad=1
    else
      info "check ssh-cert  skipped (certificate login check needs root)"
    fi
  else
    warn "check ssh: not running"
    bad=1
  fi
  if [[ -n ${HALLPASS_TEST_AWS_ENDPOINT:-} ]]; then
    svc_check_one moto moto_assume_role_check || bad=1
  else
    warn "check moto: not running"
    bad=1
  fi
  return "$bad"
}

services_stop() {
  [[ -n $SVC_TMP && -d $SVC_TMP ]] || return 0
  local svc pid pids=()

  # Interrupted during start-up: kill the starters and everything below them
  # (initdb, pg_ctl, mariadb-install-db and their helpers) outright, before
  # they react to the signal by writing more files.
  if ((${#SVC_STARTER_PID[@]} > 0)); then
    mapfile -t pids < <(proc_descendants "${SVC_STARTER_PID[@]}")
    kill_wait "${SVC_STARTER_PID[@]}" "${pids[@]}"
    for pid in "${SVC_STARTER_PID[@]}"; do
      wait "$pid" 2>/dev/null || true
    done
    SVC_STARTER_PID=()
  fi

  for svc in "${SERVICES[@]}"; do
    "stop_$svc" || true
  done

  # Safety net: anything still running with our temp dir on its command line
  # is ours.
  mapfile -t pids < <(pgrep -f -- "$SVC_TMP/" 2>/dev/null || true)
  local mine=()
  for pid in "${pids[@]}"; do
    [[ $pid == "$$" || $pid == "$BASHPID" ]] || mine+=("$pid")
  done
  kill_wait "${mine[@]}"

  # Helpers of a killed server may still be exiting and writing: retry.
  local i
  for ((i = 0; i < 50; i++)); do
    rm -rf -- "$SVC_TMP" 2>/dev/null
    [[ -e $SVC_TMP ]] || break
    sleep 0.1
  done
  [[ -e $SVC_TMP ]] && warn "could not remove $SVC_TMP"
  SVC_TMP=""
}
