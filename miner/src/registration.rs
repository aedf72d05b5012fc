//! A miner's registration (SPEC 5.10): `Miner.RegisterResource` locks collateral of at least the
//! ledger's `min_collateral` and declares the services with their prices, the capacity and the
//! output endpoint; `Miner.UnRegisterResource` stops new work, and the ledger returns the
//! collateral once the miner's in-flight orders end. `deai miner register` and `unregister` sign
//! these entries, and `deai miner run` registers first when the ledger does not list the miner
//! as active, so that a fresh or unregistered miner can simply be started.

use deai_api::views::MinerView;
use deai_client::sdk::{ClientError, ClientResult};
use deai_client::Participant;
use deai_protocol::message::{DevFaucet, Message, RegisterMiner, ServiceOffer, UnregisterMiner};
use deai_protocol::types::AssetId;

/// What a miner offers when it registers. Amounts are base units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Native collateral to lock.
    pub collateral: u128,
    /// Orders served at once.
    pub capacity: u32,
    /// Where clients fetch outputs.
    pub endpoint: String,
    pub services: Vec<String>,
    /// Smallest price of a charged order that names this miner, for every service offered.
    pub price_per_request: u128,
    /// Price of one subscription period, for every service offered; `None` sells none.
    pub subscription_price: Option<u128>,
}

/// The ledger's registration states of a miner, as `status` names them in [`MinerView`].
pub const ACTIVE: &str = "active";
pub const UNREGISTERING: &str = "unregistering";
pub const UNREGISTERED: &str = "unregistered";

/// Signs `RegisterMiner` for `offer`, after taking the collateral from the dev faucet if
/// `use_faucet` (dev networks only). A refusal is an error carrying the ledger's code.
pub fn register(me: &Participant, offer: &Offer, use_faucet: bool) -> ClientResult<()> {
    if use_faucet {
        me.submit_accepted(Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: offer.collateral }))?;
    }
    let services = offer
        .services
        .iter()
        .map(|s| ServiceOffer {
            service: s.as_str().into(),
            price_per_request: offer.price_per_request,
            subscription_price: offer.subscription_price,
        })
        .collect();
    me.submit_accepted(Message::RegisterMiner(RegisterMiner {
        collateral: offer.collateral,
        capacity: offer.capacity,
        endpoint: offer.endpoint.clone(),
        services,
    }))?;
    Ok(())
}

/// Signs `UnregisterMiner`: the miner takes no new work, and the ledger returns its collateral
/// once its in-flight orders end.
pub fn unregister(me: &Participant) -> ClientResult<()> {
    me.submit_accepted(Message::UnregisterMiner(UnregisterMiner {}))?;
    Ok(())
}

/// The ledger's view of miner `id` (hex), or `None` if the ledger knows no such miner.
pub fn lookup(me: &Participant, id: &str) -> ClientResult<Option<MinerView>> {
    match me.api.get::<MinerView>(&format!("/v1/miners/{id}")) {
        Ok(view) => Ok(Some(view)),
        Err(ClientError::Api(failure)) if failure.status == 404 => Ok(None),
        Err(e) => Err(e),
    }
}
