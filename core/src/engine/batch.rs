//! Batch lookups ([`Engine::get_many_or_fetch`](super::Engine::get_many_or_fetch),
//! sturdyc's `GetOrFetchBatch`): every distinct key is read, then planned as
//! one lookup would be (`batch_plan.rs`: served, joined to a call already
//! running, or admitted on its own), and the keys admitted go to one batch
//! call (`batch_task.rs`) — stale ones refreshed in background, missing ones
//! awaited here. Answers come back in input order, duplicates answered each
//! time, invalid keys failing alone.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::pin;

use futures::future::{join_all, select, Either};
use hashbrown::HashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::batch_plan::{expired, plan, Plan, State};
use super::batch_task::{self, Answer};
use super::cached::Cached;
use super::lookup::{wait_for, Decode};
use super::shared::Shared;
use super::CallOptions;
use crate::bytes::Bytes;
use crate::codec::Codec;
use crate::detail::Detail;
use crate::entry::Entry;
use crate::error::{Error, FetchError, UpstreamError};
use crate::flight::Flight;
use crate::phase::Status;
use crate::runtime::Runtime;
use crate::stats::bump;
use crate::storage::Storage;
use crate::sync::{MaybeSend, MaybeSync};

/// What a batch lookup returns: each input key beside its own result, in
/// input order ([`Engine::get_many_or_fetch`](super::Engine::get_many_or_fetch)).
pub type BatchResults<K, V> = Vec<(K, Result<Cached<V>, Error>)>;

/// An input key: rejected, or one of the batch's distinct keys.
enum Input {
    Invalid(Error),
    Key(usize),
}

/// The batch lookup of `keys`: `job` is the batch fetch, called at most
/// once, with the keys this batch admitted; `opts` what the caller chose
/// (a TTL, tags).
/// Answers come in the order of `keys`, each with its key.
pub(crate) async fn get_many<S, R, C, K, J, F, V, D>(
    shared: &Arc<Shared<S, R, C>>,
    keys: Vec<K>,
    opts: CallOptions,
    job: J,
    decode: D,
) -> BatchResults<K, V>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    K: AsRef<str>,
    J: FnOnce(Vec<String>) -> F + MaybeSend + 'static,
    F: Future<Output = Result<Answer, Error>> + MaybeSend + 'static,
    V: Clone,
    D: Decode<V>,
{
    // "Bad input changes nothing": a refused TTL or tag fails every key, a
    // bad key only itself.
    if let Err(e) = opts.check() {
        return keys
            .into_iter()
            .map(|k| {
                shared.record_error(&e);
                (k, Err(e.clone()))
            })
            .collect();
    }
    let mut distinct: Vec<&str> = Vec::new();
    let inputs: Vec<Input> = {
        let mut index: HashMap<&str, usize> = HashMap::new();
        keys.iter()
            .map(|k| {
                let key = k.as_ref();
                if let Err(e) = shared.check_key(key) {
                    return Input::Invalid(e);
                }
                Input::Key(*index.entry(key).or_insert_with(|| {
                    distinct.push(key);
                    distinct.len() - 1
                }))
            })
            .collect()
    };

    let stored = read_all(shared, &distinct).await;
    let now = shared.now();
    let mut members = Vec::new();
    let mut plans: Vec<Plan<V>> = distinct
        .iter()
        .zip(stored)
        .map(|(key, stored)| plan(shared, key, stored, &decode, now, &mut members))
        .collect();
    // Admitted and spawned in one poll: a caller dropped from here on never
    // cancels the call ("callers never cancel the call").
    batch_task::spawn(shared, members, job, opts);

    let mut now = now;
    loop {
        let waits = plans
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match (&p.state, &p.call) {
                (State::Wait { fallback }, Some(flight)) => {
                    let expires_at = fallback.as_ref().map(|(_, e)| e.expires_at);
                    Some(wait(shared, i, flight, expires_at, now))
                }
                _ => None,
            });
        let waited = join_all(waits).await;
        for (i, result) in waited {
            let Some(p) = plans.get_mut(i) else { continue };
            let before = core::mem::replace(&mut p.state, State::Now(Err(Error::Abandoned)));
            if let State::Wait { fallback } = before {
                p.state = State::Now(answer(shared, &decode, result, fallback));
            }
        }
        // "Nothing is served past `expires_at`": an answer made before the
        // batch ends (at once, or for a key that waited less than another)
        // whose value expired meanwhile is made again from the key's call,
        // waited for in turn; a key without one fails.
        now = shared.now();
        let mut again = false;
        for p in &mut plans {
            let State::Now(Ok(c)) = &p.state else {
                continue;
            };
            if now < c.expires_at {
                continue;
            }
            if p.call.is_some() && !p.remade {
                p.remade = true;
                p.state = State::Wait { fallback: None };
                again = true;
            } else {
                p.state = State::Now(Err(expired(shared, c.detail)));
            }
        }
        if !again {
            break;
        }
    }

    let results: Vec<Result<Cached<V>, Error>> = plans
        .into_iter()
        .map(|p| match p.state {
            State::Now(r) => r,
            // Every wait was answered above.
            State::Wait { .. } => Err(Error::Abandoned),
        })
        .collect();
    keys.into_iter()
        .zip(inputs)
        .map(|(k, input)| {
            let r = match input {
                Input::Invalid(e) => Err(e),
                Input::Key(i) => results.get(i).cloned().unwrap_or(Err(Error::Abandoned)),
            };
            shared.record(&r, |c| c.status);
            (k, r)
        })
        .collect()
}

