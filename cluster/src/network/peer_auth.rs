//! Who is at the other end of a peer connection.
//!
//! Coordinators speak mutual TLS 1.3 with raw public keys (RFC 7250): each side presents its
//! coordinator ed25519 key, the one the genesis lists (`identity.rs`), and each side's verifier
//! accepts only the keys of the cluster's members. The member table binds every Raft node id to
//! one key, so once the handshake is done a server knows which member it is talking to, and a
//! client knows it reached the member it meant to reach, not merely some member. rustls (with
//! ring) does the cryptography; this module only decides whose keys are good. Why TLS with raw
//! keys and not Noise or certificates: `docs/decisions.md`, "Peer transport".

use crate::ClusterError;
use deai_protocol::types::ParticipantId;
use deai_storage::NodeId;
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::AlwaysResolvesClientRawPublicKeys;
use rustls::crypto::{verify_tls13_signature_with_raw_key, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::AlwaysResolvesServerRawPublicKeys;
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The name a client puts in its ClientHello. Peers are identified by key, never by name.
const PEER_SERVER_NAME: &str = "deai-peer";

/// Raft node id to the coordinator key that member authenticates with.
pub type MemberKeys = BTreeMap<NodeId, ParticipantId>;

/// One coordinator's side of the peer handshake: its own key, and the members it trusts.
/// Clones share the member table.
#[derive(Clone)]
pub struct PeerAuth {
    me: NodeId,
    members: Arc<RwLock<MemberKeys>>,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAuth").field("me", &self.me).field("members", &self.members()).finish()
    }
}

fn tls_setup(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Config(format!("peer TLS setup: {e}"))
}

impl PeerAuth {
    /// Node `me`, holding `key`, in a cluster whose members are `members` (which must list `me`
    /// with `key`'s public half).
    pub fn new(me: NodeId, key: &SigningKey, members: MemberKeys) -> Result<Self, ClusterError> {
        let own = ParticipantId(key.verifying_key().to_bytes());
        match members.get(&me) {
            Some(listed) if *listed == own => {}
            Some(listed) => {
                return Err(ClusterError::Config(format!(
                    "the member table lists node {me} with key {listed}, but this node's key is {own}"
                )))
            }
            None => return Err(ClusterError::Config(format!("the member table does not list this node ({me})"))),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pkcs8 = key.to_pkcs8_der().map_err(tls_setup)?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec()));
        let signer = provider.key_provider.load_private_key(private).map_err(tls_setup)?;
        let spki = key.verifying_key().to_public_key_der().map_err(tls_setup)?;
        let certified = Arc::new(CertifiedKey::new(vec![CertificateDer::from(spki.as_bytes().to_vec())], signer));

        let members = Arc::new(RwLock::new(members));
        let verifier = Arc::new(MemberVerifier {
            members: members.clone(),
            algorithms: provider.signature_verification_algorithms,
        });
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_setup)?
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(certified.clone())));
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_setup)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(certified)));
        Ok(PeerAuth {
            me,
            members,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The member table as it stands.
    pub fn members(&self) -> MemberKeys {
        self.members.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The member that authenticates with `key`, if any.
    pub fn member_with_key(&self, key: &ParticipantId) -> Option<NodeId> {
        let members = self.members.read().unwrap_or_else(|p| p.into_inner());
        members.iter().find(|(_, k)| *k == key).map(|(id, _)| *id)
    }

    /// Completes the server side of the handshake on `stream`; returns the stream and the
    /// member that authenticated.
    pub(crate) async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> std::io::Result<(tokio_rustls::server::TlsStream<S>, NodeId)> {
        let tls = self.acceptor.accept(stream).await.map_err(refused_key)?;
        let key = presented_key(tls.get_ref().1.peer_certificates())?;
        let member = self.member_with_key(&key).ok_or_else(|| denied(format!("key {key} is no member's")))?;
        Ok((tls, member))
    }

    /// Completes the client side of the handshake with `expected` on `stream`; refuses a
    /// server that authenticates as any other member.
    pub(crate) async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        expected: NodeId,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<S>> {
        let want = self.members.read().unwrap_or_else(|p| p.into_inner()).get(&expected).copied();
        let Some(want) = want else { return Err(denied(format!("node {expected} is not in the member table"))) };
        let name = ServerName::try_from(PEER_SERVER_NAME).map_err(std::io::Error::other)?;
        let tls = self.connector.connect(name, stream).await?;
        let key = presented_key(tls.get_ref().1.peer_certificates())?;
        if key != want {
            let claimed = self.member_with_key(&key).map_or("no member".to_string(), |id| format!("node {id}"));
            return Err(denied(format!("the peer meant to be node {expected} authenticated as {claimed}")));
        }
        Ok(tls)
    }
}

/// A handshake that failed because the peer's key is no member's, as `PermissionDenied`.
fn refused_key(e: std::io::Error) -> std::io::Error {
    let not_member = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)));
    if not_member {
        denied(format!("the peer's key is no member's ({e})"))
    } else {
        e
    }
}

fn denied(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, why)
}

/// The ed25519 key in a raw public key (an X.509 SubjectPublicKeyInfo), if that is what it is.
fn ed25519_key_of(spki: &[u8]) -> Option<ParticipantId> {
    VerifyingKey::from_public_key_der(spki).ok().map(|k| ParticipantId(k.to_bytes()))
}

fn presented_key(certificates: Option<&[CertificateDer<'static>]>) -> std::io::Result<ParticipantId> {
    certificates
        .and_then(|c| c.first())
        .and_then(|spki| ed25519_key_of(spki.as_ref()))
        .ok_or_else(|| denied("the peer presented no ed25519 key".into()))
}

/// Accepts exactly the members' ed25519 keys, on both sides of the handshake.
#[derive(Debug)]
struct MemberVerifier {
    members: Arc<RwLock<MemberKeys>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl MemberVerifier {
    fn check_member(&self, presented: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let key = ed25519_key_of(presented.as_ref())
            .ok_or(rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let members = self.members.read().unwrap_or_else(|p| p.into_inner());
        if members.values().any(|k| *k == key) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }

    fn check_signature(
        &self,
        message: &[u8],
        presented: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(presented.as_ref()),
            dss,
            &self.algorithms,
        )
    }
}

/// TLS 1.2 is never negotiated (both configs allow 1.3 only), so its signatures are refused.
fn no_tls12() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::General("coordinators speak TLS 1.3 only".into()))
}

impl ServerCertVerifier for MemberVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check_member(end_entity).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for MemberVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check_member(end_entity).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}
