//! The API reference page in a real browser: headless Chromium (Debian's, installed by the
//! stack) loads `/api/v1/docs` from a running service with nothing reachable but loopback; the
//! rendered page lists the operations, the console shows nothing (no CSP refusal, no failed
//! load, no script error), and Chromium's network log shows every request the page started
//! went to the service. A screenshot is kept
//! in the cargo target directory (`docs-page.png`), not committed.

use std::process::Stdio;
use std::time::Duration;

use crate::support::api::serve;
use crate::support::kube::TestNamespace;
use crate::support::{logs, unique};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless Chromium on `url` with `extra` arguments; (stdout, stderr).
async fn chromium(url: &str, extra: &[&str]) -> (String, String) {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `scripts/stack build` installs Debian's chromium"
    );
    let profile = std::env::temp_dir().join(unique("chromium-profile"));
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--enable-logging=stderr",
                "--v=0",
                "--virtual-time-budget=20000",
                "--window-size=1280,2400",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium did not finish within 90 s")
    .expect("running chromium");
    let _ = std::fs::remove_dir_all(&profile);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn docs_page_renders_offline_in_chromium_with_only_the_services_own_files() {
    logs::capture();
    let ns = TestNamespace::new("docs").await;
    let server = serve(&ns.name, ns.client.clone()).await;
    let url = format!("{}/api/v1/docs", server.base);

    // The page's own headers: a CSP that allows only the service's origin.
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );

    let net_log = std::env::temp_dir().join(format!("{}.json", unique("netlog")));
    let (dom, console) = chromium(
        &url,
        &[
            "--dump-dom",
            &format!("--log-net-log={}", net_log.display()),
        ],
    )
    .await;
    for path in [
        "/api/v1/databases/{id}/query",
        "/api/v1/databases",
        "/api/v1/saved-queries",
        "/api/v1/saved-queries/{id}/execute",
    ] {
        assert!(
            dom.contains(&format!("data-path=\"{path}\"")),
            "{path} not rendered; console:\n{console}\nDOM starts:\n{}",
            &dom[..dom.len().min(2000)]
        );
    }
    // Nothing on the console: a CSP refusal, a failed load or a script error would be there.
    let said: Vec<&str> = console.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(
        said.is_empty(),
        "the console reported:\n{}",
        said.join("\n")
    );

    // Every request the page started went to the service (Chromium's own background requests
    // have no page initiator).
    let origin = server.base.clone();
    let net: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&net_log).unwrap()).unwrap();
    let from_page: Vec<String> = net["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["params"]["initiator"].as_str() == Some(origin.as_str()))
        .filter_map(|e| e["params"]["url"].as_str().map(String::from))
        .collect();
    assert!(
        from_page
            .iter()
            .any(|u| u.ends_with("/api/v1/openapi.json")),
        "the page never fetched the document: {from_page:?}"
    );
    let elsewhere: Vec<&String> = from_page
        .iter()
        .filter(|u| !u.starts_with(&format!("{origin}/")))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "the page reached outside the service: {elsewhere:?}"
    );

    let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("docs-page.png");
    let _ = chromium(&url, &[&format!("--screenshot={}", shot.display())]).await;
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
        "no screenshot at {}",
        shot.display()
    );
}
