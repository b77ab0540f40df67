# shellcheck shell=bash
# Starts each real component of the local stack on 127.0.0.1, on free ports, with its own data
# directory under $STATE, records its PID in $STATE/pids/<name>, and waits until it is ready.

# The test user's password: every character that breaks naive DSN building (issue 2).
HOSTILE_PASSWORD='h0st@le p:w/d?#%25&=+"\$ok'
APP_DB=aether_test
APP_USER=aether_app

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# as_user USER CMD...: the database servers refuse to run as root, so drop to their system user.
as_user() {
  local user=$1; shift
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}
own_dir() { mkdir -p "$2"; if [ "$(id -u)" -eq 0 ]; then chown -R "$1" "$2"; fi; }

# spawn NAME LOGFILE CMD...: start in its own session (so `down` can stop the whole process
# group), detached from this shell, PID recorded.
spawn() {
  local name=$1 logf=$2; shift 2
  setsid "$@" >"$logf" 2>&1 </dev/null &
  echo $! >"$STATE/pids/$name"
}
# spawn_as USER NAME LOGFILE CMD...
spawn_as() {
  local user=$1; shift
  if [ "$(id -u)" -eq 0 ]; then
    local name=$1 logf=$2; shift 2
    spawn "$name" "$logf" runuser -u "$user" -- "$@"
  else spawn "$@"; fi
}

# port_of NAME: the port NAME listened on before (so a restarted component comes back where
# its clients expect it), or a new free one; recorded in $STATE/ports/NAME.
port_of() {
  local f="$STATE/ports/$1"
  mkdir -p "$STATE/ports"
  [ -s "$f" ] || free_port >"$f"
  cat "$f"
}

wait_for() {
  local what=$1 timeout=$2 logf=$3; shift 3
  local i=0
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -ge $((timeout * 5)) ]; then
      echo "---- last lines of $logf ----" >&2; tail -n 30 "$logf" >&2 || true
      die "$what did not become ready within ${timeout}s (log: $logf)"
    fi
    sleep 0.2
  done
}

start_etcd() {
  local port peer dir
  port=$(port_of etcd); peer=$(port_of etcd-peer); dir="$STATE/etcd"
  mkdir -p "$dir"
  spawn etcd "$STATE/logs/etcd.log" "$(etcd_dir)/bin/etcd" --name stack --data-dir "$dir" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "stack=http://127.0.0.1:$peer" --unsafe-no-fsync --log-level warn
  ETCD_URL="http://127.0.0.1:$port"
  wait_for etcd 30 "$STATE/logs/etcd.log" curl -sf "$ETCD_URL/health"
}

