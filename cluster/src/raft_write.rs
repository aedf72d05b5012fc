//! One proposal to openraft, with its errors mapped to ours: the write under the batcher.

use crate::ClusterError;
use deai_storage::{CommandOutcome, LogCommand, TypeConfig};
use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;

/// A batch the cluster committed: its log index and what applying it did.
#[derive(Clone, Debug)]
pub struct Written {
    pub log_index: u64,
    pub outcome: CommandOutcome,
}

/// Proposes `command` to `raft`, mapping openraft's errors to ours. A command over
/// `MAX_LOG_COMMAND_BYTES` is refused before it is proposed.
pub(crate) async fn client_write(raft: &Raft<TypeConfig>, command: LogCommand) -> Result<Written, ClusterError> {
    if command.batch.len() > deai_storage::MAX_LOG_COMMAND_BYTES {
        return Err(ClusterError::TooLarge {
            size_bytes: command.batch.len(),
            limit_bytes: deai_storage::MAX_LOG_COMMAND_BYTES,
        });
    }
    match raft.client_write(command).await {
        Ok(response) => Ok(Written { log_index: response.log_id.index, outcome: response.data }),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ClusterError::NotLeader { leader: f.leader_id })
        }
        Err(e) => Err(ClusterError::Raft(e.to_string())),
    }
}
