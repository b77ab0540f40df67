//! The one place configuration is read: a clap struct whose every flag is also an
//! `AETHER_DBHUB_*` environment variable. `aether-dbhub --help` documents it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Aether databases API with an embedded DBHub operator.
#[derive(Debug, Parser)]
#[command(name = "aether-dbhub", version, about)]
pub struct Cli {
    /// Log line format.
    #[arg(long, env = "AETHER_DBHUB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax (e.g. `info,aether_dbhub=debug`).
    #[arg(long, env = "AETHER_DBHUB_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Threads that run requests and reconciles; 0: one per CPU the process may use (its
    /// cgroup CPU limit, else the machine's). On a small node shared with DBHub, 1 answers
    /// faster (fewer hand-overs between threads; measured in the README).
    #[arg(
        long,
        env = "AETHER_DBHUB_WORKER_THREADS",
        default_value_t = 0,
        global = true,
        value_parser = clap::value_parser!(u16).range(0..=1024)
    )]
    pub worker_threads: u16,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// What the binary can run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the REST API (with health and readiness endpoints).
    Serve(Box<ServeArgs>),
    /// Run only the reconcilers (no REST API).
    Operator(OperatorArgs),
    /// Print the CustomResourceDefinitions (YAML) for Database and DBHubInstance.
    Crds,
    /// Print the OpenAPI 3.1 document of the REST API (JSON).
    Openapi,
    /// Apply the graph migrations under migrations/ and exit.
    Migrate(MigrateArgs),
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Settings of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address the HTTP server listens on.
    #[arg(long, env = "AETHER_DBHUB_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Seconds in-flight requests get to finish after SIGTERM before the server stops.
    #[arg(long, env = "AETHER_DBHUB_SHUTDOWN_TIMEOUT", default_value = "20", value_parser = parse_seconds)]
    pub shutdown_timeout: Duration,

    /// Where the Aether graph is and how to log in.
    #[command(flatten)]
    pub neo4j: Neo4jArgs,

    /// Kubernetes settings (the cluster itself comes from KUBECONFIG or the in-cluster account).
    #[command(flatten)]
    pub kube: KubeArgs,

    /// How bearer tokens are verified.
    #[command(flatten)]
    pub auth: AuthArgs,

    /// Where database connections may go.
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Connection tests (`POST /databases/test`, `POST /databases/{id}/test`) one user may
    /// start per minute (429 with Retry-After beyond): each one opens a connection to a host
    /// the user names.
    #[arg(long, env = "AETHER_DBHUB_TEST_RATE_LIMIT", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub test_rate_limit: u32,

    /// DBHub instance layout: per-space (one DBHubInstance per Aether space) or shared (one for all).
    #[arg(long, env = "AETHER_DBHUB_INSTANCE_MODE", value_enum, default_value_t = InstanceMode::PerSpace)]
    pub instance_mode: InstanceMode,

    /// How DBHub is reached and what new instances default to.
    #[command(flatten)]
    pub dbhub: DbhubArgs,

    /// Leader election for the embedded reconcilers.
    #[command(flatten)]
    pub leader: LeaderArgs,

    /// What one request may send and how long it may take.
    #[command(flatten)]
    pub limits: LimitArgs,

    /// Seconds a caller's membership of a space (and role there) is remembered, sparing a graph
    /// read per request; a removed member or changed role takes effect within this long. 0: no
    /// cache.
    #[arg(long, env = "AETHER_DBHUB_SPACE_CACHE_TTL", default_value = "5", value_parser = parse_seconds)]
    pub space_cache_ttl: Duration,

    /// Browser origins allowed to call the API from another origin (CORS), comma-separated,
    /// e.g. `http://localhost:3000`; `*` allows any. Empty: no CORS headers (same-origin only).
    #[arg(long, env = "AETHER_DBHUB_CORS_ALLOWED_ORIGINS", default_value = "", value_parser = parse_origins)]
    pub cors_allowed_origins: crate::http::cors::Origins,
}

