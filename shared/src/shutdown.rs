//! The future a service stops on: SIGTERM or Ctrl-C.

use std::future::Future;

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
///
/// The handlers are installed when this is called, not when the future is first polled: call
/// it before announcing readiness, so a SIGTERM sent the moment the ready line is read stops the
/// service cleanly instead of killing it with the default action. Must be called inside the
/// tokio runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    #[cfg(unix)]
    return async move {
        let received = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = received(interrupt) => tracing::info!("Ctrl-C received, shutting down"),
            () = received(terminate) => tracing::info!("SIGTERM received, shutting down"),
        }
    };
    #[cfg(not(unix))]
    return async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received, shutting down");
    };
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    #[tokio::test]
    async fn a_sigterm_sent_before_the_future_is_polled_is_not_lost() {
        let stop = super::signal();
        // The standard library has no kill(2): the `kill` utility sends it to this process.
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(60), stop)
            .await
            .expect("the SIGTERM is seen");
    }
}
