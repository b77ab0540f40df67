//! The Aether databases service: REST API, storage in Neo4j, and the embedded DBHub operator.

pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod hostguard;
pub mod http;
pub mod kube;
pub mod leader;
pub mod lifecycle;
pub mod localpod;
pub mod mcp;
pub mod metrics;
pub mod sql;
pub mod storage;
pub mod telemetry;
