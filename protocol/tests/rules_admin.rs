//! Cluster-wide replay protection for admin requests: a request's hash is recorded once, on
//! every replica alike, and a second record is refused wherever it comes from.

#![allow(clippy::result_large_err)]

use deai_protocol::message::{AuthorizeAdmin, Message};
use deai_protocol::testkit::{Keys, TestNet};

fn authorize(request: u8, expires_ms: u64) -> Message {
    Message::AuthorizeAdmin(AuthorizeAdmin { request: [request; 32], expires_ms })
}

#[test]
fn an_admin_request_is_authorized_once_in_the_whole_cluster() {
    let mut net = TestNet::new();
    let expires = net.now_ms + 60_000;
    net.submit_as_coordinator(0, authorize(1, expires)).expect("first time");
    let err = net.submit_as_coordinator(1, authorize(1, expires)).unwrap_err();
    assert_eq!(err.code(), "admin_replay", "another coordinator cannot carry it out again: {err}");
    net.submit_as_coordinator(1, authorize(2, expires)).expect("another request");
    assert_eq!(net.ledger.admin_requests.len(), 2);
}

#[test]
fn a_stale_request_is_refused_and_expired_records_are_dropped() {
    let mut net = TestNet::new();
    net.advance(10_000);
    let err = net.submit_as_coordinator(0, authorize(1, net.now_ms - 1)).unwrap_err();
    assert_eq!(err.code(), "admin_stale", "{err}");
    net.submit_as_coordinator(0, authorize(2, net.now_ms + 1_000)).expect("fresh");
    net.advance(2_000);
    net.submit_as_coordinator(0, authorize(3, net.now_ms + 1_000)).expect("fresh again");
    assert!(!net.ledger.admin_requests.contains_key(&[2; 32]), "the expired record left");
}

#[test]
fn only_a_coordinator_may_authorize() {
    let mut net = TestNet::new();
    let stranger = Keys::from_name("not-a-coordinator");
    let err = net.submit(&stranger, authorize(1, net.now_ms + 1_000)).unwrap_err();
    assert_eq!(err.code(), "wrong_role", "{err}");
}