/// What one request may send and how long it may take.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Largest request body in bytes; larger ones are answered 413.
    #[arg(long, env = "AETHER_DBHUB_MAX_BODY_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_body_bytes: u32,

    /// Seconds a request may take before it is answered 504. A query extends its own deadline
    /// to its database's query_timeout plus --dbhub-timeout, so the database's own timeout
    /// answers first; deleting a database with a long history gets this long again after each
    /// chunk of 10 000 runs deleted.
    #[arg(long, env = "AETHER_DBHUB_REQUEST_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub request_timeout: Duration,

    /// Largest SQL text of one query, in bytes (DBHub 1.4 itself refuses requests over 100 KiB
    /// once encoded as JSON).
    #[arg(long, env = "AETHER_DBHUB_QUERY_MAX_BYTES", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub query_max_bytes: u32,

    /// Most statements (separated by `;`) in one query.
    #[arg(long, env = "AETHER_DBHUB_QUERY_MAX_STATEMENTS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub query_max_statements: u32,

    /// Most tokens (words, literals, operators) in one query: bounds how deep a parsed
    /// expression can get.
    #[arg(long, env = "AETHER_DBHUB_QUERY_MAX_TOKENS", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub query_max_tokens: u32,
}

impl LimitArgs {
    /// The classifier's limits.
    pub fn sql(&self) -> crate::sql::Limits {
        crate::sql::Limits {
            max_bytes: self.query_max_bytes as usize,
            max_statements: self.query_max_statements as usize,
            max_tokens: self.query_max_tokens as usize,
        }
    }
}

/// How the service reaches DBHub and what the instances it creates default to.
#[derive(Debug, Clone, Args)]
pub struct DbhubArgs {
    /// MCP endpoint override for running outside the cluster: a URL in which `{instance}` and
    /// `{namespace}` are replaced (e.g. `http://127.0.0.1:18080/mcp` behind a port-forward).
    /// Empty: the DBHubInstance's `status.endpoint` (the in-cluster Service).
    #[arg(
        long = "dbhub-endpoint",
        env = "AETHER_DBHUB_DBHUB_ENDPOINT",
        default_value = ""
    )]
    pub endpoint: String,

    /// Seconds to connect to DBHub and for each call (a query also gets its database's
    /// query_timeout on top).
    #[arg(long = "dbhub-timeout", env = "AETHER_DBHUB_DBHUB_TIMEOUT", default_value = "10", value_parser = parse_seconds)]
    pub timeout: Duration,

    /// `defaultPolicy.readonly` of the DBHubInstances the service creates (each Database's own
    /// `readonly` wins).
    #[arg(long = "instance-default-readonly", env = "AETHER_DBHUB_INSTANCE_DEFAULT_READONLY", default_value_t = true, action = clap::ArgAction::Set)]
    pub default_readonly: bool,

    /// `defaultPolicy.maxRows` of the DBHubInstances the service creates (1-100000).
    #[arg(long = "instance-default-max-rows", env = "AETHER_DBHUB_INSTANCE_DEFAULT_MAX_ROWS", default_value_t = 1000, value_parser = clap::value_parser!(i32).range(1..=100000))]
    pub default_max_rows: i32,
}

/// How DBHub instances are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InstanceMode {
    /// One DBHubInstance per space (`dbhub-<space>`): a tenant's DSNs never sit in another's DBHub.
    PerSpace,
    /// One DBHubInstance (`dbhub`) for every space; isolation rests on the API alone.
    Shared,
}

/// Where database connections may go: the API checks it when a connection is registered or
/// tested, the Database reconciler before every check, and the DBHub pods' NetworkPolicy
/// denies the refused ranges.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// CIDRs database hosts may resolve into even when otherwise refused (loopback,
    /// link-local, metadata, deny list), comma-separated. E.g. 127.0.0.0/8 for local work.
    #[arg(long, env = "AETHER_DBHUB_HOST_ALLOW_CIDRS", default_value = "", value_parser = parse_cidrs)]
    pub host_allow_cidrs: CidrList,

    /// CIDRs database hosts must not resolve into (besides loopback, link-local, cloud
    /// metadata, unspecified, multicast and reserved addresses, always refused), comma-separated.
    #[arg(long, env = "AETHER_DBHUB_HOST_DENY_CIDRS", default_value = "", value_parser = parse_cidrs)]
    pub host_deny_cidrs: CidrList,

    /// Directories SQLite files may be in, comma-separated (on the pods that open them). Empty:
    /// SQLite databases are refused.
    #[arg(long, env = "AETHER_DBHUB_SQLITE_ALLOWED_DIRS", default_value = "")]
    pub sqlite_allowed_dirs: String,
}

