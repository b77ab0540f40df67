//! Clients generated from the committed OpenAPI document must work for their authors: a
//! TypeScript client generated with openapi-typescript, called through openapi-fetch by
//! `tests/clients/typescript/client.ts` (list, create, test, query, read cells, tables and
//! columns, saved queries, history, delete), type-checks with `tsc --noEmit` under `strict`. The tools are the
//! versions `scripts/lib/build.sh` pins, installed from npm into the cache by `scripts/stack`.

use std::path::Path;
use std::process::Command;

use crate::support::{stack, unique};

fn run(what: &str, cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn typescript_client_generated_from_the_document_type_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tools = Path::new(stack().get("STACK_TSCLIENT_DIR")).join("node_modules");
    let node = stack().get("STACK_NODE");
    let dir = std::env::temp_dir().join(unique("tsclient"));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["client.ts", "tsconfig.json"] {
        std::fs::copy(root.join("tests/clients/typescript").join(f), dir.join(f)).unwrap();
    }
    std::os::unix::fs::symlink(&tools, dir.join("node_modules")).unwrap();
    run(
        "openapi-typescript",
        Command::new(node)
            .arg(tools.join("openapi-typescript/bin/cli.js"))
            .arg(root.join("openapi/openapi.json"))
            .arg("-o")
            .arg(dir.join("schema.d.ts"))
            .current_dir(&dir),
    );
    let generated = std::fs::read_to_string(dir.join("schema.d.ts")).unwrap();
    assert!(
        generated.contains("listDatabases"),
        "operation ids are generated"
    );
    run(
        "tsc --noEmit",
        Command::new(node)
            .arg(tools.join("typescript/bin/tsc"))
            .args(["-p", "tsconfig.json"])
            .current_dir(&dir),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
