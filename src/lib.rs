//! The Aether databases service: REST API, storage in Neo4j, and the embedded DBHub operator.

pub mod app;
pub mod config;
pub mod http;
pub mod storage;
pub mod telemetry;