impl PolicyArgs {
    /// The policy these settings describe.
    pub fn policy(&self) -> dbhub_operator::policy::ConnectionPolicy {
        dbhub_operator::policy::ConnectionPolicy {
            hosts: dbhub_operator::policy::HostPolicy::new(
                self.host_allow_cidrs.0.clone(),
                self.host_deny_cidrs.0.clone(),
            ),
            sqlite_dirs: self
                .sqlite_allowed_dirs
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(std::path::PathBuf::from)
                .collect(),
        }
    }
}

/// A parsed CIDR list (a newtype so clap treats it as one value).
#[derive(Debug, Clone, Default)]
pub struct CidrList(pub Vec<dbhub_operator::policy::Cidr>);

fn parse_origins(s: &str) -> Result<crate::http::cors::Origins, String> {
    crate::http::cors::Origins::parse(s)
}

fn parse_cidrs(s: &str) -> Result<CidrList, String> {
    dbhub_operator::policy::parse_list(s).map(CidrList)
}

/// How bearer tokens are verified. Exactly one key source must be set.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Accepted token issuers, comma-separated (e.g. https://keycloak.example/realms/aether).
    #[arg(long, env = "AETHER_DBHUB_JWT_ISSUERS", default_value = "")]
    pub jwt_issuers: String,

    /// Required audience (`aud`); empty: not checked.
    #[arg(long, env = "AETHER_DBHUB_JWT_AUDIENCE", default_value = "")]
    pub jwt_audience: String,

    /// JWKS URL of the realm (RS256; keys cached, refreshed on an unknown `kid`).
    #[arg(long, env = "AETHER_DBHUB_JWT_JWKS_URL", default_value = "")]
    pub jwt_jwks_url: String,

    /// Path of an RS256 public key in PEM form (instead of a JWKS URL).
    #[arg(long, env = "AETHER_DBHUB_JWT_RS256_PEM", default_value = "")]
    pub jwt_rs256_pem: String,

    /// HS256 shared secret (at least 32 bytes), for local use only.
    #[arg(
        long,
        env = "AETHER_DBHUB_JWT_HS256_SECRET",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub jwt_hs256_secret: String,
}

/// Settings of `operator`.
#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// Address serving `/healthz` and `/metrics` while the reconcilers run alone.
    #[arg(
        long = "listen",
        env = "AETHER_DBHUB_OPERATOR_LISTEN",
        default_value = "0.0.0.0:8081"
    )]
    pub listen: SocketAddr,

    /// Which namespaces the service writes to and the reconcilers watch.
    #[command(flatten)]
    pub kube: KubeArgs,

    /// Leader election among several replicas.
    #[command(flatten)]
    pub leader: LeaderArgs,

    /// Where database connections may go.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// Leader election: with several replicas, only the holder of a Lease reconciles.
#[derive(Debug, Clone, Args)]
pub struct LeaderArgs {
    /// Reconcile only while holding the Lease (every replica still serves the API).
    #[arg(long = "leader-elect", env = "AETHER_DBHUB_LEADER_ELECT", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enabled: bool,

    /// Name of the Lease (in `--namespace`).
    #[arg(
        long = "leader-elect-lease",
        env = "AETHER_DBHUB_LEADER_ELECT_LEASE",
        default_value = "aether-dbhub-leader"
    )]
    pub lease: String,

    /// Seconds a Lease stays valid without renewal (a crashed leader is replaced after this).
    #[arg(long = "leader-elect-duration", env = "AETHER_DBHUB_LEADER_ELECT_DURATION", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    pub duration: u64,

    /// Seconds before expiry the holder renews.
    #[arg(long = "leader-elect-grace", env = "AETHER_DBHUB_LEADER_ELECT_GRACE", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub grace: u64,

    /// This replica's identity in the Lease (default: the host name plus a random suffix).
    #[arg(
        long = "leader-elect-identity",
        env = "AETHER_DBHUB_LEADER_ELECT_IDENTITY",
        default_value = ""
    )]
    pub identity: String,
}

