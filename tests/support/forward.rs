//! A loopback TCP forward to a Service's ClusterIP on the stack's node (kube-proxy takes it to
//! a ready pod and follows rollouts): what a process on the host uses to reach a Service, since
//! the host cannot resolve cluster names. Shared by test support and the local demo.

use std::future::Future;

/// Accepts on `listener` and pipes each connection to the address `target` yields for it
/// (`host:port`, looked up per connection); a connection is closed when it yields none.
/// Aborting the returned task closes every forwarded connection too, as when the pods behind
/// the Service go away (clients keep connections alive, so closing the listener is not enough).
///
/// The forward runs on a thread of its own (its own runtime), as the kernel path it stands for
/// would: a client in the caller's runtime gets no shortcut through it that a client in another
/// process does not get (the benchmark compares such a client with the service, a process of its
/// own, both reaching DBHub through this forward).
pub fn spawn<F, Fut>(listener: tokio::net::TcpListener, target: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<String>> + Send + 'static,
{
    let listener = listener
        .into_std()
        .expect("the forward's listener leaves the caller's runtime");
    let (started, task) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("forward".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the forward's runtime");
            let (ended, end) = tokio::sync::oneshot::channel::<()>();
            let _ = started.send(rt.spawn(async move {
                let _ended = ended;
                let listener = tokio::net::TcpListener::from_std(listener)
                    .expect("the forward's listener in its runtime");
                serve(listener, target).await
            }));
            // Until the task ends or is aborted; its connections end with the runtime.
            let _ = rt.block_on(end);
        })
        .expect("starting the forward's thread");
    task.recv().expect("the forward's thread started")
}

async fn serve<F, Fut>(listener: tokio::net::TcpListener, target: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<String>> + Send + 'static,
{
    let target = std::sync::Arc::new(target);
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
}
