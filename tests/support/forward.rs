//! A loopback TCP forward to a Service's ClusterIP on the stack's node (kube-proxy takes it to
//! a ready pod and follows rollouts): what a process on the host uses to reach a Service, since
//! the host cannot resolve cluster names. Shared by test support and the local demo.

use std::future::Future;

/// Accepts on `listener` and pipes each connection to the address `target` yields for it
/// (`host:port`, looked up per connection); a connection is closed when it yields none.
pub fn spawn<F, Fut>(listener: tokio::net::TcpListener, target: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<String>> + Send + 'static,
{
    let target = std::sync::Arc::new(target);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
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
