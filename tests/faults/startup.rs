//! Start-up that cannot succeed ends the real binary with a non-zero exit and one clear error
//! line. (This one tampers with the shared graph's migration records, hence this binary.)

use std::process::Stdio;
use std::time::Duration;

use crate::serial;
use crate::support::api::{self, ISSUER, SECRET};
use crate::support::dbhub::free_port;
use crate::support::{stack, unique};

/// Restores the checksum of migration 1 however the test ends.
struct Tampered(neo4rs::Graph);

impl Drop for Tampered {
    fn drop(&mut self) {
        let graph = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(graph.run(neo4rs::query(
                "MATCH (m:AetherDbhubMigration {version: 1}) WHERE m.real_checksum IS NOT NULL \
                 SET m.checksum = m.real_checksum REMOVE m.real_checksum",
            )))
        })
        .join();
    }
}

#[tokio::test]
async fn serve_exits_non_zero_when_a_migration_changed_after_it_was_applied() {
    let _one = serial().await;
    api::store().await; // migrations applied (and recorded) as usual
    let graph = api::graph();
    graph
        .run(neo4rs::query(
            "MATCH (m:AetherDbhubMigration {version: 1}) \
             SET m.real_checksum = m.checksum, m.checksum = 'tampered'",
        ))
        .await
        .unwrap();
    let _restore = Tampered(graph);
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aether-dbhub"))
        .args(["--log-format", "json", "serve"])
        .env("AETHER_DBHUB_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("AETHER_DBHUB_NEO4J_URI", stack().get("NEO4J_URI"))
        .env("AETHER_DBHUB_JWT_ISSUERS", ISSUER)
        .env("AETHER_DBHUB_JWT_HS256_SECRET", SECRET)
        .env("AETHER_DBHUB_WATCH_NAMESPACE", unique("startup"))
        .env("KUBECONFIG", stack().get("KUBECONFIG"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("serve exits when a migration cannot be applied")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "exit status {:?}\n{stderr}",
        out.status
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    assert!(
        errors[0].contains("changed after it was applied"),
        "{}",
        errors[0]
    );
}
