//! The roster of relays on Redis ([`super::super::roster`]): one script refreshes a relay's
//! entry, acknowledges the peers it sees and reads who has acknowledged it, atomically.

use std::sync::LazyLock;

use redis::aio::ConnectionManager;

use crate::bus::roster::RosterView;
use crate::bus::Keys;

/// KEYS roster, acks; ARGV now (ms), until (ms), me, key ttl (ms). Returns `{peers, acked_by}`.
/// Expired relays and acknowledgements are removed whenever the roster is refreshed.
const REFRESH: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local peers = {}
for _, relay in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if relay ~= ARGV[3] then
    peers[#peers + 1] = relay
    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3] .. '>' .. relay)
  end
end
if #peers > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
local suffix = '>' .. ARGV[3]
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
    let now = chrono::Utc::now().timestamp_millis();
    let mut script = SCRIPT.prepare_invoke();
    script
        .key(keys.roster())
        .key(keys.roster_acks())
        .arg(now)
        .arg(now.saturating_add(ttl_ms))
        .arg(me)
        .arg(ttl_ms);
    let (peers, acked_by): (Vec<String>, Vec<String>) = script.invoke_async(conn).await?;
    Ok(RosterView { peers, acked_by })
}
