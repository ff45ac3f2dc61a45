//! The Lua scripts [`RedisStorage`](super::RedisStorage) runs: each change
//! of a key is one script, so Redis applies it atomically and assigns it a
//! version.
//!
//! **Versions.** Every write, delete and clear takes the next number of one
//! counter per prefix (`<prefix>:meta:version`), kept beside the value under
//! `<prefix>:ver:<key>`. The counter is Redis's, so it orders changes across
//! a fleet whose clocks skew. A counter that is missing (first use, or a
//! Redis restarted or flushed without its data) starts from Redis's `TIME`
//! in microseconds, recorded as the epoch (`<prefix>:meta:epoch`): a
//! version below the epoch is from a history Redis no longer holds.
//! `clear` deletes values only, so the counter, the epoch, tombstones and
//! leases survive it.
//!
//! **Conditional writes.** With `since` ≥ 0 a write is made only if `since`
//! is not below the epoch and nothing changed the key (its version, or its
//! delete's tombstone) after version `since`, nor (for a replayed write)
//! cleared the store (`<prefix>:meta:cleared`): a write queued while Redis
//! was unreachable is replayed this way, so it never overwrites a newer
//! one another instance made meanwhile. A skipped write answers 0; a made
//! one, its version.

/// Shared by every script. `ensure(counter, epoch)` creates a missing
/// counter from Redis's `TIME` and records that value as the epoch: every
/// version handed out before it belongs to a history Redis no longer holds
/// (a restart without data, a flush), so a change conditional on one is not
/// made. `next_version` takes the next number. `remove(value, ver,
/// counter, epoch, tombstone_ms)` deletes a value and leaves its version
/// as a tombstone. `unchanged(ver, cleared,
/// counter, epoch, since, store)`: whether nothing changed the key (and,
/// with `store` "1", nothing cleared the store) after version `since`.
const PRELUDE: &str = r#"
local function ensure(counter, epoch)
  if redis.call("EXISTS", counter) == 0 then
    local t = redis.call("TIME")
    local base = string.format("%.0f", tonumber(t[1]) * 1000000 + tonumber(t[2]))
    redis.call("SET", counter, base)
    redis.call("SET", epoch, base)
  end
end
local function next_version(counter, epoch)
  ensure(counter, epoch)
  return redis.call("INCR", counter)
end
local function remove(value, ver, counter, epoch, tombstone_ms)
  local v = next_version(counter, epoch)
  redis.call("DEL", value)
  redis.call("SET", ver, string.format("%.0f", v), "PX", tombstone_ms)
  return v
end
local function unchanged(ver, cleared, counter, epoch, since, store)
  if since < 0 then return true end
  ensure(counter, epoch)
  if since < (tonumber(redis.call("GET", epoch) or "0") or 0) then return false end
  if (tonumber(redis.call("GET", ver) or "0") or 0) > since then return false end
  if store == "1" and (tonumber(redis.call("GET", cleared) or "0") or 0) > since then
    return false
  end
  return true
end
"#;

/// KEYS: value, version, counter, cleared, epoch. ARGV: envelope, `PXAT`
/// expiry (empty for none), since (-1: unconditional), "1" to also be
/// conditional on the store's last clear. The version expires with the
/// value.
const SET: &str = r#"
if not unchanged(KEYS[2], KEYS[4], KEYS[3], KEYS[5], tonumber(ARGV[3]), ARGV[4]) then return 0 end
local v = next_version(KEYS[3], KEYS[5])
local vs = string.format("%.0f", v)
if ARGV[2] == "" then
  redis.call("SET", KEYS[1], ARGV[1])
  redis.call("SET", KEYS[2], vs)
else
  redis.call("SET", KEYS[1], ARGV[1], "PXAT", ARGV[2])
  redis.call("SET", KEYS[2], vs, "PXAT", ARGV[2])
end
return v
"#;

/// KEYS: value, version, counter, epoch. ARGV: tombstone lifetime in ms.
/// The version stays as a tombstone, so a write queued elsewhere and
/// replayed later sees that the key was deleted.
const DELETE: &str = r#"
return remove(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1])
"#;

/// KEYS: value, version, counter, epoch. ARGV: `created_at` of the written
/// entry, its envelope, tombstone lifetime in ms. Deletes the value unless
/// it is the written envelope or one created after it (`created_at`, read
/// little-endian at byte 14 of the envelope's header); anything that is not
/// an envelope goes. 0 when nothing was deleted.
const REMOVE_OLDER: &str = r#"
local cur = redis.call("GET", KEYS[1])
if not cur then return 0 end
if cur == ARGV[2] then return 0 end
if string.len(cur) >= 22 and string.sub(cur, 1, 4) == "SWRE" then
  local created = 0
  for i = 22, 15, -1 do created = created * 256 + string.byte(cur, i) end
  if created > tonumber(ARGV[1]) then return 0 end
end
return remove(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[3])
"#;

/// KEYS: counter, cleared, epoch. Records a clear's version before its
/// values are deleted, so a write queued before it is not replayed over it
/// (nor while it runs).
const CLEARED: &str = r#"
local v = next_version(KEYS[1], KEYS[3])
redis.call("SET", KEYS[2], string.format("%.0f", v))
return v
"#;

/// KEYS: counter, epoch. The counter's value (created if missing, so a
/// version read now is of the history Redis holds from now on).
const OBSERVE: &str = r#"
ensure(KEYS[1], KEYS[2])
return tonumber(redis.call("GET", KEYS[1]))
"#;

/// Deletes a lease only if it still holds our token.
const RELEASE: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#;

/// The scripts, loaded once per storage (and shared by its clones).
#[derive(Clone)]
pub(super) struct Scripts {
    pub(super) set: redis::Script,
    pub(super) delete: redis::Script,
    pub(super) remove_older: redis::Script,
    pub(super) cleared: redis::Script,
    pub(super) observe: redis::Script,
    pub(super) release: redis::Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        let versioned = |body: &str| redis::Script::new(&format!("{PRELUDE}{body}"));
        Self {
            set: versioned(SET),
            delete: versioned(DELETE),
            remove_older: versioned(REMOVE_OLDER),
            cleared: versioned(CLEARED),
            observe: versioned(OBSERVE),
            release: redis::Script::new(RELEASE),
        }
    }
}
