//! The lookup flow: the phase table and engine rules 1–8 applied to one call.

use core::future::Future;
use core::pin::Pin;
use core::task::Poll;

use futures::future::poll_fn;

use crate::breaker::{BreakerState, Transitions};
use crate::bytes::Bytes;
use crate::codec::Codec;
use crate::engine::{checked_ttl, Cached, Engine, Inner};
use crate::entry::{CacheTtl, Entry};
use crate::error::{CodecError, Error};
use crate::flight::{Flight, Joined};
use crate::phase::{Phase, Status};
use crate::policy::ExpiredMode;
use crate::runtime::Runtime;
use crate::stats::bump;
use crate::storage::Storage;
use crate::sync::MaybeSend;
use alloc::boxed::Box;
use alloc::sync::Arc;

impl<S: Storage, R: Runtime, C: Codec + Clone> Engine<S, R, C> {
    /// One lookup: read, classify, and serve, join or start an upstream call.
    ///
    /// `job` is the upstream call producing the bytes to store; `decode` turns
    /// a stored entry into the caller's value (an entry that fails to decode is
    /// treated as absent).
    ///
    /// The first poll does everything that needs no waiting — a read from a
    /// store that answers at once, fresh and stale hits — without building
    /// any further future; only a store read that must be awaited or an
    /// upstream call to wait for continues in a boxed future.
    pub(crate) fn lookup<'a, J, JF, V, D>(
        &'a self,
        key: &'a str,
        ttl: Option<CacheTtl>,
        job: J,
        decode: D,
    ) -> impl Future<Output = Result<Cached<V>, Error>> + 'a
    where
        J: FnOnce() -> JF + MaybeSend + 'static,
        JF: Future<Output = Result<Bytes, Error>> + MaybeSend + 'static,
        D: Fn(&mut Entry) -> Result<V, CodecError> + 'a,
        V: 'a,
    {
        let mut start = Some((job, decode));
        let mut waiting = None;
        poll_fn(move |cx| {
            if let Some((job, decode)) = start.take() {
                match self.begin(key, ttl, job, decode) {
                    Begun::Done(result) => return Poll::Ready(result),
                    Begun::Waiting(rest) => waiting = Some(rest),
                }
            }
            match waiting.as_mut() {
                Some(rest) => rest.as_mut().poll(cx),
                // Polled again after completing: stay pending, never panic.
                None => Poll::Pending,
            }
        })
    }

    /// The first poll of a lookup.
    #[inline(always)]
    fn begin<'a, J, JF, V, D>(
        &'a self,
        key: &'a str,
        ttl: Option<CacheTtl>,
        job: J,
        decode: D,
    ) -> Begun<V, impl Future<Output = Result<Cached<V>, Error>> + 'a>
    where
        J: FnOnce() -> JF + MaybeSend + 'static,
        JF: Future<Output = Result<Bytes, Error>> + MaybeSend + 'static,
        D: Fn(&mut Entry) -> Result<V, CodecError> + 'a,
        V: 'a,
    {
        if let Err(e) = self.check_key(key) {
            self.record_error(&e);
            return Begun::Done(Err(e));
        }
        if let Some(t) = ttl {
            if let Err(e) = checked_ttl(t) {
                self.record_error(&e);
                return Begun::Done(Err(e));
            }
        }
        let now = self.inner.runtime.now_ms();
        let pending = match self.inner.storage.get_ready(key) {
            Some(read) => {
                let mut stored = self.degrade_read(read);
                // Fresh and stale hits answer here, on a short path of their
                // own: through `serve_at_once` the result takes more moves,
                // which made a fresh hit cost half as much again. The other
                // phases, and values that fail to decode, go on below.
                if let Some(entry) = stored.as_mut() {
                    match Phase::of(Some(entry), now) {
                        Phase::Fresh => {
                            if let Ok(value) = decode(entry) {
                                self.record_status(Status::Hit);
                                return Begun::Done(Ok(Cached::new(
                                    value,
                                    Status::Hit,
                                    entry,
                                    now,
                                )));
                            }
                        }
                        Phase::Stale => {
                            if let Ok(value) = decode(entry) {
                                let cached =
                                    self.serve_stale(key, ttl, job, &decode, value, entry, now);
                                self.record_status(cached.status);
                                return Begun::Done(Ok(cached));
                            }
                        }
                        _ => {}
                    }
                }
                match self.serve_at_once(key, ttl, job, &decode, stored, now) {
                    Served::Now(result) => {
                        self.record(&result);
                        return Begun::Done(result);
                    }
                    Served::Later(wait) => Pending::Upstream(wait),
                }
            }
            None => Pending::Read(job),
        };
        Begun::Waiting(Box::pin(self.finish(key, ttl, decode, pending, now)))
    }

    /// The rest of a lookup that has to wait: for a store read, then (if
    /// needed) for an upstream call.
    async fn finish<J, JF, V, D>(
        &self,
        key: &str,
        ttl: Option<CacheTtl>,
        decode: D,
        pending: Pending<V, J>,
        now: u64,
    ) -> Result<Cached<V>, Error>
    where
        J: FnOnce() -> JF + MaybeSend + 'static,
        JF: Future<Output = Result<Bytes, Error>> + MaybeSend + 'static,
        D: Fn(&mut Entry) -> Result<V, CodecError>,
    {
        let wait = match pending {
            Pending::Upstream(wait) => wait,
            Pending::Read(job) => {
                let stored = self.read(key).await;
                match self.serve_at_once(key, ttl, job, &decode, stored, now) {
                    Served::Now(result) => {
                        self.record(&result);
                        return result;
                    }
                    Served::Later(wait) => wait,
                }
            }
        };
        let result = self
            .serve_after_upstream(key, ttl, &decode, wait, now)
            .await;
        self.record(&result);
        result
    }

    #[inline]
    fn record<V>(&self, result: &Result<Cached<V>, Error>) {
        match result {
            Ok(c) => self.record_status(c.status),
            Err(e) => self.record_error(e),
        }
    }

    #[inline(always)]
    fn record_status(&self, status: Status) {
        let i = &self.inner;
        i.counters.status(status);
        if let Some(m) = &i.metrics {
            m.lookup(status);
        }
    }

    fn record_error(&self, e: &Error) {
        let i = &self.inner;
        bump(&i.counters.errors);
        if let Some(m) = &i.metrics {
            m.lookup_error(e);
        }
    }

    /// Everything a lookup can answer without waiting: fresh hits, stale
    /// values (starting a background refresh), expired values in
    /// `ServeStale` mode. The rest needs an upstream call.
    #[inline(always)]
    fn serve_at_once<J, JF, V, D>(
        &self,
        key: &str,
        ttl: Option<CacheTtl>,
        job: J,
        decode: &D,
        mut stored: Option<Entry>,
        now: u64,
    ) -> Served<V, J>
    where
        J: FnOnce() -> JF + MaybeSend + 'static,
        JF: Future<Output = Result<Bytes, Error>> + MaybeSend + 'static,
        D: Fn(&mut Entry) -> Result<V, CodecError>,
    {
        let i = &self.inner;
        // Decoding may move the value out of the entry (bytes lookups do, to
        // avoid a second reference-count bump); the entry keeps its times.
        let usable = match stored.as_mut() {
            Some(entry) => match Phase::of(Some(entry), now) {
                Phase::Gone => None,
                phase => match decode(entry) {
                    Ok(value) => Some((phase, value)),
                    Err(_) => {
                        bump(&i.counters.decode_errors);
                        None
                    }
                },
            },
            None => None,
        };
        match (usable, stored) {
            (Some((Phase::Fresh, value)), Some(entry)) => {
                Served::Now(Ok(Cached::new(value, Status::Hit, &entry, now)))
            }
            (Some((Phase::Stale, value)), Some(entry)) => Served::Now(Ok(
                self.serve_stale(key, ttl, job, decode, value, &entry, now)
            )),
            (Some((_, value)), Some(entry)) if i.cfg.expired_mode == ExpiredMode::ServeStale => {
                self.refresh_in_background(key, ttl, job, now, &entry);
                Served::Now(Ok(Cached::new(value, Status::Expired, &entry, now)))
            }
            (Some((_, value)), Some(entry)) => {
                Served::Later(Wait::Revalidate { job, value, entry })
            }
            (_, stored) => {
                if i.cfg.negative_ttl.is_some() {
                    if let Some(e) = i.negatives.get(key, now) {
                        bump(&i.counters.negative_hits);
                        return Served::Now(Err(e));
                    }
                }
                Served::Later(Wait::Fetch { job, seen: stored })
            }
        }
    }

    /// A stale value, served at once while a background refresh starts (or
    /// runs); a value that refresh already fetched, if any, is served instead.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn serve_stale<J, JF, V, D>(
        &self,
        key: &str,
        ttl: Option<CacheTtl>,
        job: J,
        decode: &D,
        value: V,
        entry: &Entry,
        now: u64,
    ) -> Cached<V>
    where
        J: FnOnce() -> JF + MaybeSend + 'static,
        JF: Future<Output = Result<Bytes, Error>> + MaybeSend + 'static,
        D: Fn(&mut Entry) -> Result<V, CodecError>,
    {
        if let Some(mut newer) = self.refresh_in_background(key, ttl, job, now, entry) {
            if let Ok(v) = decode(&mut newer) {
                return Cached::new(v, Status::Hit, &newer, now);
            }
        }
        Cached::new(value, Status::Stale, entry, now)
    }

    /// The lookups that wait for an upstream call: expired (revalidate) and gone.
    async fn serve_after_upstream<J, JF, V, D>(
        &self,
        key: &str,
        ttl: Option<CacheTtl>,
        decode: &D,
        wait: Wait<V, J>,
        now: u64,
    ) -> Result<Cached<V>, Error>
    where
        J: FnOnce() -> JF + MaybeSend + 'static,
        JF: Future<Output = Result<Bytes, Error>> + MaybeSend + 'static,
        D: Fn(&mut Entry) -> Result<V, CodecError>,
    {
        let i = &self.inner;
        match wait {
            Wait::Revalidate { job, value, entry } => {
                match self.fetch_shared(key, ttl, job, now, false, None).await {
                    Ok((mut newer, status)) => {
                        let v = decode(&mut newer).map_err(Error::Codec)?;
                        Ok(Cached::new(v, status, &newer, i.runtime.now_ms()))
                    }
                    Err(_) => Ok(Cached::new(value, Status::Fallback, &entry, now)),
                }
            }
            Wait::Fetch { job, seen } => {
                let (mut newer, status) = self.fetch_shared(key, ttl, job, now, true, seen).await?;
                let v = decode(&mut newer).map_err(Error::Codec)?;
                Ok(Cached::new(v, status, &newer, i.runtime.now_ms()))
            }
        }
    }

    /// A read's result, degraded per rule 5: an error reads as absent.
    #[inline(always)]
    fn degrade_read(
        &self,
        read: Result<Option<Entry>, crate::error::StorageError>,
    ) -> Option<Entry> {
        match read {
            Ok(e) => e,
            Err(_) => {
                self.inner.storage_error(
                    crate::metrics::StorageOp::Get,
                    &self.inner.counters.storage_read_errors,
                );
                None
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
        if let Some(value) = i.flights.running_value(key) {
            return value;
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

/// A lookup's first poll: answered, or continuing in a boxed future.
enum Begun<V, F> {
    Done(Result<Cached<V>, Error>),
    Waiting(Pin<Box<F>>),
}

/// What a lookup still has to wait for.
enum Pending<V, J> {
    /// A read from a store that cannot answer at once.
    Read(J),
    /// An upstream call.
    Upstream(Wait<V, J>),
}

/// What a lookup could answer at once, or what it must wait for.
enum Served<V, J> {
    Now(Result<Cached<V>, Error>),
    Later(Wait<V, J>),
}

/// A lookup that needs an upstream call.
enum Wait<V, J> {
    /// Expired (revalidate mode): wait, and fall back to `value` on failure.
    Revalidate { job: J, value: V, entry: Entry },
    /// Nothing usable: wait for the value. `seen` is what storage held, if
    /// anything (an undecodable or gone entry).
    Fetch { job: J, seen: Option<Entry> },
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
