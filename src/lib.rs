//! The Aether databases service: the REST API (`http`), its use cases (`registry` for the
//! databases of a space, `queries` for SQL, schema browsing and history), their records
//! (`model`), storage in Neo4j (`storage`), Kubernetes (`k8s`), DBHub over MCP (`mcp`), and the
//! embedded DBHub operator (the `dbhub-operator` crate) started by `app`.

pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod k8s;
pub mod leader;
pub mod lifecycle;
pub mod mcp;
pub mod metrics;
pub mod model;
pub mod queries;
pub mod registry;
pub mod saved;
pub mod spaces;
pub mod sql;
pub mod storage;
pub mod telemetry;
pub mod ttl;
