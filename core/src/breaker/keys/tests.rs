use super::*;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// A plain reference: keys by recency, most recent last.
struct Reference {
    keys: Vec<String>,
    max: usize,
}

impl Reference {
    fn touch(&mut self, key: &str) -> bool {
        match self.keys.iter().position(|k| k == key) {
            Some(i) => {
                let k = self.keys.remove(i);
                self.keys.push(k);
                true
            }
            None => false,
        }
    }

    fn insert(&mut self, key: &str) {
        if !self.touch(key) {
            if self.keys.len() >= self.max {
                self.keys.remove(0);
            }
            self.keys.push(String::from(key));
        }
    }

    fn remove(&mut self, key: &str) {
        self.keys.retain(|k| k != key);
    }
}

/// Random uses, inserts and removals agree with a plain recency list: the
/// same keys are kept, so the dropped one is always the least recently used.
#[test]
fn evicts_exactly_the_least_recently_used() {
    let max = 8;
    let mut table = KeyTable::new();
    let mut reference = Reference {
        keys: Vec::new(),
        max,
    };
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for step in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let key = format!("k{}", seed % 20);
        match (seed >> 32) % 4 {
            0 => {
                let found = table.use_existing(&key).is_some();
                assert_eq!(found, reference.touch(&key), "step {step}: use {key}");
            }
            1 => {
                table.remove(&key);
                reference.remove(&key);
            }
            _ => {
                table.use_or_insert(&key, max);
                reference.insert(&key);
            }
        }
        assert_eq!(table.len(), reference.keys.len(), "step {step}");
        for k in &reference.keys {
            assert!(table.contains(k), "step {step}: {k} should be kept");
        }
    }
}

/// The use queue is compacted: heavy use of a few keys does not grow it.
#[test]
fn the_use_queue_stays_bounded() {
    let mut table = KeyTable::new();
    for i in 0..100_000 {
        let key = format!("k{}", i % 3);
        table.use_or_insert(&key, 10);
        table.use_existing(&key);
    }
    assert_eq!(table.len(), 3);
    assert!(
        table.queue_len() <= 2 * 3 + 17,
        "queue {}",
        table.queue_len()
    );
}

/// Only `use_*` counts as a use: a plain `get_mut` leaves the order alone.
#[test]
fn get_mut_is_not_a_use() {
    let mut table = KeyTable::new();
    table.use_or_insert("a", 2);
    table.use_or_insert("b", 2);
    assert!(table.get_mut("a").is_some());
    table.use_or_insert("c", 2);
    assert!(!table.contains("a"), "a was least recently used");
    assert!(table.contains("b") && table.contains("c"));
}
