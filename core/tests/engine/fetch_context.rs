//! The fetch context (`get_or_fetch_with`): the fetch is told what the cache
//! holds and may answer "not modified", choose the entry's TTL, or ask for
//! it not to be stored (FusionCache adaptive caching and conditional refresh).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use swre_core::{CacheTtl, CallOptions, Error, FetchContext, Fetched, Status};

use crate::common::*;

type Seen = Arc<Mutex<Vec<FetchContext>>>;

const MS: Duration = Duration::from_millis(1);

/// A fetch that records its context and answers `answer`.
fn recording(
    seen: &Seen,
    answer: Fetched<&'static str>,
) -> impl FnOnce(FetchContext) -> std::future::Ready<Result<Fetched<&'static str>, Boom>> + Send + 'static
{
    let seen = seen.clone();
    move |ctx| {
        seen.lock().unwrap().push(ctx);
        std::future::ready(Ok(answer))
    }
}

fn get_with(
    h: &H,
    key: &str,
    seen: &Seen,
    answer: Fetched<&'static str>,
) -> Result<swre_core::Cached<swre_core::Bytes>, Error> {
    let r = h
        .exec
        .block_on(h.engine.get_or_fetch_with(key, recording(seen, answer)));
    h.exec.run_until_stalled();
    r
}

#[test]
fn the_fetch_is_told_the_value_held_and_when_it_was_fetched() {
    let h = harness();
    let seen = Seen::default();
    get_with(&h, "k", &seen, Fetched::value("v1")).unwrap();
    h.advance(11 * SEC);
    let r = get_with(&h, "k", &seen, Fetched::value("v2")).unwrap();
    assert_eq!((value(&r), r.status), ("v1", Status::Stale));
    let seen = seen.lock().unwrap();
    assert_eq!(
        (seen[0].stale.as_deref(), seen[0].stale_created_at),
        (None, None),
        "cold"
    );
    assert_eq!(
        (seen[1].stale.as_deref(), seen[1].stale_created_at),
        (Some(&b"v1"[..]), Some(START)),
        "the stale refresh"
    );
}

#[test]
fn not_modified_keeps_the_value_and_starts_its_phases_again() {
    let h = harness();
    let seen = Seen::default();
    get_with(&h, "k", &seen, Fetched::value("v1")).unwrap();
    h.advance(31 * SEC); // expired: the lookup waits for the revalidation
    let r = get_with(&h, "k", &seen, Fetched::not_modified()).unwrap();
    assert_eq!((value(&r), r.status), ("v1", Status::Miss));
    let stored = h.stored("k").unwrap();
    assert_eq!(&*stored.value, b"v1");
    assert_eq!(
        (stored.created_at, stored.fresh_until),
        (START + 31_000, START + 41_000),
        "the phases start again with the old TTL"
    );
    assert_eq!(h.get("k", "never").unwrap().status, Status::Hit);
}

#[test]
fn not_modified_with_nothing_held_fails_the_call() {
    let h = harness();
    let seen = Seen::default();
    let r = get_with(&h, "cold", &seen, Fetched::not_modified());
    assert!(
        matches!(r, Err(Error::Upstream(ref e)) if e.to_string().contains("not modified")),
        "{r:?}"
    );
    assert_eq!(h.stored("cold"), None);
}

