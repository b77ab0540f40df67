//! `scripts/dev` is a working demo on the node: the service (the chart) and the space's DBHub in
//! pods, a token and curl lines that work as printed (list, query, tables, columns, history).

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::dbhub::free_port;
use crate::support::kube::TestNamespace;
use crate::support::{stack, unique};

#[tokio::test]
async fn dev_script_prints_curl_lines_that_work_as_printed() {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_aether-dbhub"));
    let debug = bin.parent().unwrap();
    let example = debug.join("examples/dev_demo");
    assert!(
        example.exists(),
        "{} is missing: `cargo test` (all targets) or `cargo build --example dev_demo` builds it",
        example.display()
    );
    let target = debug.parent().unwrap();
    let ns = TestNamespace::new("dev").await;
    let (api_port, jwks_port) = (free_port(), free_port());
    let mut child =
        tokio::process::Command::new(format!("{}/scripts/dev", env!("CARGO_MANIFEST_DIR")))
            .env("CARGO_TARGET_DIR", target)
            .env("AETHER_DBHUB_DEV_PREBUILT", "1")
            .env("AETHER_DBHUB_LISTEN", format!("127.0.0.1:{api_port}"))
            .env("AETHER_DBHUB_DEV_JWKS_PORT", jwks_port.to_string())
            .env("AETHER_DBHUB_DEV_SPACE", unique("devspace"))
            .env("AETHER_DBHUB_NAMESPACE", &ns.name)
            .env("AETHER_DBHUB_LOG", "warn")
            .env("KUBECONFIG", stack().get("KUBECONFIG"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("running scripts/dev");
    let pgid = child.id().unwrap() as i32;
    // Whatever happens, nothing of the demo outlives the test.
    struct Group(i32);
    impl Drop for Group {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.0)])
                .stderr(Stdio::null())
                .status();
        }
    }
    let _group = Group(pgid);
    let mut stderr = child.stderr.take().unwrap();
    let err_task = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while !printed.iter().any(|l: &String| l.contains("API docs")) {
        let next = tokio::time::timeout_at(deadline.into(), lines.next_line()).await;
        match next {
            Ok(Ok(Some(l))) => printed.push(l),
            _ => {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", "--", &format!("-{pgid}")])
                    .status();
                panic!(
                    "scripts/dev printed no demo within 4 min:\n{}\n{}",
                    printed.join("\n"),
                    err_task.await.unwrap()
                );
            }
        }
    }
    // The service and the space's DBHub run in pods on the node (the chart's and the reconciler's).
    let pods = crate::support::node::get_json(&["-n", &ns.name, "pods"])
        .await
        .unwrap();
    let running = |name: &str| {
        pods["items"].as_array().unwrap().iter().any(|p| {
            p["metadata"]["labels"]["app.kubernetes.io/name"] == name
                && p["status"]["phase"] == "Running"
        })
    };
    assert!(running("aether-dbhub") && running("dbhub"), "{pods}");
    let curls: Vec<&String> = printed.iter().filter(|l| l.starts_with("curl ")).collect();
    assert_eq!(curls.len(), 5, "{printed:#?}");
    let run = |line: &str| {
        let out = std::process::Command::new("bash")
            .args(["-c", line])
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}");
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{line}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };
    let list = run(curls[0]);
    assert_eq!(list["databases"][0]["name"], "demo-postgres", "{list}");
    assert_eq!(list["databases"][0]["status"], "Connected", "{list}");
    let query = run(curls[1]);
    assert_eq!(
        query["columns"],
        serde_json::json!(["order_no", "name", "total"]),
        "{query}"
    );
    assert_eq!(query["row_count"], 4, "{query}");
    let tables = run(curls[2]);
    assert!(
        tables["tables"].to_string().contains("demo_orders"),
        "{tables}"
    );
    let columns = run(curls[3]);
    let pk: Vec<&Value> = columns["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["isPrimaryKey"] == true)
        .map(|c| &c["name"])
        .collect();
    assert_eq!(pk, [&Value::from("order_no")], "{columns}");
    let history = run(curls[4]);
    assert_eq!(history["history"][0]["status"], "success", "{history}");

    // The demo survives any change of its space: delete its last database (DBHub is stopped:
    // it refuses a configuration without sources), then register one again (DBHub comes back).
    let base = format!("http://127.0.0.1:{api_port}");
    let list_url = format!(" {base}/api/v1/databases");
    let headers = curls[0]
        .strip_prefix("curl -s ")
        .and_then(|l| l.strip_suffix(&list_url))
        .expect("the list line is `curl -s <headers> <base>/api/v1/databases`")
        .to_string();
    let db_url = curls[2]
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_end_matches("/tables");
    let status_of = |line: String| {
        let out = std::process::Command::new("bash")
            .args(["-c", &line])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        status_of(format!(
            "curl -s -o /dev/null -w '%{{http_code}}' -X DELETE {headers} {db_url}"
        )),
        "204"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let empty = run(&format!("curl -s {headers}{list_url}"));
    assert_eq!(empty["databases"], serde_json::json!([]), "{empty}");
    let s = stack();
    let body = serde_json::json!({"name": "demo-again", "type": "postgresql", "host": s.get("STACK_PG_HOST"),
        "port": s.get("STACK_PG_PORT"), "database": s.get("STACK_DB_NAME"), "username": s.get("STACK_DB_USER"),
        "password": s.hostile_password(), "ssl_mode": "disable"});
    std::fs::write(
        std::env::temp_dir().join(format!("{pgid}-body.json")),
        body.to_string(),
    )
    .unwrap();
    let created = run(&format!(
        "curl -s {headers} -H 'Content-Type: application/json' -d @{} {base}/api/v1/databases",
        std::env::temp_dir()
            .join(format!("{pgid}-body.json"))
            .display()
    ));
    let again = created["id"]
        .as_str()
        .expect("registered again")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = run(&format!(
            "curl -s {headers} -H 'Content-Type: application/json' -d '{{\"query\": \"SELECT 7 AS seven\"}}' {base}/api/v1/databases/{again}/query"
        ));
        if out["rows"][0]["seven"] == 7 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the re-registered database never answered through the demo's DBHub: {out}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let _ = std::process::Command::new("kill")
        .args(["-TERM", "--", &format!("-{pgid}")])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    if status.is_err() {
        let ps = std::process::Command::new("ps")
            .args(["-o", "pid,stat,cmd", "-g", &pgid.to_string()])
            .output()
            .unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        panic!(
            "scripts/dev did not stop on SIGTERM:\n{}\n{}",
            String::from_utf8_lossy(&ps.stdout),
            err_task.await.unwrap()
        );
    }
    let stderr = err_task.await.unwrap();
    assert!(
        !stderr.contains(stack().hostile_password()),
        "password in the dev output"
    );
}