/// Settings of `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Where the Aether graph is and how to log in.
    #[command(flatten)]
    pub neo4j: Neo4jArgs,
}

/// Neo4j connection settings.
#[derive(Debug, Clone, Args)]
pub struct Neo4jArgs {
    /// Bolt URI of Neo4j (bolt://, bolt+s://, neo4j://, neo4j+s://).
    #[arg(
        long = "neo4j-uri",
        env = "AETHER_DBHUB_NEO4J_URI",
        default_value = "bolt://127.0.0.1:7687"
    )]
    pub uri: String,

    /// User name for Neo4j.
    #[arg(
        long = "neo4j-user",
        env = "AETHER_DBHUB_NEO4J_USER",
        default_value = "neo4j"
    )]
    pub user: String,

    /// Password for Neo4j (prefer the environment variable over the flag).
    #[arg(
        long = "neo4j-password",
        env = "AETHER_DBHUB_NEO4J_PASSWORD",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub password: String,

    /// Most pooled Bolt connections to Neo4j (every request holds at most one at a time).
    #[arg(long = "neo4j-max-connections", env = "AETHER_DBHUB_NEO4J_MAX_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_connections: u16,

    /// Seconds a request waits for a free pooled connection before it is answered 503 with
    /// `Retry-After` (the pool is exhausted) instead of waiting on.
    #[arg(long = "neo4j-acquire-timeout", env = "AETHER_DBHUB_NEO4J_ACQUIRE_TIMEOUT", default_value = "2", value_parser = parse_seconds)]
    pub acquire_timeout: Duration,

    /// Seconds to connect to Neo4j and to wait for each of its answers (one query as a whole:
    /// --neo4j-acquire-timeout plus three times this); past it the request is answered 503 with
    /// `Retry-After` (within --request-timeout, which bounds the whole request).
    #[arg(long = "neo4j-timeout", env = "AETHER_DBHUB_NEO4J_TIMEOUT", default_value = "15", value_parser = parse_seconds)]
    pub answer_timeout: Duration,

    /// Seconds start-up waits for Neo4j to answer (and the graph migrations to apply) before
    /// the process gives up and exits non-zero.
    #[arg(long = "neo4j-startup-timeout", env = "AETHER_DBHUB_NEO4J_STARTUP_TIMEOUT", default_value = "60", value_parser = parse_seconds)]
    pub startup_timeout: Duration,
}

/// Which namespaces the service writes to and the reconcilers watch (the cluster itself comes
/// from KUBECONFIG or the in-cluster service account).
#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// Namespace where the service keeps Database CRs, Secrets and DBHub instances.
    #[arg(
        long = "namespace",
        env = "AETHER_DBHUB_NAMESPACE",
        default_value = "aether-databases"
    )]
    pub namespace: String,

    /// Namespace the reconcilers watch (Databases, DBHubInstances, Secrets). Empty: all namespaces.
    #[arg(
        long = "watch-namespace",
        env = "AETHER_DBHUB_WATCH_NAMESPACE",
        default_value = ""
    )]
    pub watch_namespace: String,

    /// Connection checks the reconciler runs at once, in all.
    #[arg(long, env = "AETHER_DBHUB_PROBE_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub probe_concurrency: u32,

    /// Connection checks the reconciler runs at once against one server (host:port), however
    /// many Databases point at it.
    #[arg(long, env = "AETHER_DBHUB_PROBE_PER_SERVER", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub probe_per_server: u32,
}

impl KubeArgs {
    /// The reconcilers' configuration: their scope, the connection policy and the check limits.
    pub fn reconcilers(&self, policy: &PolicyArgs) -> dbhub_operator::controller::Config {
        let ns = self.watch_namespace.trim();
        dbhub_operator::controller::Config {
            scope: dbhub_operator::controller::Scope {
                namespace: (!ns.is_empty()).then(|| ns.to_string()),
            },
            policy: policy.policy(),
            probes: dbhub_operator::controller::database::ProbeLimits {
                concurrency: self.probe_concurrency as usize,
                per_server: self.probe_per_server as usize,
            },
        }
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("expected whole seconds: {e}"))
}

