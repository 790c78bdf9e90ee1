//! The one claim protocol of every exactly-once step: claim a record (insert-if-absent, or take over a claim whose
//! holder died), wait a bounded time for a live holder or give up, then settle or release what was claimed.
//!
//! A claim names the request holding it (`Claim::owner`, random per request). A storage call whose answer was
//! lost may still have landed (the SDK retries a write, and its retry meets our own first attempt: a 409 or 412
//! for our own write). Every conflict is therefore re-read, and a record that carries our claim is ours. Every loop
//! here has a bound: `MAX_ROUNDS` store round trips, and `Patience` for a live holder.

use super::{Claim, Etag, Key, Store, StoreError, Versioned};
use crate::upstream::Deadline;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;

/// Most store round trips one claim or settle makes before giving up.
const MAX_ROUNDS: usize = 40;
/// How often a waiting request re-reads a record held by another.
const POLL: Duration = Duration::from_millis(150);

/// Where the work a record guards stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Still to do: claimable when its claim is released or stale.
    Open,
    /// Done: nothing to claim.
    Done,
    /// A step whose outcome is unknown once its claim is stale (a create whose answer was lost): never claimed
    /// again, since repeating it could do it twice.
    Unknown,
}

/// A record that guards one piece of work with a claim.
pub trait Guarded: Serialize + DeserializeOwned + Clone + Send + Sync {
    fn claim(&self) -> &Claim;
    fn claim_mut(&mut self) -> &mut Claim;
    fn stage(&self) -> Stage;
}

/// How long to wait for a live holder of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Give up at once (the caller stops and keeps the order).
    None,
    /// Re-read until the holder finishes, this long at most (and never past the request's deadline).
    Wait(Duration),
}

/// What claiming found.
#[derive(Debug)]
pub enum Acquired<T> {
    /// Ours to do. `took_over` is the claim we replaced (a released one, or a stale one whose holder may have done
    /// part of the work), `None` for a fresh record.
    Ours {
        record: Versioned<T>,
        took_over: Option<Claim>,
    },
    Done(Versioned<T>),
    /// An earlier attempt's outcome is unknown (`Stage::Unknown` with a stale claim).
    Uncertain(Versioned<T>),
    /// Held by another request, after waiting as long as allowed.
    Busy,
}

/// How one claim is made.
pub struct Claiming<'f, T> {
    /// The record to insert when there is none; `None`: an absent record is `StoreError::NotFound`.
    pub fresh: Option<&'f (dyn Fn() -> T + Sync)>,
    /// The record to write when taking over the one found (the claimant then sets the claim).
    pub take_over: &'f (dyn Fn(&T) -> T + Sync),
    pub patience: Patience,
}

/// How a held claim is given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The work surely did not happen: the next request may claim it at once.
    Now,
    /// The work may have happened (an upstream may still be carrying it out): claimable only after the settling
    /// time, and the next holder looks for its result first.
    AfterSettling,
    /// The work surely did not happen and the record is not needed: delete it.
    Forget,
}

/// The claim TTL and settling time of one request's claims.
#[derive(Debug, Clone, Copy)]
pub struct ClaimPolicy {
    /// A claim older than this is taken over (its holder crashed or timed out).
    pub ttl_secs: i64,
    /// After an uncertain call, how long the next attempt waits before looking for its result.
    pub settle_secs: i64,
}

/// One request's identity for its claims.
pub struct Claimant<'a> {
    store: &'a Store,
    owner: String,
    policy: ClaimPolicy,
    deadline: Deadline,
}

impl<'a> Claimant<'a> {
    pub fn new(store: &'a Store, policy: ClaimPolicy, deadline: Deadline) -> Self {
        Claimant { store, owner: format!("{:016x}", rand::thread_rng().gen::<u64>()), policy, deadline }
    }

    /// A new claim held by this request.
    pub fn new_claim(&self) -> Claim {
        Claim::new(&self.owner)
    }

    pub(crate) fn is_mine(&self, claim: &Claim) -> bool {
        !claim.owner.is_empty() && claim.owner == self.owner
    }

