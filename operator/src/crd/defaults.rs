//! Defaults shared by the CRD schemas and the reconcilers (serde `default = ...` targets).

/// Seconds to wait for a database connection.
pub fn connection_timeout() -> i32 {
    30
}

/// Seconds a query may run.
pub fn query_timeout() -> i32 {
    15
}

/// Seconds between connection checks.
pub fn health_check_interval() -> i32 {
    300
}

/// Secret key of the user name.
pub fn user_key() -> String {
    "username".into()
}

/// Secret key of the password.
pub fn password_key() -> String {
    "password".into()
}

/// DBHub pods per instance unless the spec says otherwise.
pub fn replicas() -> i32 {
    1
}

/// DBHub's only network transport.
pub fn transport() -> String {
    "http".into()
}

/// DBHub's HTTP port.
pub fn port() -> i32 {
    8080
}

/// Databases are read-only unless a policy says otherwise.
pub fn readonly() -> bool {
    true
}

/// Default row limit per query.
pub fn max_rows() -> i32 {
    1000
}

/// The DBHub image used when an instance names none: a pinned release, never `latest`.
pub const DBHUB_IMAGE: &str = "bytebase/dbhub:1.4.0";

/// The operator fences DBHub pods in unless told not to.
pub fn network_policy_enabled() -> bool {
    true
}

/// The pods allowed to call DBHub by default: the aether-dbhub service's.
pub fn network_policy_clients() -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([("app.kubernetes.io/name".into(), "aether-dbhub".into())])
}
