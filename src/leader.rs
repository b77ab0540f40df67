//! Running the reconcilers, alone or under leader election (kube-lease-manager): with
//! `--leader-elect` every replica serves the API, but only the holder of the Lease reconciles.
//! Losing the Lease stops the reconcilers at once; shutting down releases it so another
//! replica takes over without waiting for it to expire.

use dbhub_operator::controller::{Config, run_all};
use kube_lease_manager::LeaseManagerBuilder;
use tokio_util::sync::CancellationToken;

use crate::config::LeaderArgs;
use crate::lifecycle::Lifecycle;

/// Starts the reconcilers. They stop when the lifecycle stops; should they (or the lease
/// manager) stop on their own, the process fails, so nothing keeps running half-alive.
pub fn spawn(
    kube: kube::Client,
    config: Config,
    namespace: String,
    leader: LeaderArgs,
    life: Lifecycle,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !leader.enabled {
            reconcile(kube, config, life.token().clone()).await;
            if !life.is_stopping() {
                life.fail("the reconcilers stopped unexpectedly");
            }
            return;
        }
        lead_then_reconcile(kube, config, &namespace, &leader, life).await;
    })
}

async fn reconcile(kube: kube::Client, config: Config, stop: CancellationToken) {
    dbhub_operator::metrics::set_leader(true);
    run_all(kube, config, stop.cancelled_owned()).await;
    dbhub_operator::metrics::set_leader(false);
}

/// This replica's identity: the configured one, or host name (in a pod: the pod's name) +
/// random suffix (a restarted pod keeps its name, but must not be mistaken for its previous
/// life).
pub fn identity(configured: &str) -> String {
    if !configured.trim().is_empty() {
        return configured.trim().to_string();
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "aether-dbhub".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

async fn lead_then_reconcile(
    kube: kube::Client,
    config: Config,
    namespace: &str,
    leader: &LeaderArgs,
    life: Lifecycle,
) {
    let shutdown = life.token().clone();
    let me = identity(&leader.identity);
    let manager = loop {
        let built = LeaseManagerBuilder::new(kube.clone(), &leader.lease)
            .with_namespace(namespace)
            .with_identity(&me)
            .with_duration(leader.duration)
            .with_grace(leader.grace)
            .build()
            .await;
        match built {
            Ok(m) => break m,
            Err(e) => {
                tracing::warn!(error = %e, lease = %leader.lease, "cannot use the leader Lease yet; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
            }
        }
    };
    tracing::info!(identity = %me, lease = %leader.lease, "waiting for the leader lease");
    let (mut lease, task) = manager.watch().await;
    loop {
        let acquired = tokio::select! {
            () = shutdown.cancelled() => break,
            ok = async { lease.wait_for(|held| *held).await.is_ok() } => ok,
        };
        if !acquired {
            life.fail("the leader-election lease manager stopped");
            break;
        }
        tracing::info!(identity = %me, lease = %leader.lease, "acquired the leader lease; reconciling");
        let stop = shutdown.child_token();
        let mut running = tokio::spawn(reconcile(kube.clone(), config.clone(), stop.clone()));
        tokio::select! {
            () = shutdown.cancelled() => {
                stop.cancel();
                let _ = running.await;
                break;
            }
            ok = async { lease.wait_for(|held| !*held).await.is_ok() } => {
                tracing::warn!(identity = %me, "lost the leader lease; stopping the reconcilers");
                stop.cancel();
                let _ = running.await;
                if !ok {
                    life.fail("the leader-election lease manager stopped");
                    break;
                }
            }
            _ = &mut running => {
                life.fail("the reconcilers stopped unexpectedly");
                break;
            }
        }
    }
    // Closing the channel makes the manager release the Lease.
    drop(lease);
    match task.await {
        Ok(Ok(_)) => tracing::info!(identity = %me, "released the leader lease"),
        Ok(Err(e)) if life.is_stopping() => {
            tracing::warn!(error = %e, "could not release the leader lease")
        }
        Ok(Err(e)) => life.fail(format!("the leader-election lease manager failed: {e}")),
        Err(e) => life.fail(format!("the leader-election lease manager panicked: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn identities_are_unique_unless_configured() {
        assert_eq!(super::identity(" pod-a "), "pod-a");
        assert_ne!(super::identity(""), super::identity(""));
    }
}