# A private CA and serving certificate, a service-account key pair and static tokens: the
# envtest way, with RBAC on so tests can prove what a role may and may not do.
kube_pki() {
  local p="$STATE/pki"
  if [ -f "$p/tokens.csv" ]; then   # a restart: same CA, keys and tokens
    ADMIN_TOKEN=$(sed -n 's/^\([^,]*\),stack-admin,.*/\1/p' "$p/tokens.csv")
    NOBODY_TOKEN=$(sed -n 's/^\([^,]*\),stack-nobody,.*/\1/p' "$p/tokens.csv")
    return 0
  fi
  mkdir -p "$p"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=aether-dbhub-stack-ca" \
    -keyout "$p/ca.key" -out "$p/ca.crt" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$p/server.key" \
    -out "$p/server.csr" 2>/dev/null
  # reached from the host (loopback, the bridge) and from pods (the kubernetes Service)
  printf 'subjectAltName=IP:127.0.0.1,IP:%s,IP:%s.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    "$NODE_GW" "${NODE_SVC_CIDR%.*/*}" >"$p/ext"
  openssl x509 -req -in "$p/server.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -days 3650 -out "$p/server.crt" -extfile "$p/ext" 2>/dev/null
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  ADMIN_TOKEN=$(openssl rand -hex 24)
  NOBODY_TOKEN=$(openssl rand -hex 24)
  {
    echo "$ADMIN_TOKEN,stack-admin,stack-admin,system:masters"
    echo "$NOBODY_TOKEN,stack-nobody,stack-nobody,stack:unprivileged"
  } >"$p/tokens.csv"
  chmod 600 "$p"/*.key "$p/tokens.csv"
}

start_kube() {
  local port
  port=$(port_of kube-apiserver)
  ETCD_URL="http://127.0.0.1:$(port_of etcd)"
  kube_pki
  node_pki
  # On the bridge address: the host reaches it there and pods through the kubernetes Service
  # (an apiserver advertised on loopback gets no endpoints). Node authorization for the kubelet.
  spawn kube-apiserver "$STATE/logs/kube-apiserver.log" "$(kube_dir)/bin/kube-apiserver" \
    --etcd-servers "$ETCD_URL" --bind-address "$NODE_GW" --advertise-address "$NODE_GW" \
    --secure-port "$port" --cert-dir "$STATE/pki" \
    --tls-cert-file "$STATE/pki/server.crt" --tls-private-key-file "$STATE/pki/server.key" \
    --client-ca-file "$STATE/pki/ca.crt" \
    --kubelet-client-certificate "$STATE/pki/kubelet-client.crt" \
    --kubelet-client-key "$STATE/pki/kubelet-client.key" --kubelet-preferred-address-types InternalIP \
    --service-cluster-ip-range "$NODE_SVC_CIDR" --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --token-auth-file "$STATE/pki/tokens.csv" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$STATE/pki/sa.pub" \
    --service-account-signing-key-file "$STATE/pki/sa.key" \
    --allow-privileged=true --profiling=false -v=0
  KUBE_URL="https://$NODE_GW:$port"
  write_kubeconfig "$STATE/kubeconfig" "$ADMIN_TOKEN"
  write_kubeconfig "$STATE/kubeconfig-nobody" "$NOBODY_TOKEN"
  wait_for kube-apiserver 120 "$STATE/logs/kube-apiserver.log" \
    curl -sf --cacert "$STATE/pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$KUBE_URL/readyz"
  wait_for "namespace default" 60 "$STATE/logs/kube-apiserver.log" \
    curl -sf --cacert "$STATE/pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" \
    "$KUBE_URL/api/v1/namespaces/default"
}

write_kubeconfig() {
  local file=$1 token=$2
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: stack
  cluster:
    server: $KUBE_URL
    certificate-authority-data: $(base64 -w0 "$STATE/pki/ca.crt")
users:
- name: stack
  user:
    token: $token
contexts:
- name: stack
  context: {cluster: stack, user: stack, namespace: default}
current-context: stack
EOF
  chmod 600 "$file"
}

start_neo4j() {
  local port dir
  port=$(port_of neo4j); dir="$STATE/neo4j"
  mkdir -p "$dir"
  spawn neo4j "$STATE/logs/neo4j.log" java -Xms256m -Xmx768m \
    -cp "$(neo4j_dir)/classes:$(cat "$(neo4j_dir)/classpath")" Neo4jLauncher "$dir" "$port" "$NODE_GW"
  NEO4J_URI="bolt://$NODE_GW:$port"
  wait_for neo4j 180 "$STATE/logs/neo4j.log" grep -q '^READY' "$STATE/logs/neo4j.log"
}

# SQL string literal for PostgreSQL (standard_conforming_strings): only ' is special.
pg_lit() { printf "'%s'" "${1//\'/\'\'}"; }
# MariaDB string literal: backslash escapes are on by default.
my_lit() { local v=${1//\\/\\\\}; printf "'%s'" "${v//\'/\\\'}"; }

start_postgres() {
  local bin port dir sock
  bin=$(pg_bin) || die "PostgreSQL server binaries not found (apt-get install postgresql)"
  port=$(port_of postgres); dir="$DATA/postgres"; sock="$DATA/sock"
  local fresh=0
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    fresh=1
    mkdir -p "$dir/data" "$sock"; chmod 777 "$sock"
    echo "stack-admin" >"$dir/pwfile"
    own_dir postgres "$dir"
    as_user postgres "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-instructions >"$STATE/logs/initdb.log" 2>&1 ||
      die "initdb failed (log: $STATE/logs/initdb.log)"
    # pods (the node's pod range, on the bridge) connect with passwords too
    echo "host all all $NODE_POD_CIDR scram-sha-256" >>"$dir/data/pg_hba.conf"
  fi
  spawn_as postgres postgres "$STATE/logs/postgres.log" "$bin/postgres" -D "$dir/data" \
    -p "$port" -k "$sock" -c "listen_addresses=127.0.0.1,$NODE_GW" -c fsync=off -c max_connections=200
  PG_PORT=$port
  wait_for postgres 60 "$STATE/logs/postgres.log" "$bin/pg_isready" -h 127.0.0.1 -p "$port"
  [ "$fresh" = 1 ] || return 0
  local psql=(as_user postgres "$bin/psql" -h "$sock" -p "$port" -U postgres -v ON_ERROR_STOP=1 -q)
  "${psql[@]}" -d postgres -c "CREATE ROLE $APP_USER LOGIN PASSWORD $(pg_lit "$HOSTILE_PASSWORD")" &&
    "${psql[@]}" -d postgres -c "CREATE DATABASE $APP_DB OWNER $APP_USER" ||
    die "creating the PostgreSQL test user/database failed"
}

start_mariadb() {
  local port dir sock
  port=$(port_of mariadb); dir="$DATA/mariadb"; sock="$DATA/sock/mariadb.sock"
  local fresh=0
  if [ ! -d "$dir/data/mysql" ]; then
    fresh=1
    mkdir -p "$dir/data"; own_dir mysql "$dir"
    mariadb-install-db --no-defaults --datadir="$dir/data" --user="$( [ "$(id -u)" -eq 0 ] && echo mysql || id -un)" \
      --auth-root-authentication-method=normal --skip-test-db >"$STATE/logs/mariadb-install.log" 2>&1 ||
      die "mariadb-install-db failed (log: $STATE/logs/mariadb-install.log)"
    own_dir mysql "$dir"
  fi
  local userflag=(); [ "$(id -u)" -eq 0 ] && userflag=(--user=mysql)
  spawn mariadb "$STATE/logs/mariadb.log" mariadbd --no-defaults --datadir="$dir/data" \
    --port="$port" --bind-address="127.0.0.1,$NODE_GW" --socket="$sock" --pid-file="$dir/mariadbd.pid" \
    --skip-name-resolve --innodb-flush-log-at-trx-commit=0 --skip-log-bin "${userflag[@]}"
  MY_PORT=$port
  wait_for mariadb 60 "$STATE/logs/mariadb.log" mariadb-admin --no-defaults --socket="$sock" -uroot ping
  [ "$fresh" = 1 ] || return 0
  mariadb --no-defaults --socket="$sock" -uroot -e "
    CREATE DATABASE $APP_DB;
    CREATE USER '$APP_USER'@'%' IDENTIFIED BY $(my_lit "$HOSTILE_PASSWORD");
    GRANT ALL PRIVILEGES ON $APP_DB.* TO '$APP_USER'@'%';
    CREATE USER 'stack_admin'@'%' IDENTIFIED BY 'stack-admin';
    GRANT ALL PRIVILEGES ON *.* TO 'stack_admin'@'%' WITH GRANT OPTION;
    FLUSH PRIVILEGES;" || die "creating the MariaDB test user/database failed"
}
