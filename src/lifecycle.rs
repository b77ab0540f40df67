//! One lifecycle for the process: a single token that SIGTERM/SIGINT (or a fatal failure)
//! cancels, driving axum's graceful shutdown and the reconcilers' — plus the reason the process
//! must end as a failure, so a supervised task that stops unexpectedly or a start-up step that
//! gives up makes the process exit non-zero (Kubernetes then treats it as a crash).

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// The shutdown signal and, once something failed, why.
#[derive(Clone, Default)]
pub struct Lifecycle {
    token: CancellationToken,
    fatal: Arc<Mutex<Option<String>>>,
}

impl Lifecycle {
    /// A lifecycle that has not been asked to stop.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token that is cancelled when the process is to stop.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Stops the process as a failure; the first reason given is the one reported.
    pub fn fail(&self, reason: impl Into<String>) {
        let reason = reason.into();
        {
            let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
            if fatal.is_none() {
                tracing::warn!(reason = %reason, "stopping because of a failure");
                *fatal = Some(reason);
            }
        }
        self.token.cancel();
    }

    /// Stops the process normally (a signal).
    pub fn stop(&self) {
        self.token.cancel();
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Ok unless [`Lifecycle::fail`] was called.
    pub fn outcome(&self) -> anyhow::Result<()> {
        match self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            Some(reason) => Err(anyhow::anyhow!(reason)),
            None => Ok(()),
        }
    }

    /// Cancels on SIGTERM or SIGINT.
    pub async fn stop_on_signal(self) {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    self.fail(format!("cannot listen for SIGTERM: {e}"));
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            () = self.token.cancelled() => return,
        }
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_is_the_outcome_and_a_stop_is_a_success() {
        let l = Lifecycle::new();
        l.stop();
        assert!(l.is_stopping() && l.outcome().is_ok());
        let l = Lifecycle::new();
        l.fail("the reconcilers stopped");
        l.fail("something later");
        assert_eq!(
            l.outcome().unwrap_err().to_string(),
            "the reconcilers stopped"
        );
    }
}
