//! What every piece of one request's work shares: the store and the work ledger, the Halo client, where the
//! reference lives on a ticket, the request's claims and its time budget.

use crate::domain::RefLocation;
use crate::halo::client::HaloClient;
use crate::store::claim::{ClaimPolicy, Claimant};
use crate::store::Store;
use crate::upstream::Deadline;
use crate::work::Ledger;

pub struct Context<'a> {
    pub store: &'a Store,
    pub ledger: &'a Ledger,
    pub halo: &'a HaloClient,
    pub location: RefLocation,
    pub claims: Claimant<'a>,
    pub deadline: Deadline,
}

impl<'a> Context<'a> {
    /// A context whose budget is `deadline` and whose claims are new (a random owner).
    pub fn new(
        store: &'a Store,
        ledger: &'a Ledger,
        halo: &'a HaloClient,
        location: RefLocation,
        policy: ClaimPolicy,
        deadline: Deadline,
    ) -> Self {
        Context { store, ledger, halo, location, claims: Claimant::new(store, policy, deadline), deadline }
    }
}
