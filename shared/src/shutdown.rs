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

/// `starting` (a service's start-up), or `None` when `stop` resolves first: a SIGTERM that
/// arrives while a dependency keeps start-up waiting stops the service instead of going
/// unheard. What `starting` had begun is dropped with it.
pub async fn unless_stopped<T>(
    stop: &mut (impl Future<Output = ()> + Unpin),
    starting: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        started = starting => Some(started),
        () = stop => {
            tracing::info!("stopped while starting");
            None
        }
    }
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

    #[tokio::test]
    async fn a_start_up_that_never_ends_gives_way_to_the_stop() {
        let mut stop = Box::pin(async {});
        let started = super::unless_stopped(&mut stop, std::future::pending::<()>()).await;
        assert_eq!(started, None);
        let mut never = Box::pin(std::future::pending::<()>());
        assert_eq!(
            super::unless_stopped(&mut never, async { 7 }).await,
            Some(7)
        );
    }
}
