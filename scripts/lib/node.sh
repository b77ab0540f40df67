# shellcheck shell=bash
# The stack's single Kubernetes node: kube-controller-manager, kube-scheduler, containerd (Debian's,
# with runc and the CNI bridge plugin), kubelet, kube-proxy and CoreDNS, next to the stack's etcd
# and kube-apiserver. Recipe and the traps behind each setting: ../shared/k8s-node/README.md.
#
# Network rule: traffic stays on loopback and on the stack's bridge. Pods and Services get
# addresses on the bridge ($NODE_BRIDGE, $NODE_GW/24; Services $NODE_SVC_CIDR routed onto it), a
# firewall guard drops anything for those ranges that would leave by another interface and
# forwards only bridge-to-bridge packets, the bridge plugin masquerades nothing, and CoreDNS has
# no upstream forwarder. Everything the stack runs listens on 127.0.0.1 and/or $NODE_GW only.
#
# Node state lives under $DATA/node (short: unix socket paths are limited to 107 bytes); the
# paths kubelet, containerd 1.6 and libcni hard-code outside it are recorded when they did not
# exist before and removed by node_cleanup.

NODE_NAME=aether-dbhub-node
NODE_BRIDGE=aetherdb0
NODE_GW=10.244.0.1
NODE_POD_CIDR=10.244.0.0/24
NODE_SVC_CIDR=10.96.0.0/20
NODE_GUARD=aether_dbhub_guard
NODE_HARD_PATHS="/var/lib/kubelet /var/log/containers /run/containerd /run/netns /var/lib/cni /run/runc"
# The kubelet's container manager rewrites these at start-up (no warn-only mode): saved before,
# restored once the node is Ready, and again by node_cleanup.
NODE_SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
NODE_COMPONENTS=(containerd kube-controller-manager kube-scheduler kubelet kube-proxy coredns)

node_dir() { echo "$DATA/node"; }
node_conf() { echo "$ROOT/scripts/node"; }
ctr_() { ctr --address "$(node_dir)/containerd.sock" -n k8s.io "$@"; }
kubectl_() { "$(kube_dir)/bin/kubectl" --kubeconfig "$STATE/kubeconfig" --request-timeout=20s "$@"; }

# Machine-wide state this stack may have left behind (a crash, a killed CI job), saved under
# /run so a later `up` can put it back even when the state directory is gone.
NODE_SAVED=/run/aether-dbhub-node

# The bridge, the Service route and the guard; must exist before the apiserver binds to $NODE_GW.
node_net_up() {
  need ip "install iproute2"
  need nft "install nftables"
  mkdir -p "$NODE_SAVED"
  echo "$STATE" >"$NODE_SAVED/owner"
  [ -f "$NODE_SAVED/ip_forward" ] || cat /proc/sys/net/ipv4/ip_forward >"$NODE_SAVED/ip_forward"
  if [ ! -f "$NODE_SAVED/sysctl" ]; then
    local k; for k in $NODE_SYSCTLS; do echo "$k=$(sysctl -n "$k")"; done >"$NODE_SAVED/sysctl"
  fi
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
    ip addr add "$NODE_GW/24" dev "$NODE_BRIDGE"
  fi
  ip link set "$NODE_BRIDGE" up
  # A ClusterIP kube-proxy has not programmed yet must never follow the default route.
  ip route replace "$NODE_SVC_CIDR" dev "$NODE_BRIDGE" src "$NODE_GW"
  nft list table inet "$NODE_GUARD" >/dev/null 2>&1 && nft delete table inet "$NODE_GUARD"
  nft -f - <<EOF
table inet $NODE_GUARD {
  # forward only what enters and leaves the bridge (pod -> ClusterIP -> pod): pods have no way out
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname "$NODE_BRIDGE" oifname "$NODE_BRIDGE" accept
    iifname "$NODE_BRIDGE" counter drop comment "pod traffic leaving the bridge"
    oifname "$NODE_BRIDGE" counter drop comment "outside traffic entering the bridge"
  }
  # nothing for the pod or Service ranges leaves by another interface
  chain postrouting {
    type filter hook postrouting priority 300; policy accept;
    oifname != { "lo", "$NODE_BRIDGE" } ip daddr { $NODE_SVC_CIDR, $NODE_POD_CIDR } counter drop comment "cluster range off the bridge"
    oifname != { "lo", "$NODE_BRIDGE" } ip saddr $NODE_POD_CIDR counter drop comment "pod source off the bridge"
  }
}
EOF
}