#[test]
fn the_fetch_chooses_this_entrys_ttl_of_any_length() {
    let h = harness();
    let seen = Seen::default();
    let day = CacheTtl::new(86_400 * SEC, 60 * SEC, 60 * SEC);
    get_with(&h, "k", &seen, Fetched::value("v").ttl(day)).unwrap();
    let stored = h.stored("k").unwrap();
    assert_eq!(stored.fresh_until, START + 86_400_000);
    assert!(!stored.pinned_ttl, "for this write only");
    // Shorter than the 5 s a configured TTL needs (an HTTP `max-age=1`,
    // `stale-while-revalidate=2`): fresh for exactly 1 s, stale 2 s more.
    let short = CacheTtl::new(SEC, 2 * SEC, Duration::ZERO);
    get_with(&h, "short", &seen, Fetched::value("s1").ttl(short)).unwrap();
    let stored = h.stored("short").unwrap();
    assert_eq!(
        (stored.fresh_until, stored.stale_until, stored.expires_at),
        (START + 1_000, START + 3_000, START + 3_000)
    );
    h.advance(999 * MS);
    let r = get_with(&h, "short", &seen, Fetched::value("s2")).unwrap();
    assert_eq!(
        (value(&r), r.status),
        ("s1", Status::Hit),
        "fresh to its last ms"
    );
    h.advance(MS);
    let r = get_with(&h, "short", &seen, Fetched::value("s2").ttl(short)).unwrap();
    assert_eq!(
        (value(&r), r.status),
        ("s1", Status::Stale),
        "stale from its 1,000th ms"
    );
    assert_eq!(h.engine.stats().breaker_rejections, 0);
}

#[test]
fn a_ttl_under_one_ms_hands_the_value_out_and_stores_nothing() {
    let h = harness();
    let seen = Seen::default();
    get_with(&h, "k", &seen, Fetched::value("old")).unwrap();
    h.advance(31 * SEC);
    let zero = CacheTtl::new(Duration::ZERO, Duration::ZERO, Duration::from_micros(900));
    let r = get_with(&h, "k", &seen, Fetched::value("new").ttl(zero)).unwrap();
    assert_eq!(value(&r), "new");
    assert_eq!(
        h.stored("k"),
        None,
        "not stored, and the older value removed"
    );
    assert_eq!(h.engine.stats().upstream_errors, 0);
}

#[test]
fn do_not_store_returns_the_value_and_removes_the_older_one() {
    let h = harness();
    let seen = Seen::default();
    get_with(&h, "k", &seen, Fetched::value("v1")).unwrap();
    h.advance(31 * SEC);
    let r = get_with(&h, "k", &seen, Fetched::value("private").do_not_store()).unwrap();
    assert_eq!((value(&r), r.status), ("private", Status::Miss));
    assert_eq!(
        h.stored("k"),
        None,
        "neither the value nor the older one is kept"
    );
    let cold = get_with(
        &h,
        "fresh-key",
        &seen,
        Fetched::value("once").do_not_store(),
    )
    .unwrap();
    assert_eq!(value(&cold), "once");
    assert_eq!(h.stored("fresh-key"), None);
    assert_eq!(
        h.calls(),
        0,
        "the counted fetches are h.ok's; these recorded instead"
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn with_call_options_the_callers_ttl_applies_unless_the_fetch_chooses_one() {
    let h = harness();
    let seen = Seen::default();
    let hour = CacheTtl::new(3_600 * SEC, 60 * SEC, 60 * SEC);
    let caller = |key: &str, answer| {
        let r = h.exec.block_on(
            h.engine
                .with(CallOptions::new().ttl(hour))
                .get_or_fetch_with(key, recording(&seen, answer)),
        );
        h.exec.run_until_stalled();
        r.unwrap()
    };
    let r = caller("k", Fetched::value("v"));
    assert_eq!(r.fresh_until - r.created_at, 3_600_000, "the caller's TTL");
    assert!(h.stored("k").unwrap().pinned_ttl);
    let day = CacheTtl::new(86_400 * SEC, 60 * SEC, 60 * SEC);
    let r = caller("other", Fetched::value("v").ttl(day));
    assert_eq!(r.fresh_until - r.created_at, 86_400_000, "the fetch's TTL");
    h.advance(3_601 * SEC);
    let r = caller("k", Fetched::not_modified());
    assert_eq!((value(&r), r.status), ("v", Status::Stale));
    let stored = h.stored("k").unwrap();
    assert_eq!(
        (stored.created_at, stored.fresh_until),
        (START + 3_601_000, START + 3_601_000 + 3_600_000),
        "not modified: the phases start again with the caller's TTL"
    );
}
