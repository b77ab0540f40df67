//! Benchmarks of the service's pure hot paths, printed as numbers (`cargo bench --bench
//! hot_paths`): the read-only SQL classifier run before every query, DSN building and DBHub
//! TOML rendering done on every reconcile. No pass/fail: timing never decides a test.

use std::hint::black_box;
use std::time::Instant;

use aether_dbhub::sql::classify;
use dbhub_operator::crd::{DBHubInstanceSpec, Database, DatabaseSpec, DatabaseType};
use dbhub_operator::dbhub_config::{entries, render};
use dbhub_operator::dsn::{Credentials, build};

/// Runs `f` in batches for about half a second; prints the median time per call.
fn bench(name: &str, mut f: impl FnMut()) {
    let mut per_call = Vec::new();
    let until = Instant::now() + std::time::Duration::from_millis(500);
    while Instant::now() < until || per_call.len() < 5 {
        let t = Instant::now();
        for _ in 0..100 {
            f();
        }
        per_call.push(t.elapsed().as_nanos() as f64 / 100.0);
    }
    per_call.sort_by(|a, b| a.total_cmp(b));
    let median = per_call[per_call.len() / 2];
    println!(
        "{name:<48} {:>10.1} µs/call  ({} batches of 100)",
        median / 1000.0,
        per_call.len()
    );
}

fn main() {
    let short = "SELECT id, name FROM orders WHERE id = 42";
    let long = format!(
        "WITH recent AS (SELECT * FROM orders WHERE placed_on > now() - interval '7 days') {}",
        "SELECT c.name, sum(o.total) FROM recent o JOIN customers c USING (customer_no) GROUP BY c.name ORDER BY 2 DESC LIMIT 10"
    );
    let disguised = "WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone";
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let limits = aether_dbhub::sql::Limits::default();
    bench("classify: short SELECT (postgres)", || {
        black_box(
            rt.block_on(classify(black_box(short), DatabaseType::Postgres, &limits))
                .ok(),
        );
    });
    bench("classify: CTE + join + aggregate (postgres)", || {
        black_box(
            rt.block_on(classify(black_box(&long), DatabaseType::Postgres, &limits))
                .ok(),
        );
    });
    bench("classify: data-modifying CTE (refused)", || {
        black_box(
            rt.block_on(classify(
                black_box(disguised),
                DatabaseType::Postgres,
                &limits,
            ))
            .ok(),
        );
    });
    bench("classify: short SELECT (mysql)", || {
        black_box(
            rt.block_on(classify(black_box(short), DatabaseType::Mysql, &limits))
                .ok(),
        );
    });
    let verdicts = aether_dbhub::sql::Verdicts::new(limits);
    bench("classify: short SELECT again (remembered)", || {
        black_box(
            rt.block_on(verdicts.classify(black_box(short), DatabaseType::Postgres))
                .ok(),
        );
    });

    let spec: DatabaseSpec = serde_json::from_value(serde_json::json!({
        "type": "postgres", "host": "db.example", "port": 5432, "database": "orders",
        "sslMode": "require", "credentialsRef": {"name": "s"}
    }))
    .unwrap();
    let creds = Credentials {
        user: "app".into(),
        password: "h0st@le p:w/d?#%25&=+\"$ok".into(),
    };
    bench("DSN: postgres with a URL-hostile password", || {
        black_box(build(black_box(&spec), Some(&creds)).unwrap());
    });

    let dbs: Vec<Database> = (0..50)
        .map(|i| Database::new(&format!("db-{i:032x}"), spec.clone()))
        .collect();
    let names: Vec<String> = dbs
        .iter()
        .map(|d| d.metadata.name.clone().unwrap())
        .collect();
    let inst: DBHubInstanceSpec = serde_json::from_value(serde_json::json!({})).unwrap();
    bench("TOML: 50 sources (ids + render)", || {
        let es = entries(names.iter().map(String::as_str));
        let pairs: Vec<_> = dbs.iter().zip(es.iter()).collect();
        black_box(render(&inst, &pairs).unwrap());
    });
}