/// The configuration as a Markdown table (flag, environment variable, default, subcommands,
/// description), generated from the clap definitions: the README embeds it.
pub fn config_table() -> String {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut rows: Vec<(String, String, String, Vec<String>, String)> = Vec::new();
    let mut visit = |c: &clap::Command, name: &str| {
        for arg in c.get_arguments() {
            let Some(env) = arg.get_env() else { continue };
            let env = env.to_string_lossy().into_owned();
            if let Some(row) = rows.iter_mut().find(|r| r.1 == env) {
                if !row.3.contains(&name.to_string()) {
                    row.3.push(name.to_string());
                }
                continue;
            }
            let flag = arg
                .get_long()
                .map(|l| format!("`--{l}`"))
                .unwrap_or_default();
            let default = if arg.is_hide_default_value_set() {
                String::new()
            } else {
                arg.get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let help = arg
                .get_long_help()
                .or_else(|| arg.get_help())
                .map(|h| h.to_string().replace('\n', " "))
                .unwrap_or_default();
            rows.push((flag, env, default, vec![name.to_string()], help));
        }
    };
    visit(&cmd, "all");
    for sub in cmd.get_subcommands() {
        visit(sub, sub.get_name());
    }
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::from(
        "| flag | environment | default | used by | what it does |\n|---|---|---|---|---|\n",
    );
    for (flag, env, default, used, help) in rows {
        let default = if default.is_empty() {
            String::new()
        } else {
            format!("`{}`", cell(&default))
        };
        out.push_str(&format!(
            "| {flag} | `{env}` | {default} | {} | {} |\n",
            used.join(", "),
            cell(&help)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_an_aether_dbhub_env_var() {
        let cmd = Cli::command();
        let mut all = vec![&cmd];
        all.extend(cmd.get_subcommands());
        for c in all {
            for arg in c.get_arguments().filter(|a| !a.is_positional()) {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                let env = arg
                    .get_env()
                    .unwrap_or_else(|| panic!("--{id} has no env var"));
                assert!(
                    env.to_string_lossy().starts_with("AETHER_DBHUB_"),
                    "--{id} env {env:?}"
                );
            }
        }
    }

    /// The README's configuration table is generated from this struct. Regenerate with
    /// `AETHER_DBHUB_BLESS=1 cargo test --lib readme_configuration_table`.
    #[test]
    fn readme_configuration_table_matches_the_cli() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let (start, end) = ("<!-- config-table:start -->\n", "<!-- config-table:end -->");
        let a = readme
            .find(start)
            .expect("README has the config-table markers")
            + start.len();
        let b = readme.find(end).unwrap();
        let fresh = config_table();
        if std::env::var_os("AETHER_DBHUB_BLESS").is_some() {
            let updated = format!("{}{fresh}{}", &readme[..a], &readme[b..]);
            std::fs::write(path, updated).unwrap();
            return;
        }
        assert!(
            readme[a..b] == fresh,
            "README's configuration table is stale: AETHER_DBHUB_BLESS=1 cargo test --lib readme_configuration_table"
        );
    }

    /// `.env.sample` lists exactly the variables the CLI reads.
    #[test]
    fn env_sample_lists_every_variable() {
        let cmd = Cli::command();
        let mut from_cli = std::collections::BTreeSet::new();
        let mut all = vec![&cmd];
        all.extend(cmd.get_subcommands());
        for c in all {
            for arg in c.get_arguments() {
                if let Some(env) = arg.get_env() {
                    from_cli.insert(env.to_string_lossy().into_owned());
                }
            }
        }
        let sample =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.sample")).unwrap();
        let listed: std::collections::BTreeSet<String> = sample
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
            .collect();
        assert_eq!(listed, from_cli);
    }

    #[test]
    fn parse_seconds_rejects_non_numbers() {
        assert_eq!(parse_seconds("5"), Ok(Duration::from_secs(5)));
        assert!(parse_seconds("5s").is_err());
    }
}
