//! No Docker engine exists here, so the Dockerfile and docker-compose.yml are checked for what
//! can be checked: they parse and name the same versions the code and the stack pin.

use serde_json::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn compose_parses_and_pins_the_versions_the_code_uses() {
    let compose: Value =
        serde_saphyr::from_str(&read("docker-compose.yml")).expect("docker-compose.yml parses");
    let image = |svc: &str| {
        compose["services"][svc]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        image("dbhub"),
        dbhub_operator::crd::defaults::DBHUB_IMAGE,
        "the operator's default DBHub image"
    );
    let stack_build = read("scripts/lib/build.sh");
    let pinned = |var: &str| {
        let line = stack_build
            .lines()
            .find(|l| l.starts_with(&format!("{var}=")))
            .unwrap();
        line.split(":-")
            .nth(1)
            .unwrap()
            .trim_end_matches('}')
            .to_string()
    };
    assert_eq!(
        image("neo4j"),
        format!("neo4j:{}-community", pinned("NEO4J_VERSION"))
    );
    assert!(image("dbhub").ends_with(&pinned("DBHUB_VERSION")));
    for svc in ["neo4j", "postgres", "mariadb", "dbhub"] {
        let img = image(svc);
        let tag = img.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
        assert!(
            tag.chars().next().is_some_and(|c| c.is_ascii_digit()),
            "{svc}: {img} must be semver-pinned"
        );
    }
    assert_eq!(compose["services"]["aether-dbhub"]["build"], ".");
    // The embedded DBHub config is valid TOML with the escaped placeholder.
    let toml_text = compose["configs"]["dbhub_toml"]["content"]
        .as_str()
        .unwrap();
    let cfg: toml::Value = toml::from_str(toml_text).unwrap();
    assert_eq!(
        cfg["sources"][0]["dsn"].as_str(),
        Some("$${DBHUB_DSN_POSTGRES}")
    );
}

#[test]
fn dockerfile_builds_with_the_pinned_toolchain_and_runs_as_nonroot() {
    let dockerfile = read("Dockerfile");
    let toolchain: toml::Value = toml::from_str(&read("rust-toolchain.toml")).unwrap();
    let channel = toolchain["toolchain"]["channel"].as_str().unwrap();
    assert!(
        dockerfile.contains(&format!("FROM rust:{channel}-")),
        "builder uses Rust {channel}"
    );
    assert!(dockerfile.contains("USER 65532:65532"));
    assert!(
        dockerfile
            .lines()
            .filter(|l| l.starts_with("FROM "))
            .count()
            >= 2,
        "multi-stage"
    );
    for dir in ["operator", "src", "migrations", "openapi"] {
        assert!(
            dockerfile.contains(&format!("COPY {dir} {dir}")),
            "{dir} copied into the build"
        );
    }
}
