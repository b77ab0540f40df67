//! Integration tests against the real local stack (`scripts/stack up`): kube-apiserver, Neo4j,
//! PostgreSQL, MariaDB and DBHub. One binary; shared fixtures live in `support`.

mod support;

mod api;
mod attacks;
mod chart;
mod clients;
mod crds;
mod database_controller;
mod dbhubinstance_controller;
mod dev;
mod docs;
mod frontend;
mod history;
mod hostile;
mod load;
mod manners;
mod mcp;
mod node;
mod packaging;
mod policy;
mod queries;
mod rbac;
mod saved;
mod serve;
mod smoke;
