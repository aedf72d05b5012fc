//! openraft's own storage test suite, run against the redb store (issue 4: "run openraft's own
//! storage test suite against the redb store; don't write a weaker one").

use deai_protocol::Genesis;
use deai_storage::{LedgerStateMachine, RedbLogStore, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;

fn genesis() -> Genesis {
    deai_protocol::testkit::test_genesis(3)
}

/// Each test of the suite gets a fresh database in its own directory.
struct FreshStore;

impl StoreBuilder<TypeConfig, RedbLogStore, LedgerStateMachine, TempDir> for FreshStore {
    async fn build(&self) -> Result<(TempDir, RedbLogStore, LedgerStateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (log, sm) = deai_storage::open(&dir.path().join("ledger.redb"), genesis()).expect("fresh store opens");
        Ok((dir, log, sm))
    }
}

#[test]
fn redb_store_passes_the_openraft_storage_suite() {
    Suite::test_all(FreshStore).expect("every openraft storage test passes");
}
