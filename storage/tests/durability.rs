//! What the store keeps across a restart, and how it refuses damaged input.

use deai_protocol::testkit::TestNet;
use deai_protocol::types::Rating;
use deai_protocol::Genesis;
use deai_storage::{EntryOutcome, LogCommand, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use std::io::Cursor;

fn genesis() -> Genesis {
    deai_protocol::testkit::test_genesis(3)
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 0), index)
}

fn normal(index: u64, command: LogCommand) -> Entry<TypeConfig> {
    Entry { log_id: log_id(index), payload: EntryPayload::Normal(command) }
}

/// The signed history of three full task cycles, and the root it leads to.
fn history() -> (Vec<deai_protocol::ledger::Entry>, [u8; 32]) {
    let mut net = TestNet::new();
    let miner = net.miner("miner", &["text-generation"], 4);
    let client = net.client("client");
    for _ in 0..3 {
        net.full_cycle(&client, std::slice::from_ref(&miner), "text-generation", Rating::Good);
    }
    (net.accepted, net.ledger.root)
}

#[tokio::test]
async fn vote_and_committed_index_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    {
        let (mut log, _) = deai_storage::open(&path, genesis()).unwrap();
        log.save_vote(&Vote::new(7, 2)).await.unwrap();
        log.save_committed(Some(log_id(42))).await.unwrap();
    }
    let (mut log, _) = deai_storage::open(&path, genesis()).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(7, 2)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(42)));
}

#[tokio::test]
async fn state_machine_applies_signed_batches_and_restarts_from_its_snapshot() {
    let (entries, root) = history();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    {
        let (_, mut sm) = deai_storage::open(&path, genesis()).unwrap();
        // Two log entries: the history split in two batches.
        let (a, b) = entries.split_at(entries.len() / 2);
        let out = sm.apply(vec![normal(1, LogCommand::new(a)), normal(2, LogCommand::new(b))]).await.unwrap();
        assert!(out.iter().flat_map(|o| &o.outcomes).all(|o| *o == EntryOutcome::Accepted));
        assert_eq!(out[1].root, root, "the state machine reaches the recorded root");
        assert_eq!(sm.ledger().root, root);
        let mut builder = sm.get_snapshot_builder().await;
        let snapshot = builder.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(2)));
    }
    let (_, mut sm) = deai_storage::open(&path, genesis()).unwrap();
    assert_eq!(sm.ledger().root, root, "restored from the stored snapshot");
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(2)));
    assert!(sm.get_current_snapshot().await.unwrap().is_some());
}

#[tokio::test]
async fn replayed_or_malformed_commands_are_rejected_deterministically() {
    let (entries, _) = history();
    let dir = tempfile::tempdir().unwrap();
    let (_, mut sm) = deai_storage::open(&dir.path().join("ledger.redb"), genesis()).unwrap();
    let garbage = LogCommand { batch: vec![1, 0xff, 0xff, 0xff] };
    let out = sm.apply(vec![normal(1, garbage), normal(2, LogCommand::new(&entries[..1]))]).await.unwrap();
    assert!(matches!(&out[0].outcomes[..], [EntryOutcome::Rejected { code, .. }] if code.starts_with("codec_")));
    assert_eq!(out[1].outcomes, vec![EntryOutcome::Accepted]);
    let root = sm.ledger().root;
    let replay = sm.apply(vec![normal(3, LogCommand::new(&entries[..1]))]).await.unwrap();
    assert!(matches!(&replay[0].outcomes[..], [EntryOutcome::Rejected { code, .. }] if code == "replay"));
    assert_eq!(sm.ledger().root, root, "a rejected entry changes nothing");
}

/// Waiters (long polls, the scheduler) are woken once per applied group that changes the
/// ledger, and not by entries that change nothing.
#[tokio::test]
async fn the_change_signal_follows_accepted_entries_only() {
    let (entries, _) = history();
    let dir = tempfile::tempdir().unwrap();
    let (_, mut sm) = deai_storage::open(&dir.path().join("ledger.redb"), genesis()).unwrap();
    let mut changes = sm.shared_ledger().changes();
    assert_eq!(*changes.borrow_and_update(), 0);
    sm.apply(vec![normal(1, LogCommand::new(&entries[..2])), normal(2, LogCommand::new(&entries[2..3]))])
        .await
        .unwrap();
    assert!(changes.has_changed().unwrap(), "an accepted group wakes waiters");
    assert_eq!(*changes.borrow_and_update(), 3, "the published value is the ledger height");
    let replay = sm.apply(vec![normal(3, LogCommand::new(&entries[..1]))]).await.unwrap();
    assert!(matches!(&replay[0].outcomes[..], [EntryOutcome::Rejected { .. }]));
    assert!(!changes.has_changed().unwrap(), "a rejected entry wakes nobody");
}

