//! The Lua scripts [`RedisStorage`](super::RedisStorage) runs: each change
//! of a key is one script, so Redis applies it atomically and assigns it a
//! version.
//!
//! **Versions.** Every write, delete and clear takes the next number of one
//! counter per prefix (`<prefix>:meta:version`), kept beside the value under
//! `<prefix>:ver:<key>`. The counter is Redis's, not a machine's clock, so
//! it orders changes across a fleet whose clocks skew. A counter that is
//! missing (a Redis restarted without persistence, or after a `clear`)
//! starts again from Redis's own `TIME` in microseconds, which is above any
//! number it handed out before unless it handed out more than one per
//! microsecond on average.
//!
//! **Conditional changes.** With `since` ≥ 0 a change is made only if
//! neither the key (its version, or its delete's tombstone) nor the whole
//! store (`<prefix>:meta:cleared`, the version of the last clear) changed
//! after version `since`: a change queued while Redis was unreachable is
//! replayed this way, so it never overwrites a newer one another instance
//! made meanwhile. A skipped change answers 0; a made one, its version.

/// Shared by every script: `next_version(counter)` and
/// `unchanged(ver_key, cleared_key, since)`.
const PRELUDE: &str = r#"
local function next_version(counter)
  if redis.call("EXISTS", counter) == 0 then
    local t = redis.call("TIME")
    redis.call("SET", counter, string.format("%.0f", tonumber(t[1]) * 1000000 + tonumber(t[2])))
  end
  return redis.call("INCR", counter)
end
local function unchanged(ver, cleared, since)
  if since < 0 then return true end
  local cur = tonumber(redis.call("GET", ver) or "0") or 0
  local clr = tonumber(redis.call("GET", cleared) or "0") or 0
  return cur <= since and clr <= since
end
"#;

/// KEYS: value, version, counter, cleared. ARGV: envelope, `PXAT` expiry
/// (empty for none), since (-1: unconditional). The version expires with
/// the value.
const SET: &str = r#"
if not unchanged(KEYS[2], KEYS[4], tonumber(ARGV[3])) then return 0 end
local v = next_version(KEYS[3])
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

/// KEYS: value, version, counter, cleared. ARGV: since (-1: unconditional),
/// tombstone lifetime in ms. The version stays as a tombstone, so a
/// conditional change replayed later sees that the key was deleted.
const DELETE: &str = r#"
if not unchanged(KEYS[2], KEYS[4], tonumber(ARGV[1])) then return 0 end
local v = next_version(KEYS[3])
redis.call("DEL", KEYS[1])
redis.call("SET", KEYS[2], string.format("%.0f", v), "PX", ARGV[2])
return v
"#;

/// KEYS: value, version, counter. ARGV: `created_at` of the written entry,
/// its envelope, tombstone lifetime in ms. Deletes the value unless it is
/// the written envelope or one created after it (`created_at`, read
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
local v = next_version(KEYS[3])
redis.call("DEL", KEYS[1])
redis.call("SET", KEYS[2], string.format("%.0f", v), "PX", ARGV[3])
return v
"#;

/// KEYS: counter, cleared. Records a clear's version (after its keys are
/// gone), so a change queued before it is not replayed over it.
const CLEARED: &str = r#"
local v = next_version(KEYS[1])
redis.call("SET", KEYS[2], string.format("%.0f", v))
return v
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
            release: redis::Script::new(RELEASE),
        }
    }
}
