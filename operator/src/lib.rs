//! The DBHub operator: CRD types for `dbhub.tas.io/v1alpha1`, the pure logic behind the
//! reconcilers (DSNs, connection checks) and the reconcilers themselves. The service embeds it;
//! it depends on nothing in the service.

pub mod controller;
pub mod crd;
pub mod dbhub_config;
pub mod dsn;
pub mod metrics;
pub mod policy;
pub mod probe;
pub mod redact;
