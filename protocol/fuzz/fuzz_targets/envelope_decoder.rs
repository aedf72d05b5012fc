//! Feeds arbitrary bytes to the envelope decoder, as the network would.
//!
//! Checks: decoding never panics; whatever decodes re-encodes to bytes that decode to the same
//! envelope; and applying the decoded envelope to a ledger never panics (it is accepted or
//! rejected with a code).

#![no_main]

use deai_protocol::ledger::Entry;
use deai_protocol::testkit::TestNet;
use deai_protocol::SignedEnvelope;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn base_ledger() -> &'static deai_protocol::Ledger {
    static NET: OnceLock<deai_protocol::Ledger> = OnceLock::new();
    NET.get_or_init(|| {
        let mut net = TestNet::new();
        let _miner = net.miner("fuzz-miner", &["text-generation"], 4);
        let client = net.client("fuzz-client");
        net.put_free(&client, "text-generation");
        net.ledger
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = SignedEnvelope::from_wire(data) else { return };
    let again = SignedEnvelope::from_wire(&envelope.to_wire()).expect("re-encoded envelope decodes");
    assert_eq!(again, envelope);
    let mut ledger = base_ledger().clone();
    let root = ledger.root;
    let entry = Entry { stamped_ms: 1, envelope };
    if let Err(rejection) = ledger.apply_preverified(&entry) {
        assert!(!rejection.code().is_empty());
        assert_eq!(ledger.root, root, "a rejected entry changes nothing");
    }
});
