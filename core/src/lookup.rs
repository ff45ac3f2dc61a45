//! The lookup flow: the phase table and engine rules 1–8 applied to one call.

use core::future::Future;

use crate::breaker::{BreakerState, Transitions};
use crate::bytes::Bytes;
use crate::codec::Codec;
use crate::engine::{Cached, Engine, Inner};
use crate::entry::{CacheTtl, Entry};
use crate::error::{CodecError, Error};
use crate::flight::{Flight, Joined};
use crate::phase::{Phase, Status};
use crate::policy::ExpiredMode;
use crate::runtime::Runtime;
use crate::stats::bump;
use crate::storage::Storage;
use crate::sync::MaybeSend;
use alloc::sync::Arc;

impl<S: Storage, R: Runtime, C: Codec + Clone> Engine<S, R, C> {
    /// One lookup: read, classify, and serve, join or start an upstream call.
    ///
    /// `job` is the upstream call producing the bytes to store; `decode` turns
    /// a stored entry into the caller's value (an entry that fails to decode is
    /// treated as absent).
    pub(crate) async fn lookup<J, JF, V, D>(
        &self,
        key: &str,
        ttl: Option<CacheTtl>,
        job: J,
        decode: D,
    ) -> Result<Cached<V>, Error>
    where
        J: FnOnce() -> JF + MaybeSend + 'static,
        JF: Future<Output = Result<Bytes, Error>> + MaybeSend + 'static,
        D: Fn(&Entry) -> Result<V, CodecError>,
    {
        let result = self.classify_and_serve(key, ttl, job, &decode).await;
        let i = &self.inner;
        match &result {
            Ok(c) => {
                i.counters.status(c.status);
                if let Some(m) = &i.metrics {
                    m.lookup(c.status);
                }
            }
            Err(e) => {
                bump(&i.counters.errors);
                if let Some(m) = &i.metrics {
                    m.lookup_error(e);
                }
            }
        }
        result
    }

    async fn classify_and_serve<J, JF, V, D>(
        &self,
        key: &str,
        ttl: Option<CacheTtl>,
        job: J,
        decode: &D,
    ) -> Result<Cached<V>, Error>
    where
        J: FnOnce() -> JF + MaybeSend + 'static,
        JF: Future<Output = Result<Bytes, Error>> + MaybeSend + 'static,
        D: Fn(&Entry) -> Result<V, CodecError>,
    {
        self.check_key(key)?;
        let i = &self.inner;
        let now = i.runtime.now_ms();
        let stored = self.read(key).await;
        let usable = match &stored {
            Some(entry) => match Phase::of(Some(entry), now) {
                Phase::Gone => None,
                phase => match decode(entry) {
                    Ok(value) => Some((phase, entry, value)),
                    Err(_) => {
                        bump(&i.counters.decode_errors);
                        None
                    }
                },
            },
            None => None,
        };
        match usable {
            Some((Phase::Fresh, entry, value)) => Ok(Cached::new(value, Status::Hit, entry, now)),
            Some((Phase::Stale, entry, value)) => {
                if let Some(newer) = self.refresh_in_background(key, ttl, job, now, entry) {
                    if let Ok(v) = decode(&newer) {
                        return Ok(Cached::new(v, Status::Hit, &newer, now));
                    }
                }
                Ok(Cached::new(value, Status::Stale, entry, now))
            }
            Some((_, entry, value)) if i.cfg.expired_mode == ExpiredMode::ServeStale => {
                self.refresh_in_background(key, ttl, job, now, entry);
                Ok(Cached::new(value, Status::Expired, entry, now))
            }
            Some((_, entry, value)) => {
                match self
                    .fetch_shared(key, ttl, job, now, false, Some(entry.clone()))
                    .await
                {
                    Ok((newer, status)) => {
                        let v = decode(&newer).map_err(Error::Codec)?;
                        Ok(Cached::new(v, status, &newer, i.runtime.now_ms()))
                    }
                    Err(_) => Ok(Cached::new(value, Status::Fallback, entry, now)),
                }
            }
            None => {
                if i.cfg.negative_ttl.is_some() {
                    if let Some(e) = i.negatives.get(key, now) {
                        bump(&i.counters.negative_hits);
                        return Err(e);
                    }
                }
                let (newer, status) = self.fetch_shared(key, ttl, job, now, true, stored).await?;
                let v = decode(&newer).map_err(Error::Codec)?;
                Ok(Cached::new(v, status, &newer, i.runtime.now_ms()))
            }
        }
    }