    /// Claims the record at `key`. `read` is the record as the caller just read it; `Some(None)` when the caller
    /// expects none (the insert is tried first and doubles as the read); `None`: read it here.
    pub async fn acquire<T: Guarded>(
        &self,
        key: &Key,
        read: Option<Option<Versioned<T>>>,
        how: Claiming<'_, T>,
    ) -> Result<Acquired<T>, StoreError> {
        let started = Instant::now();
        let mut current = read;
        // A takeover whose answer was lost: if the next read shows our claim, it landed.
        let mut replaced: Option<Claim> = None;
        for _ in 0..MAX_ROUNDS {
            let found = match current.take() {
                Some(read) => read,
                None => self.store.get::<T>(key).await?,
            };
            let Some(found) = found else {
                let fresh = how.fresh.ok_or(StoreError::NotFound)?;
                let mut record = fresh();
                *record.claim_mut() = self.new_claim();
                match self.store.insert(key, &record).await {
                    Ok(etag) => {
                        return Ok(Acquired::Ours { record: Versioned { value: record, etag }, took_over: None })
                    }
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e),
                }
            };
            let stage = found.value.stage();
            if stage == Stage::Done {
                return Ok(Acquired::Done(found));
            }
            if self.is_mine(found.value.claim()) {
                return Ok(Acquired::Ours { record: found, took_over: replaced });
            }
            if !found.value.claim().is_stale(self.policy.ttl_secs) {
                match how.patience {
                    Patience::Wait(limit) if started.elapsed() < limit && self.deadline.remaining() > POLL * 4 => {
                        tokio::time::sleep(POLL).await;
                        continue;
                    }
                    _ => return Ok(Acquired::Busy),
                }
            }
            if stage == Stage::Unknown {
                return Ok(Acquired::Uncertain(found));
            }
            let mut record = (how.take_over)(&found.value);
            *record.claim_mut() = self.new_claim();
            let previous = found.value.claim().clone();
            match self.store.replace(key, &record, &found.etag).await {
                Ok(etag) => {
                    return Ok(Acquired::Ours { record: Versioned { value: record, etag }, took_over: Some(previous) })
                }
                Err(StoreError::Changed | StoreError::NotFound) => replaced = Some(previous),
                Err(e) => return Err(e),
            }
        }
        Ok(Acquired::Busy)
    }

    /// Changes the record we hold: `change` is applied to it and written with its ETag; when the record changed
    /// since (another writer, our claim taken over after going stale, or our own earlier write landed late), it
    /// is re-read and `change` applied to what is there now. `change` returns false when its write no longer
    /// applies. Returns the new ETag, or `None` when it no longer applied.
    pub(crate) async fn settle_with<T: Guarded>(
        &self,
        key: &Key,
        held: &Versioned<T>,
        mut change: impl FnMut(&mut T) -> bool,
    ) -> Result<Option<Etag>, StoreError> {
        let mut current = held.clone();
        for _ in 0..MAX_ROUNDS {
            if !change(&mut current.value) {
                return Ok(None);
            }
            match self.store.replace(key, &current.value, &current.etag).await {
                Ok(etag) => return Ok(Some(etag)),
                Err(StoreError::Changed) => {}
                Err(e) => return Err(e),
            }
            match self.store.get::<T>(key).await? {
                Some(now) => current = now,
                None => return Err(StoreError::NotFound),
            }
        }
        Err(StoreError::Unavailable("too much contention on one record; retry".into()))
    }

    /// Writes `value` over the record we hold, or, when it changed since, over what is there now if `applies`.
    pub(crate) async fn settle_if<T: Guarded>(
        &self,
        key: &Key,
        held: &Versioned<T>,
        value: &T,
        applies: impl Fn(&T) -> bool,
    ) -> Result<Option<Etag>, StoreError> {
        let mut first = true;
        self.settle_with(key, held, |r| {
            // The record as held is ours by definition; a re-read one only if `applies`.
            let write = std::mem::take(&mut first) || applies(r);
            if write {
                *r = value.clone();
            }
            write
        })
        .await
    }

    /// `settle_if` for a record that must still carry our claim.
    pub(crate) async fn settle<T: Guarded>(
        &self,
        key: &Key,
        held: &Versioned<T>,
        value: &T,
    ) -> Result<Option<Etag>, StoreError> {
        self.settle_if(key, held, value, |now| self.is_mine(now.claim())).await
    }

    /// Gives a claim back after a failure (best effort: a claim not given back goes stale after its TTL, and the
    /// next holder then looks for the work's result first). `change` adjusts the record written back.
    pub async fn release<T: Guarded>(&self, key: &Key, held: &Versioned<T>, how: Release, change: impl FnOnce(&mut T)) {
        let result = match how {
            Release::Forget => self.store.delete(key, &held.etag).await,
            Release::Now | Release::AfterSettling => {
                let mut released = held.value.clone();
                *released.claim_mut() = match how {
                    Release::Now => Claim::released(),
                    _ => Claim::settling(self.policy.ttl_secs, self.policy.settle_secs),
                };
                change(&mut released);
                self.settle(key, held, &released).await.map(drop)
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, row = %key.row, "could not give a claim back; it goes stale after its TTL");
        }
    }
}
