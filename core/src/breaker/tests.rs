use super::*;
use alloc::format;

fn cfg() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 3,
        global_failure_keys: 3,
        success_threshold: 2,
        open_for: Duration::from_millis(1_000),
        first_open_for: Duration::from_millis(1_000),
        max_half_open: 2,
        max_key_breakers: 4,
    }
}

fn fail(b: &Breaker, key: &str, now: u64) {
    let (p, _) = b.try_acquire(key, now).expect("call should be let through");
    b.failure(key, p, now);
}

fn succeed(b: &Breaker, key: &str, now: u64) {
    let (p, _) = b.try_acquire(key, now).expect("call should be let through");
    b.success(key, p);
}

#[test]
fn key_opens_after_threshold_then_half_opens_then_closes() {
    let b = Breaker::new(cfg());
    fail(&b, "k", 0);
    fail(&b, "k", 0);
    assert_eq!(b.key_state("k", 0), BreakerState::Closed);
    fail(&b, "k", 0);
    assert_eq!(b.key_state("k", 0), BreakerState::Open);
    assert!(b.try_acquire("k", 999).is_none(), "open rejects");
    assert_eq!(b.key_state("k", 1_000), BreakerState::HalfOpen);
    succeed(&b, "k", 1_000);
    assert_eq!(b.key_state("k", 1_000), BreakerState::HalfOpen);
    succeed(&b, "k", 1_000);
    assert_eq!(b.key_state("k", 1_000), BreakerState::Closed);
    assert_eq!(b.key_count(), 0, "a closed pristine key is forgotten");
}

#[test]
fn half_open_failure_reopens_for_a_new_period() {
    let b = Breaker::new(cfg());
    for _ in 0..3 {
        fail(&b, "k", 0);
    }
    fail(&b, "k", 1_500);
    assert_eq!(b.key_state("k", 1_500), BreakerState::Open);
    assert!(b.try_acquire("k", 2_499).is_none());
    assert!(b.try_acquire("k", 2_500).is_some());
}

#[test]
fn half_open_lets_only_max_half_open_trials_through() {
    let b = Breaker::new(cfg());
    for _ in 0..3 {
        fail(&b, "k", 0);
    }
    let t1 = b.try_acquire("k", 1_000).expect("trial 1");
    let t2 = b.try_acquire("k", 1_000).expect("trial 2");
    assert!(b.try_acquire("k", 1_000).is_none(), "third trial refused");
    // An abandoned trial gives its place back.
    b.abandon("k", t1.0);
    let t3 = b.try_acquire("k", 1_000).expect("place given back");
    b.success("k", t2.0);
    b.success("k", t3.0);
    assert_eq!(b.key_state("k", 1_000), BreakerState::Closed);
}

#[test]
fn one_failing_key_does_not_open_others() {
    let b = Breaker::new(cfg());
    for _ in 0..10 {
        if b.try_acquire("bad", 0).is_some() {
            fail(&b, "bad", 0);
        }
    }
    assert_eq!(b.key_state("bad", 0), BreakerState::Open);
    assert_eq!(b.global_state(0), BreakerState::Closed);
    assert!(b.try_acquire("good", 0).is_some());
}

#[test]
fn many_failing_keys_open_the_global_breaker() {
    let b = Breaker::new(cfg());
    fail(&b, "a", 0);
    fail(&b, "b", 0);
    fail(&b, "c", 0);
    assert_eq!(b.global_state(0), BreakerState::Open);
    assert!(b.try_acquire("untouched", 10).is_none());
    assert_eq!(b.global_state(1_000), BreakerState::HalfOpen);
    succeed(&b, "d", 1_000);
    succeed(&b, "e", 1_000);
    assert_eq!(b.global_state(1_000), BreakerState::Closed);
}

#[test]
fn a_success_resets_the_consecutive_count() {
    let b = Breaker::new(cfg());
    fail(&b, "k", 0);
    fail(&b, "k", 0);
    succeed(&b, "k", 0);
    fail(&b, "k", 0);
    fail(&b, "k", 0);
    assert_eq!(b.key_state("k", 0), BreakerState::Closed);
}

#[test]
fn key_breakers_are_bounded_lru() {
    let b = Breaker::new(cfg());
    for i in 0..4 {
        fail(&b, &format!("k{i}"), 0);
        b.reset_global_for_test();
    }
    assert_eq!(b.key_count(), 4);
    // Touch k0 so k1 becomes the least recently used.
    let (p, _) = b.try_acquire("k0", 0).unwrap();
    b.abandon("k0", p);
    fail(&b, "k4", 0);
    assert_eq!(b.key_count(), 4);
    let keys = b.keys.lock();
    assert!(keys.contains("k0"));
    assert!(!keys.contains("k1"), "least recently used key dropped");
    assert!(keys.contains("k4"));
}