    /// Waits for the upstream call for `key`, joining a running one or
    /// starting one (rule 1). `remember_error`: the caller has no usable value,
    /// so a failure may be negatively cached (rule 8).
    ///
    /// The status is `Miss` when the caller waited for an upstream call, and
    /// `Hit` when the value was already there: a call that had completed
    /// before this caller joined it, or an entry another call had just stored.
    async fn fetch_shared<J, JF>(
        &self,
        key: &str,
        ttl: Option<CacheTtl>,
        job: J,
        now: u64,
        remember_error: bool,
        seen: Option<Entry>,
    ) -> Result<(Entry, Status), Error>
    where
        J: FnOnce() -> JF + MaybeSend + 'static,
        JF: Future<Output = Result<Bytes, Error>> + MaybeSend + 'static,
    {
        let i = &self.inner;
        if let Some(running) = i.flights.get(key) {
            return join(&running).await;
        }
        if self.is_shutting_down() {
            return Err(Error::Shutdown);
        }
        let Some((permit, transition)) = i.breaker.try_acquire(key, now) else {
            bump(&i.counters.breaker_rejections);
            return Err(Error::CircuitOpen);
        };
        i.report_transition(transition);
        match i.flights.join_or_start(key) {
            Joined::Running(running) => {
                i.breaker.abandon(key, permit);
                join(&running).await
            }
            Joined::Started(flight) => {
                let wait = flight.wait();
                let started = flight.clone();
                self.spawn_flight(
                    key,
                    flight,
                    permit,
                    ttl,
                    job,
                    false,
                    remember_error,
                    now,
                    seen,
                );
                let entry = wait.await?;
                Ok((entry, origin(&started)))
            }
        }
    }

    /// Starts a background refresh of `key` unless one is running, the bound
    /// is reached (rule 3), the breaker is open (rule 4) or the engine is
    /// stopping (rule 7). If a call for `key` has already completed with a
    /// value that is not yet in storage, returns it so the caller never sees
    /// an older value than one already handed out.
    fn refresh_in_background<J, JF>(
        &self,
        key: &str,
        ttl: Option<CacheTtl>,
        job: J,
        now: u64,
        seen: &Entry,
    ) -> Option<Entry>
    where
        J: FnOnce() -> JF + MaybeSend + 'static,
        JF: Future<Output = Result<Bytes, Error>> + MaybeSend + 'static,
    {
        let i = &self.inner;
        if let Some(running) = i.flights.get(key) {
            return running.completed_value();
        }
        if self.is_shutting_down() {
            return None;
        }
        if !i.refreshes.try_increment(i.cfg.max_concurrent_refreshes) {
            bump(&i.counters.refreshes_skipped);
            if let Some(m) = &i.metrics {
                m.refresh_skipped();
            }
            return None;
        }
        let Some((permit, transition)) = i.breaker.try_acquire(key, now) else {
            i.refreshes.decrement();
            bump(&i.counters.breaker_rejections);
            return None;
        };
        i.report_transition(transition);
        match i.flights.start(key) {
            Some(flight) => self.spawn_flight(
                key,
                flight,
                permit,
                ttl,
                job,
                true,
                false,
                now,
                Some(seen.clone()),
            ),
            None => {
                i.breaker.abandon(key, permit);
                i.refreshes.decrement();
            }
        }
        None
    }
}

/// Waits on a flight another caller started; `Hit` if it had already completed.
async fn join(running: &Arc<Flight>) -> Result<(Entry, Status), Error> {
    if let Some(done) = running.completed_value() {
        return Ok((done, Status::Hit));
    }
    let entry = running.wait().await?;
    Ok((entry, origin(running)))
}

/// `Miss` for a value fetched from upstream, `Hit` for one found in storage.
fn origin(flight: &Flight) -> Status {
    if flight.came_from_storage() {
        Status::Hit
    } else {
        Status::Miss
    }
}

impl<S, R, C> Inner<S, R, C> {
    pub(crate) fn report_transition(&self, transitions: Transitions) {
        for (scope, state) in transitions.into_iter().flatten() {
            if state == BreakerState::Open {
                bump(&self.counters.breaker_opened);
            }
            if let Some(m) = &self.metrics {
                m.breaker(scope, state);
            }
        }
    }
}