#[test]
fn a_file_that_is_not_a_ledger_database_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
    let err = deai_storage::open(&path, genesis()).err().expect("garbage is refused");
    assert_eq!(err.code(), "storage_open_failed", "{err}");
    assert!(err.to_string().contains("ledger.redb"), "the error names the file: {err}");
}

#[tokio::test]
async fn a_truncated_database_is_refused_not_silently_emptied() {
    let (entries, _) = history();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    {
        let (_, mut sm) = deai_storage::open(&path, genesis()).unwrap();
        sm.apply(vec![normal(1, LogCommand::new(&entries))]).await.unwrap();
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    }
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    match deai_storage::open(&path, genesis()) {
        Err(err) => assert!(err.code().starts_with("storage_"), "{err}"),
        Ok((_, sm)) => panic!("a truncated database opened with root {:?}", sm.ledger().root),
    }
}

#[tokio::test]
async fn a_snapshot_that_does_not_restore_is_refused_and_changes_nothing() {
    let (entries, root) = history();
    let dir = tempfile::tempdir().unwrap();
    let (_, mut sm) = deai_storage::open(&dir.path().join("ledger.redb"), genesis()).unwrap();
    sm.apply(vec![normal(1, LogCommand::new(&entries))]).await.unwrap();
    let meta = sm.get_snapshot_builder().await.build_snapshot().await.unwrap().meta;
    let err = sm.install_snapshot(&meta, Box::new(Cursor::new(vec![1, 2, 3]))).await;
    assert!(err.is_err());
    assert_eq!(sm.ledger().root, root);
}

/// SPEC 6.2: a leader's allocation that every replica recomputes differently is rejected, and the
/// signed entry is kept as evidence naming the leader, across a restart.
#[tokio::test]
async fn a_lying_leaders_entry_is_stored_as_evidence() {
    use deai_protocol::message::Message;
    let mut net = TestNet::new();
    let a = net.miner("miner-a", &["text-generation"], 4);
    let b = net.miner("miner-b", &["text-generation"], 4);
    let client = net.client("client");
    net.put_free(&client, "text-generation");
    let mut plan = net.ledger.plan_allocation(&net.coordinators[0].vrf, 1).expect("a ready miner");
    plan.miners[0] = if plan.miners[0] == a.id { b.id } else { a.id };
    let leader = net.leader().keys.clone();
    let forged = net.entry(&leader, Message::Allocate(plan));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    {
        let (_, mut sm) = deai_storage::open(&path, genesis()).unwrap();
        sm.apply(vec![normal(1, LogCommand::new(&net.accepted))]).await.unwrap();
        let root = sm.ledger().root;
        let out = sm.apply(vec![normal(2, LogCommand::new(std::slice::from_ref(&forged)))]).await.unwrap();
        assert!(matches!(&out[0].outcomes[..], [EntryOutcome::Rejected { code, .. }] if code == "allocation_mismatch"));
        assert_eq!(sm.ledger().root, root, "the lie changed nothing");
    }
    let (_, sm) = deai_storage::open(&path, genesis()).unwrap();
    let evidence = sm.evidence_log().list().unwrap();
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0].coordinator, leader.id.0);
    assert_eq!(evidence[0].code, "allocation_mismatch");
    assert_eq!((evidence[0].log_index, evidence[0].position), (2, 0));
    let entry: deai_protocol::ledger::Entry = deai_protocol::codec::decode_framed(&evidence[0].entry).unwrap();
    assert_eq!(entry, forged, "the stored entry is the signed proof");
    entry.envelope.verify_signature().expect("and its signature still verifies");
}

/// The log format: a command is the codec framing of the entry list, however it is built.
#[test]
fn a_log_command_is_the_framed_entry_list() {
    let (entries, _) = history();
    let command = LogCommand::new(&entries);
    assert_eq!(command.batch, deai_protocol::codec::encode_framed(&entries.to_vec()));
    assert_eq!(command.entries().unwrap(), entries);
}