#[test]
fn reset_closes_everything() {
    let b = Breaker::new(cfg());
    for k in ["a", "b", "c"] {
        for _ in 0..3 {
            if b.try_acquire(k, 0).is_some() {
                fail(&b, k, 0);
            }
        }
    }
    b.reset();
    assert_eq!(b.global_state(0), BreakerState::Closed);
    assert_eq!(b.key_count(), 0);
    assert!(b.try_acquire("a", 0).is_some());
}

impl Breaker {
    fn reset_global_for_test(&self) {
        *self.global.lock() = Machine::CLOSED;
    }
}

#[test]
fn a_call_let_through_before_the_breaker_opened_is_not_a_trial() {
    // success_threshold 2: two real trials must succeed to close. A call
    // admitted while closed that succeeds during the half-open period is no
    // evidence that upstream recovered.
    let b = Breaker::new(cfg());
    let (early, _) = b.try_acquire("k", 0).expect("closed");
    for _ in 0..3 {
        fail(&b, "k", 0);
    }
    assert_eq!(b.key_state("k", 0), BreakerState::Open);
    let (trial, _) = b.try_acquire("k", 1_000).expect("half-open trial");
    b.success("k", early);
    assert_eq!(b.key_state("k", 1_000), BreakerState::HalfOpen);
    b.success("k", trial);
    assert_eq!(
        b.key_state("k", 1_000),
        BreakerState::HalfOpen,
        "one real trial closed it"
    );
    succeed(&b, "k", 1_000);
    assert_eq!(b.key_state("k", 1_000), BreakerState::Closed);
}

#[test]
fn a_late_failure_from_before_the_opening_does_not_reopen_a_half_open_breaker() {
    let b = Breaker::new(cfg());
    let (early, _) = b.try_acquire("k", 0).expect("closed");
    for _ in 0..3 {
        fail(&b, "k", 0);
    }
    let (trial, _) = b.try_acquire("k", 1_000).expect("half-open trial");
    b.failure("k", early, 1_000);
    assert_eq!(b.key_state("k", 1_000), BreakerState::HalfOpen);
    b.success("k", trial);
    succeed(&b, "k", 1_000);
    assert_eq!(b.key_state("k", 1_000), BreakerState::Closed);
}

#[test]
fn a_trial_of_an_earlier_period_neither_counts_nor_frees_a_place() {
    let b = Breaker::new(cfg());
    for _ in 0..3 {
        fail(&b, "k", 0);
    }
    let (old_trial, _) = b.try_acquire("k", 1_000).expect("trial of period 1");
    fail(&b, "k", 1_000); // reopens: a new period starts at 2_000
    let (t1, _) = b.try_acquire("k", 2_000).expect("trial 1 of period 2");
    let (t2, _) = b.try_acquire("k", 2_000).expect("trial 2 of period 2");
    b.abandon("k", old_trial);
    assert!(
        b.try_acquire("k", 2_000).is_none(),
        "a stale trial's release freed a place"
    );
    b.success("k", t1);
    b.success("k", t2);
    assert_eq!(b.key_state("k", 2_000), BreakerState::Closed);
}

#[test]
fn openings_grow_by_first_open_for_up_to_open_for_and_a_close_resets_them() {
    let cfg = BreakerConfig {
        first_open_for: Duration::from_millis(100),
        open_for: Duration::from_millis(1_000),
        ..cfg()
    };
    let b = Breaker::new(cfg);
    for _ in 0..3 {
        fail(&b, "k", 0);
    }
    // 100, 200, 300, …, then 1,000 ms: each re-opening after a failed trial
    // lasts 100 ms longer.
    let mut now = 0;
    for window in [100, 200, 300, 400, 500, 600, 700, 800, 900, 1_000, 1_000] {
        assert!(
            b.try_acquire("k", now + window - 1).is_none(),
            "open for {window} ms"
        );
        now += window;
        fail(&b, "k", now);
    }
    // Trials succeed: closed, and the next opening is the first one again.
    now += 1_000;
    succeed(&b, "k", now);
    succeed(&b, "k", now);
    assert_eq!(b.key_state("k", now), BreakerState::Closed);
    for _ in 0..3 {
        fail(&b, "k", now);
    }
    assert!(b.try_acquire("k", now + 99).is_none());
    assert!(b.try_acquire("k", now + 100).is_some(), "back to 100 ms");
}
