//! The roster of relays on Redis ([`super::super::roster`]): one script refreshes a relay's
//! entry, acknowledges the peers it sees and reads who has acknowledged it, atomically.

use std::sync::LazyLock;

use redis::aio::ConnectionManager;

use crate::bus::roster::RosterView;
use crate::bus::Keys;

/// KEYS roster, acks; ARGV me, ttl (ms). Returns `{peers, acked_by}`. Expired relays and
/// acknowledgements are removed whenever the roster is refreshed. The time is Redis's own, one
/// clock for every relay: scored with each relay's clock, a relay whose clock ran more than the
/// ttl (3 s) ahead removed its peers' entries as expired, found itself alone, and published
/// nothing for the other relays' users.
const REFRESH: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[2])
local until_ms = now + ttl
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[1], until_ms, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
local peers = {}
for _, relay in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if relay ~= ARGV[1] then
    peers[#peers + 1] = relay
    redis.call('ZADD', KEYS[2], until_ms, ARGV[1] .. '>' .. relay)
  end
end
if #peers > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
local suffix = '>' .. ARGV[1]
local acked = {}
for _, ack in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if #ack > #suffix and string.sub(ack, -#suffix) == suffix then
    acked[#acked + 1] = string.sub(ack, 1, #ack - #suffix)
  end
end
return {peers, acked}
";

/// [`REFRESH`] with its SHA-1 computed once (every relay runs it four times a second).
static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(REFRESH));

/// Refresh `me` for `ttl_ms` and read the roster.
pub(super) async fn refresh(
    conn: &mut ConnectionManager,
    keys: &Keys,
    me: &str,
    ttl_ms: i64,
) -> redis::RedisResult<RosterView> {
    let mut script = SCRIPT.prepare_invoke();
    script
        .key(keys.roster())
        .key(keys.roster_acks())
        .arg(me)
        .arg(ttl_ms.max(1));
    let (peers, acked_by): (Vec<String>, Vec<String>) = script.invoke_async(conn).await?;
    Ok(RosterView { peers, acked_by })
}