# Certificates and tokens the node's components need, added to the stack's PKI (kube_pki).
node_pki() {
  local p="$STATE/pki"
  [ -f "$p/kubelet-client.crt" ] && return 0
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
    -keyout "$p/kubelet-client.key" -out "$p/kubelet-client.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' >"$p/client.ext"
  openssl x509 -req -in "$p/kubelet-client.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -days 3650 -out "$p/kubelet-client.crt" -extfile "$p/client.ext" 2>/dev/null
  {
    echo "$(openssl rand -hex 24),system:node:$NODE_NAME,kubelet,system:nodes"
    echo "$(openssl rand -hex 24),system:kube-controller-manager,kcm,"
    echo "$(openssl rand -hex 24),system:kube-scheduler,scheduler,"
    echo "$(openssl rand -hex 24),system:kube-proxy,kube-proxy,"
  } >>"$p/tokens.csv"
  chmod 600 "$p"/*.key "$p/tokens.csv"
}

node_token() { sed -n "s/^\([^,]*\),[^,]*,$1,.*/\1/p" "$STATE/pki/tokens.csv"; }

# render TEMPLATE OUT: the @VAR@ placeholders of scripts/node/* filled in.
render() {
  sed -e "s#@S@#$(node_dir)#g" -e "s#@BRIDGE@#$NODE_BRIDGE#g" -e "s#@GW@#$NODE_GW#g" \
    -e "s#@POD_CIDR@#$NODE_POD_CIDR#g" -e "s#@SVC_CIDR@#$NODE_SVC_CIDR#g" -e "s#@NODE@#$NODE_NAME#g" \
    -e "s#@KUBECONFIG@#$STATE/kubeconfig#g" -e "s#@STATE@#$STATE#g" -e "s#@CA@#$STATE/pki/ca.crt#g" \
    -e "s#@KP@#${KP:-0}#g" -e "s#@HP@#${HP:-0}#g" -e "s#@PHZ@#${PHZ:-0}#g" -e "s#@PMP@#${PMP:-0}#g" \
    "$1" >"$2"
}

# Starts the node's components against the running apiserver and waits until the node is Ready,
# the default ServiceAccount exists and cluster DNS answers.
start_node() {
  local s; s=$(node_dir)
  mkdir -p "$s"/{kubelet,cni-ipam,net.d,pod-logs}
  [ -f "$NODE_SAVED/preexisting" ] || { local d; for d in $NODE_HARD_PATHS; do [ -e "$d" ] && echo "$d"; done; true; } >"$NODE_SAVED/preexisting"
  node_pki_kubeconfigs
  local kbin; kbin="$(kube_dir)/bin"
  spawn kube-controller-manager "$STATE/logs/kube-controller-manager.log" "$kbin/kube-controller-manager" \
    --kubeconfig "$STATE/kcm.kubeconfig" --authentication-kubeconfig "$STATE/kcm.kubeconfig" \
    --authorization-kubeconfig "$STATE/kcm.kubeconfig" --bind-address 127.0.0.1 --secure-port "$(free_port)" \
    --leader-elect=false --service-account-private-key-file "$STATE/pki/sa.key" \
    --root-ca-file "$STATE/pki/ca.crt" --use-service-account-credentials=true \
    --service-cluster-ip-range "$NODE_SVC_CIDR" --allocate-node-cidrs=false --profiling=false \
    --flex-volume-plugin-dir "$s/kubelet/volume-plugins" --terminated-pod-gc-threshold 50
  spawn kube-scheduler "$STATE/logs/kube-scheduler.log" "$kbin/kube-scheduler" \
    --kubeconfig "$STATE/scheduler.kubeconfig" --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/scheduler.kubeconfig" --bind-address 127.0.0.1 \
    --secure-port "$(free_port)" --leader-elect=false --profiling=false
  render "$(node_conf)/10-bridge.conflist" "$s/net.d/10-bridge.conflist"
  render "$(node_conf)/containerd.toml" "$s/containerd.toml"
  spawn containerd "$STATE/logs/containerd.log" containerd --config "$s/containerd.toml"
  wait_for containerd 30 "$STATE/logs/containerd.log" ctr_ version
  node_import_images
  # The kubelet reclaims disk by deleting images (which cannot be pulled again here) once the
  # disk is nearly full: refuse to start the node on a nearly full disk instead.
  local avail_kb; avail_kb=$(df --output=avail -k "$s" | tail -1)
  [ "$avail_kb" -ge $((5 * 1024 * 1024)) ] ||
    die "less than 5 GiB free on $(df --output=target "$s" | tail -1): the kubelet would delete the node's images (free space, e.g. ~/.cache/aether-dbhub/target/debug/incremental)"
  KP=$(free_port) HP=$(free_port) render "$(node_conf)/kubelet-config.yaml" "$s/kubelet-config.yaml"
  spawn kubelet "$STATE/logs/kubelet.log" "$kbin/kubelet" --config "$s/kubelet-config.yaml" \
    --kubeconfig "$STATE/kubelet.kubeconfig" --hostname-override "$NODE_NAME" --node-ip "$NODE_GW" \
    --root-dir "$s/kubelet" --cert-dir "$s/kubelet/pki" --v=0
  PHZ=$(free_port) PMP=$(free_port) render "$(node_conf)/kube-proxy.yaml" "$s/kube-proxy.yaml"
  spawn kube-proxy "$STATE/logs/kube-proxy.log" "$kbin/kube-proxy" --config "$s/kube-proxy.yaml" --v=0
  render "$(node_conf)/Corefile" "$s/Corefile"
  spawn coredns "$STATE/logs/coredns.log" "$(coredns_dir)/bin/coredns" -conf "$s/Corefile"
  wait_for "node Ready" 120 "$STATE/logs/kubelet.log" sh -c \
    "'$(kube_dir)/bin/kubectl' --kubeconfig '$STATE/kubeconfig' get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  node_restore_sysctls
  wait_for "default ServiceAccount" 60 "$STATE/logs/kube-controller-manager.log" kubectl_ get sa default
  wait_for "cluster DNS" 30 "$STATE/logs/coredns.log" sh -c \
    "busybox nslookup kubernetes.default.svc.cluster.local $NODE_GW | grep -q '${NODE_SVC_CIDR%.*/*}.1'"
  kubectl_ apply -f "$(node_conf)/local-images-only.yaml" >/dev/null
}

node_pki_kubeconfigs() {
  node_pki
  local n; for n in kubelet kcm scheduler kube-proxy; do
    write_kubeconfig "$STATE/$n.kubeconfig" "$(node_token "$n")"
  done
}

node_restore_sysctls() {
  [ -f "$NODE_SAVED/sysctl" ] || return 0
  local kv; while read -r kv; do sysctl -qw "$kv"; done <"$NODE_SAVED/sysctl"
}

# The images pods may run (local-images-only.yaml admits these names and nothing else), imported
# from the archives build_images wrote: pause, DBHub, busybox (tests' client pods) and, when
# built (`scripts/stack image`), the service's own.
node_import_images() {
  local f; for f in "$(images_dir)"/*.tar; do
    [ -f "$f" ] && ctr_ images import --all-platforms "$f" >/dev/null
  done
  [ -f "$(images_dir)/dbhub.tar" ] && ctr_ images tag --force "$DBHUB_LOCAL_IMAGE" "$DBHUB_OFFICIAL_IMAGE" >/dev/null
  return 0
}

# Stops the node and undoes what it changed on the machine. Safe to run at any time, with or
# without a running node (a second `up` after a crash runs it first).
node_cleanup() {
  local s=""; [ -n "${DATA:-}" ] && s=$(node_dir)
  # 1. let the kubelet tear pods down (CNI DEL, mounts, cgroups) while it still runs
  if [ -n "$s" ] && alive kubelet && alive kube-apiserver; then
    local ns
    for ns in $(kubectl_ get ns -o name 2>/dev/null | cut -d/ -f2); do
      case $ns in kube-system|kube-public|kube-node-lease|default) ;; *) kubectl_ delete ns "$ns" --wait=false >/dev/null 2>&1 || true ;; esac
    done
    kubectl_ delete deploy,rs,sts,ds,job,pod --all -A --grace-period=1 --wait=false >/dev/null 2>&1 || true
    local i; for i in $(seq 60); do [ -z "$(ctr_ tasks ls -q 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  local c; for c in coredns kube-proxy kube-scheduler kube-controller-manager kubelet; do stop_one "$c"; done
  if [ -n "$s" ] && [ -S "$s/containerd.sock" ]; then
    local t; for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
  fi
  stop_one containerd
  # shims of any stack's containerd (this one, or one a crash left behind)
  local pid; for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address /tmp/aether-dbhub-stack\." || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  # 2. kube-proxy's and the kubelet's packet-filter rules, then tables left empty
  [ -x "$(kube_dir)/bin/kube-proxy" ] && "$(kube_dir)/bin/kube-proxy" --cleanup --v=0 >/dev/null 2>&1 || true
  local ipt t rule
  for ipt in iptables ip6tables; do
    command -v $ipt >/dev/null 2>&1 || continue
    for t in filter nat mangle; do
      $ipt -t $t -S 2>/dev/null | grep -- '-j KUBE-' | grep '^-A \(INPUT\|OUTPUT\|FORWARD\|PREROUTING\|POSTROUTING\) ' |
        sed 's/^-A/-D/' | while read -r rule; do eval "$ipt -t $t $rule" 2>/dev/null || true; done || true
      for c in $($ipt -t $t -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^KUBE-/ {print $2}'); do $ipt -t $t -F "$c" 2>/dev/null || true; done
      for c in $($ipt -t $t -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^KUBE-/ {print $2}'); do $ipt -t $t -X "$c" 2>/dev/null || true; done
    done
  done
  if command -v nft >/dev/null 2>&1; then
    local fam
    for fam in ip ip6; do for t in filter nat mangle; do
      nft list table $fam $t >/dev/null 2>&1 || continue
      if [ -z "$(nft list table $fam $t | grep -vE '^\s*(table|chain|type|policy|}|$)' || true)" ]; then
        nft delete table $fam $t 2>/dev/null || true
      fi
    done; done
    if nft list table inet "$NODE_GUARD" >/dev/null 2>&1; then nft delete table inet "$NODE_GUARD"; fi
  fi
  # 3. mounts, network namespaces, the bridge
  local m
  for m in $(awk '$5 ~ "^/tmp/aether-dbhub-stack\\." || $5 ~ "^/run/containerd/" || $5 ~ "^/run/netns/cni-" {print $5}' /proc/self/mountinfo | sort -r || true); do
    umount -l "$m" 2>/dev/null || true
  done
  for m in $(ls /run/netns 2>/dev/null | grep '^cni-' || true); do ip netns delete "$m" 2>/dev/null || true; done
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then ip link delete "$NODE_BRIDGE"; fi
  ip route del "$NODE_SVC_CIDR" 2>/dev/null || true
  # 4. cgroups the kubelet created, hard-coded paths that did not exist before, sysctls
  local h
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/unified/ /sys/fs/cgroup/; do
    [ -d "${h}kubepods" ] || continue
    find "${h}kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  if [ -f "$NODE_SAVED/preexisting" ]; then
    local d; for d in $NODE_HARD_PATHS; do
      grep -qx "$d" "$NODE_SAVED/preexisting" && continue
      [ -e "$d" ] || continue
      awk -v d="$d" '$5 ~ "^"d {print $5}' /proc/self/mountinfo | sort -r | xargs -r umount -l 2>/dev/null || true
      rm -rf "$d"
    done
  fi
  if [ -d "$NODE_SAVED" ]; then
    node_restore_sysctls
    [ -f "$NODE_SAVED/ip_forward" ] && sysctl -qw net.ipv4.ip_forward="$(cat "$NODE_SAVED/ip_forward")"
    rm -rf "$NODE_SAVED"
  fi
  return 0
}
