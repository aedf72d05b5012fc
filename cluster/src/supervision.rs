//! The tasks a node cannot run without, and what happens when one dies.
//!
//! A coordinator whose write batcher has died still leads (openraft's own tasks are fine) but
//! never writes again; one whose peer listener has died is cut off. Such a node must say so and
//! stop, so that an orchestrator restarts it. Every critical task is spawned through
//! [`CriticalTasks`]: when one ends or panics while the node runs, its name and reason are
//! recorded, readiness fails with them (`CoordinatorNode::readiness`), and the process shell,
//! which waits on [`CriticalTasks::failed`], stops the node and exits non-zero.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

/// The first critical task to die, if any. Clones share it.
#[derive(Clone)]
pub struct CriticalTasks {
    failure: Arc<watch::Sender<Option<String>>>,
}

impl Default for CriticalTasks {
    fn default() -> Self {
        CriticalTasks { failure: Arc::new(watch::channel(None).0) }
    }
}

impl CriticalTasks {
    /// Spawns `task` as critical: its ending or panicking is a failure of the node, unless it
    /// was aborted through the returned handle (an orderly stop).
    pub fn spawn(
        &self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::AbortHandle {
        let handle = tokio::spawn(task);
        let abort = handle.abort_handle();
        let tasks = self.clone();
        tokio::spawn(async move {
            let why = match handle.await {
                Ok(()) => "ended".to_string(),
                Err(e) if e.is_cancelled() => return,
                Err(e) => format!("panicked: {e}"),
            };
            tasks.report(name, &why);
        });
        abort
    }

    /// Records that critical task `name` failed for `why` (for tasks the shell supervises
    /// itself). The first failure is kept.
    pub fn report(&self, name: &str, why: &str) {
        let text = format!("{name} {why}");
        let first = self.failure.send_if_modified(|failure| match failure {
            Some(_) => false,
            None => {
                *failure = Some(text.clone());
                true
            }
        });
        if first {
            tracing::error!(task = name, why, "a critical task died; the node is not ready and will stop");
        }
    }

    /// The first failure, if a critical task has died.
    pub fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    /// Resolves with the first failure, once a critical task has died.
    pub async fn failed(&self) -> String {
        let mut failure = self.failure.subscribe();
        let found = failure.wait_for(Option::is_some).await.map(|f| f.clone());
        match found {
            Ok(failure) => failure.unwrap_or_default(),
            // The sender lives as long as `self`: unreachable, but never a false alarm.
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_panicking_task_is_reported_and_an_aborted_one_is_not() {
        let tasks = CriticalTasks::default();
        // Aborted first: were an orderly stop reported, it would be the first failure.
        tasks.spawn("sleeper", std::future::pending()).abort();
        tasks.spawn("batcher", async { panic!("injected") });
        let why = tokio::time::timeout(Duration::from_secs(5), tasks.failed()).await.expect("reported in time");
        assert!(why.starts_with("batcher panicked"), "an orderly abort is no failure: {why}");
        tasks.report("listener", "ended");
        assert!(tasks.failure().unwrap().starts_with("batcher"), "the first failure is kept");
    }
}