/// Every key's stored entry: stores that answer at once are not awaited,
/// the others are read concurrently. A read error reads as absent.
async fn read_all<S, R, C>(shared: &Shared<S, R, C>, keys: &[&str]) -> Vec<Option<Entry>>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    let mut stored = Vec::with_capacity(keys.len());
    let mut later = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        match shared.storage().get_ready(key) {
            // A tagged entry is read again with its tags checked, below.
            Some(read) => match shared.degrade_read(read) {
                Some(e) if !e.tags.is_empty() => {
                    stored.push(None);
                    later.push(i);
                }
                read => stored.push(read),
            },
            None => {
                stored.push(None);
                later.push(i);
            }
        }
    }
    if !later.is_empty() {
        let reads = join_all(later.iter().map(|&i| async move {
            match keys.get(i) {
                Some(key) => shared.read(key).await,
                None => None,
            }
        }));
        for (i, read) in later.iter().zip(reads.await) {
            if let Some(slot) = stored.get_mut(*i) {
                *slot = read;
            }
        }
    }
    stored
}

/// What a key waiting for a call got: its result, or `None` when the soft
/// timeout passed first (only keys with an old value, `expires_at`, that
/// has not passed).
async fn wait<S, R, C>(
    shared: &Shared<S, R, C>,
    i: usize,
    flight: &Arc<Flight>,
    expires_at: Option<u64>,
    now: u64,
) -> (usize, Option<Result<(Entry, Status), Error>>)
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
{
    let mut result = pin!(wait_for(shared, flight, now));
    let soft = shared.cfg().soft_timeout.filter(|_| expires_at.is_some());
    if let (Some(soft), Some(expires_at)) = (soft, expires_at) {
        let sleep = pin!(shared.runtime().sleep(soft));
        match select(result.as_mut(), sleep).await {
            Either::Left((r, _)) => return (i, Some(r)),
            // Not past `expires_at`: then it waits on.
            Either::Right(_) if shared.now() < expires_at => return (i, None),
            Either::Right(_) => {}
        }
    }
    (i, Some(result.await))
}

