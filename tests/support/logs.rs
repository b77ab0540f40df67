//! Captures every tracing line the test process emits (the reconcilers run in-process), so
//! tests can search them for secrets.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per process; debug level for our crates).
pub fn capture() {
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(buf.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,dbhub_operator=debug,aether_dbhub=debug,kube=info")
            .json()
            .with_writer(move || sink.clone())
            .try_init();
        buf
    });
}

/// Everything logged so far.
pub fn text() -> String {
    capture();
    String::from_utf8_lossy(&BUF.get().unwrap().lock().unwrap()).into_owned()
}
