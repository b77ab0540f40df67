//! A loopback TCP forward to a Service's ClusterIP on the stack's node (kube-proxy takes it to
//! a ready pod and follows rollouts): what a process on the host uses to reach a Service, since
//! the host cannot resolve cluster names. Shared by test support and the local demo.

use std::future::Future;

/// Accepts on `listener` and pipes each connection to the address `target` yields for it
/// (`host:port`, looked up per connection); a connection is closed when it yields none.
/// Aborting the returned task closes every forwarded connection too, as when the pods behind
/// the Service go away (clients keep connections alive, so closing the listener is not enough).
pub fn spawn<F, Fut>(listener: tokio::net::TcpListener, target: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<String>> + Send + 'static,
{
    let target = std::sync::Arc::new(target);
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let mut inbound = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((inbound, _)) => inbound,
                    Err(_) => break,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let target = target.clone();
            connections.spawn(async move {
                let Some(addr) = target().await else { return };
                if let Ok(mut out) = tokio::net::TcpStream::connect(&addr).await {
                    let _ = out.set_nodelay(true);
                    let _ = inbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    })
}