/// A waiting key's answer: the call's value, or its old value as a
/// `Fallback` (never past `expires_at`), or the call's error.
fn answer<S, R, C, V, D>(
    shared: &Shared<S, R, C>,
    decode: &D,
    result: Option<Result<(Entry, Status), Error>>,
    fallback: Option<(V, Entry)>,
) -> Result<Cached<V>, Error>
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    D: Decode<V>,
{
    let now = shared.now();
    match (result, fallback) {
        (Some(Ok((mut newer, status))), _) => {
            let v = decode.decode(&mut newer.value).map_err(Error::Codec)?;
            Ok(Cached::new(v, status, &newer, now))
        }
        (None, Some((value, entry))) => {
            bump(&shared.counters().soft_timeouts);
            let cached = Cached::new(value, Status::Fallback, &entry, now);
            Ok(cached.with_detail(Detail::SoftTimeout))
        }
        (Some(Err(e)), Some((value, entry))) if now < entry.expires_at => {
            let cached = Cached::new(value, Status::Fallback, &entry, now);
            Ok(cached.with_detail(Detail::of_failure(&e)))
        }
        (Some(Err(e)), _) => Err(e),
        // A soft timeout is only taken with a fallback.
        (None, None) => Err(Error::Abandoned),
    }
}

/// [`get_many`] with a fetch of bytes (anything `Into<Bytes>`), as
/// `Engine::get_many_or_fetch` takes it.
pub(crate) fn get_many_bytes<'a, S, R, C, K, F, Fut, M, MK, T, E>(
    shared: &'a Arc<Shared<S, R, C>>,
    keys: Vec<K>,
    opts: CallOptions,
    fetch: F,
) -> impl Future<Output = BatchResults<K, Bytes>> + 'a
where
    S: Storage,
    R: Runtime,
    C: MaybeSend + MaybeSync + 'static,
    K: AsRef<str> + 'a,
    F: FnOnce(Vec<String>) -> Fut + MaybeSend + 'static,
    Fut: Future<Output = Result<M, E>> + MaybeSend + 'static,
    M: IntoIterator<Item = (MK, T)>,
    MK: Into<String>,
    T: Into<Bytes>,
    E: FetchError,
{
    let job = move |keys: Vec<String>| async move {
        match fetch(keys).await {
            Ok(answer) => Ok(answer
                .into_iter()
                .map(|(k, v)| (k.into(), Ok(v.into())))
                .collect::<Answer>()),
            Err(e) => Err(Error::Upstream(UpstreamError::new(e))),
        }
    };
    // Cloned, not moved out: the entry goes on to the call as what was seen.
    get_many(shared, keys, opts, job, |v: &mut Bytes| Ok(v.clone()))
}

/// [`get_many`] with a fetch of `V`s, encoded with the engine's codec (a
/// value that does not encode fails its key only) and served decoded, as
/// `Engine::get_many_or_fetch_as` takes it.
pub(crate) fn get_many_typed<'a, S, R, C, V, K, F, Fut, M, MK, E>(
    shared: &'a Arc<Shared<S, R, C>>,
    keys: Vec<K>,
    opts: CallOptions,
    fetch: F,
) -> impl Future<Output = BatchResults<K, Arc<V>>> + 'a
where
    S: Storage,
    R: Runtime,
    C: Codec + Clone,
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
    K: AsRef<str> + 'a,
    F: FnOnce(Vec<String>) -> Fut + MaybeSend + 'static,
    Fut: Future<Output = Result<M, E>> + MaybeSend + 'static,
    M: IntoIterator<Item = (MK, V)>,
    MK: Into<String>,
    E: FetchError,
{
    let codec = shared.codec().clone();
    let job = move |keys: Vec<String>| async move {
        match fetch(keys).await {
            Ok(answer) => Ok(answer
                .into_iter()
                .map(|(k, v)| {
                    let bytes = codec.encode(&v).map(Bytes::from).map_err(Error::Codec);
                    (k.into(), bytes)
                })
                .collect::<Answer>()),
            Err(e) => Err(Error::Upstream(UpstreamError::new(e))),
        }
    };
    let codec = shared.codec();
    let decoded = shared.decoded();
    get_many(shared, keys, opts, job, move |v: &mut Bytes| {
        decoded.get_or_decode(v, || codec.decode::<V>(v))
    })
}
