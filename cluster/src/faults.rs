//! Faults a node injects into itself on purpose, named in its configuration: the checks of
//! supervision (a batcher that panics) and the canary that history checkers must catch.

/// Faults a node injects into itself on purpose, so that tests (and chaos runs) can check what
/// the node does when a part of it dies. Never set in production.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultInjection {
    /// The write batcher's task panics once it has proposed this many batches.
    pub batcher_panic_after_batches: Option<u64>,
    /// The canary (feature `canary`, test builds only): every this many batches, the batcher
    /// answers its writers `accepted` and never proposes the batch, a lost acknowledged write
    /// that a checker of the history must catch. A build without the feature refuses the field.
    #[cfg(feature = "canary")]
    pub canary_ack_without_commit_every: Option<u64>,
}

#[cfg(all(feature = "canary", not(debug_assertions)))]
compile_error!("the canary loses acknowledged writes on purpose: it is for test builds, never a release build");
