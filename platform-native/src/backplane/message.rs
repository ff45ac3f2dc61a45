//! What the backplane publishes: one line of text per change, never a value.
//!
//! `swre-bp1 <kind> <origin> <seq> <at_ms> <key>`: `origin` the publishing
//! instance's id in hex, `seq` its count of messages (1, 2, …; a receiver
//! can tell a gap by it), `at_ms` its wall clock when it published (for
//! people reading `MONITOR`, not compared), and `key` the rest of the
//! message, spaces and all (empty for `clear`).

/// The first word of every message, naming the format's version.
const MAGIC: &str = "swre-bp1";

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A new entry under the key.
    Set,
    /// The key's entry removed (`delete`, or `remove_older` after a failed write).
    Delete,
    /// The key's entry made stale.
    Expire,
    /// Every entry removed.
    Clear,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Set => "set",
            Kind::Delete => "delete",
            Kind::Expire => "expire",
            Kind::Clear => "clear",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "set" => Kind::Set,
            "delete" => Kind::Delete,
            "expire" => Kind::Expire,
            "clear" => Kind::Clear,
            _ => return None,
        })
    }
}

/// One change, as published and as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub(crate) kind: Kind,
    pub(crate) origin: u64,
    pub(crate) seq: u64,
    pub(crate) at_ms: u64,
    /// Empty for [`Kind::Clear`], never empty otherwise.
    pub(crate) key: &'a str,
}

impl<'a> Message<'a> {
    /// The message's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        format!(
            "{MAGIC} {} {:x} {} {} {}",
            self.kind.word(),
            self.origin,
            self.seq,
            self.at_ms,
            self.key
        )
        .into_bytes()
    }

    /// The message in `bytes`, or `None` for anything this version did not
    /// write (another format, a truncated line, a key where none belongs).
    pub(crate) fn decode(bytes: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut words = text.splitn(6, ' ');
        if words.next()? != MAGIC {
            return None;
        }
        let kind = Kind::parse(words.next()?)?;
        let origin = u64::from_str_radix(words.next()?, 16).ok()?;
        let seq = words.next()?.parse().ok()?;
        let at_ms = words.next()?.parse().ok()?;
        let key = words.next()?;
        if (kind == Kind::Clear) != key.is_empty() {
            return None;
        }
        Some(Self {
            kind,
            origin,
            seq,
            at_ms,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_with_any_key() {
        for (kind, key) in [
            (Kind::Set, "user:1"),
            (Kind::Delete, "a key with spaces\nand a newline"),
            (Kind::Expire, "\0swre:tag:x"),
            (Kind::Clear, ""),
        ] {
            let m = Message {
                kind,
                origin: u64::MAX,
                seq: 7,
                at_ms: 1_700_000_000_000,
                key,
            };
            assert_eq!(Message::decode(&m.encode()), Some(m));
        }
    }

    #[test]
    fn anything_else_is_refused_without_a_panic() {
        for bad in [
            &b""[..],
            b"hello",
            b"swre-bp1",
            b"swre-bp1 set",
            b"swre-bp1 set ff 1 2",
            b"swre-bp1 set ff 1 2 ",
            b"swre-bp1 clear ff 1 2 k",
            b"swre-bp1 drop ff 1 2 k",
            b"swre-bp1 set zz 1 2 k",
            b"swre-bp1 set ff -1 2 k",
            b"swre-bp1 set 1ffffffffffffffff 1 2 k",
            b"swre-bp2 set ff 1 2 k",
            b"swre-bp1 set ff 1 2 \xff\xfe",
        ] {
            assert_eq!(
                Message::decode(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
