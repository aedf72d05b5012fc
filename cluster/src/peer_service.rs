//! What a coordinator node answers its peers: the [`PeerService`] its TCP listener serves.
//!
//! The listener (`network/tcp.rs`) knows the frame format and checks every request against the
//! member that sent it; this is where the node carries a request out. It sits above the node and
//! its admin commands, so that neither the node nor the transport imports the other.

use crate::control::SignedAdmin;
use crate::metrics::NodeMetrics;
use crate::network::tcp::{PeerService, ServiceFuture};
use crate::raft_write::Written;
use crate::{ClusterError, CoordinatorNode};
use deai_storage::{TypeConfig, UnstampedBatch};
use openraft::raft::AppendEntriesRequest;
use openraft::Raft;

impl PeerService for CoordinatorNode {
    fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    fn metrics(&self) -> &NodeMetrics {
        CoordinatorNode::metrics(self)
    }

    fn overwrites_committed<'a>(
        &'a self,
        rpc: &'a AppendEntriesRequest<TypeConfig>,
    ) -> ServiceFuture<'a, Option<String>> {
        Box::pin(CoordinatorNode::overwrites_committed(self, rpc))
    }

    fn forwarded_write(&self, batch: UnstampedBatch) -> ServiceFuture<'_, Result<Written, ClusterError>> {
        Box::pin(async move { self.submit_batch(&batch).await })
    }

    fn forwarded_admin(&self, request: SignedAdmin) -> ServiceFuture<'_, Result<String, ClusterError>> {
        Box::pin(self.admin_signed_here(request))
    }

    fn read_index(&self) -> ServiceFuture<'_, Result<u64, ClusterError>> {
        Box::pin(self.read_index_here())
    }
}
