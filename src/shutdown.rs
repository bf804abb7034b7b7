//! One shutdown signal for the whole service: the HTTP server, the consumer thread and the
//! emitter all watch the same token, so stopping is one call and nobody is left running.

use tokio_util::sync::CancellationToken;

/// Cheap to clone; every clone sees the same trigger.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    /// Asks everything to stop. Idempotent.
    pub fn trigger(&self) {
        self.0.cancel();
    }

    /// For loops that cannot await (the consumer thread checks it between polls).
    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once [`Shutdown::trigger`] has been called.
    pub async fn triggered(&self) {
        self.0.cancelled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let a = Shutdown::default();
        let b = a.clone();
        assert!(!b.is_triggered());
        let waiter = tokio::spawn(async move { b.triggered().await });
        a.trigger();
        a.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter wakes")
            .expect("the waiter task");
        assert!(a.is_triggered());
    }
}
