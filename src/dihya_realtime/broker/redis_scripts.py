"""The Lua scripts of :class:`~dihya_realtime.broker.redis.RedisBroker`.

Each script is one atomic step on Redis: no other client's command runs in the middle, which
is what makes offsets gap-free and presence counts exact across processes. Every key a script
touches shares one hash tag (a channel's ``<prefix>:{<channel>}:...``, or the global
``{history-channels}`` pair, or the nodes set alone), so each runs on one Redis Cluster slot;
cross-channel state (node sets) is kept out of them on purpose.

Publications and presence events are sent with SPUBLISH on the channel's own shard channel,
``<prefix>:{<channel>}:pub`` (the same slot as its keys, so a script may publish on it in a
cluster): only the processes that watch the channel receive them. Each message is one type
byte and a JSON body: ``p`` a publication, ``j`` a join, ``l`` a leave.
"""

# A new epoch empties the stream: entries of a lost epoch must never be served as the new one's
# (and XADD needs IDs above the old ones). The meta hash holds ``e`` (epoch) and ``s`` (offset).
_ENSURE_EPOCH = """
local function ensure_epoch(meta, stream, new_epoch, ttl_ms)
  local epoch = redis.call('HGET', meta, 'e')
  if not epoch then
    epoch = new_epoch
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'e', epoch, 's', 0)
    redis.call('PEXPIRE', meta, ttl_ms)
  end
  return epoch
end
"""

# KEYS: meta, stream, idempotency key
# ARGV: head (the publication's JSON without its closing brace, offset and epoch),
#       history size, history ttl (ms), new epoch, shard channel, idempotency ttl (ms, 0 = off),
#       history bytes cap, may start history (1/0), publication id, ts, now (ms)
# -> {1, offset, epoch} when published, {0, result} for a repeated idempotency key (result is
#    the JSON array [offset, epoch, id, ts]: the data is never kept for the key), {2} when
#    history would start on this channel and may-start was 0 (nothing was done)
# The meta hash's ``b`` is the bytes held by the stream; the oldest entries are trimmed while
# the stream is over its size or its bytes cap.
# If the stream is gone but the meta stayed (Redis evicted it under
# ``maxmemory-policy volatile-lru``), ``b`` starts again from 0.
PUBLISH = (
    _ENSURE_EPOCH
    + """
local idem_ttl = tonumber(ARGV[6])
if idem_ttl > 0 then
  local seen = redis.call('GET', KEYS[3])
  if seen then return {0, seen} end
end
local size = tonumber(ARGV[2])
if size > 0 and ARGV[8] == '0' and redis.call('XLEN', KEYS[2]) == 0 then
  return {2}
end
local epoch = ensure_epoch(KEYS[1], KEYS[2], ARGV[4], ARGV[3])
local offset = redis.call('HINCRBY', KEYS[1], 's', 1)
local body = ARGV[1] .. ',"offset":' .. string.format('%d', offset)
  .. ',"epoch":"' .. epoch .. '"}'
if size > 0 then
  -- a stream evicted by Redis (maxmemory) while its meta stayed holds nothing any more
  if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('HDEL', KEYS[1], 'b') end
  redis.call('XADD', KEYS[2], string.format('%d-0', offset), 'd', body)
  local held = redis.call('HINCRBY', KEYS[1], 'b', #body)
  local max_bytes = tonumber(ARGV[7])
  local count = redis.call('XLEN', KEYS[2])
  while count > 0 and (count > size or held > max_bytes) do
    local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
    redis.call('XDEL', KEYS[2], oldest[1])
    held = redis.call('HINCRBY', KEYS[1], 'b', -#oldest[2][2])
    count = count - 1
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  redis.call('HSET', KEYS[1], 't', ARGV[11])
else
  redis.call('DEL', KEYS[2])
  redis.call('HDEL', KEYS[1], 'b')
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SPUBLISH', ARGV[5], 'p' .. body)
if idem_ttl > 0 then
  redis.call('SET', KEYS[3], '[' .. string.format('%d', offset) .. ',"' .. epoch .. '","'
    .. ARGV[9] .. '",' .. ARGV[10] .. ']', 'PX', idem_ttl)
end
return {1, offset, epoch}
"""
)

# The channels holding history, for the cap on how many there are: a sorted set of channel
# names scored by their last publish (ms), beside a hash of their history ttl (ms); both under
# one hash tag, apart from any channel. Publish refreshes a member's score in the same round
# trip (ZADD XX GT); only a channel about to start history runs this script.
# At the cap, the least recently published channel makes room if it expired or has been idle
# for the idle time; its name and score are returned so the caller drops its history (see
# DROP_HISTORY), else the newcomer is refused.
# KEYS: history channels sorted set, ttl hash
# ARGV: channel, now (ms), history ttl (ms), cap, idle (ms)
# -> {1} counted (or already was), {0} refused, {2, victim, victim's last publish (ms)}
CLAIM_HISTORY = """
local now = tonumber(ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'GT', now, ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  return {1}
end
local victim = nil
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local last = tonumber(oldest[2])
  local ttl = tonumber(redis.call('HGET', KEYS[2], oldest[1]) or ARGV[5])
  if now - last < tonumber(ARGV[5]) and now - last < ttl then return {0} end
  redis.call('ZREM', KEYS[1], oldest[1])
  redis.call('HDEL', KEYS[2], oldest[1])
  victim = oldest
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if victim then return {2, victim[1], victim[2]} end
return {1}
"""

# Drop a channel's history to make room (its meta stays: offsets and epoch go on, so a
# recovery reaching back says recovered=false), unless it published after ``last``.
# KEYS: meta, stream; ARGV: last publish (ms) seen by CLAIM_HISTORY -> 1 dropped, 0 kept
DROP_HISTORY = """
local t = redis.call('HGET', KEYS[1], 't')
if t and tonumber(t) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[1], 'b')
return 1
"""

# KEYS: meta, stream
# ARGV: new epoch, history ttl (ms), since offset (-1 = latest mode), since epoch,
#       limit (-1 = none), page (-1 = none: every missed publication)
# -> {top offset, epoch, entries}; entries are empty when recovery is impossible
HISTORY = (
    _ENSURE_EPOCH
    + """
local epoch = ensure_epoch(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
local top = tonumber(redis.call('HGET', KEYS[1], 's'))
local since = tonumber(ARGV[3])
local limit = tonumber(ARGV[5])
local page = tonumber(ARGV[6])
if since >= 0 then
  local missed = top - since
  if epoch ~= ARGV[4] or missed <= 0 or (limit >= 0 and missed > limit) then
    return {top, epoch, {}}
  end
  if page >= 0 and page < missed then missed = page end
  return {top, epoch, redis.call('XRANGE', KEYS[2], string.format('%d', since + 1), '+',
                                 'COUNT', missed)}
end
if limit == 0 then return {top, epoch, {}} end
if limit < 0 then return {top, epoch, redis.call('XRANGE', KEYS[2], '-', '+')} end
return {top, epoch, redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', limit)}
"""
)

# KEYS: connections hash (conn_id -> entry JSON), user counts hash (user_id -> connections)
# ARGV: conn_id, user_id, entry JSON, shard channel, join event JSON
# -> 1 when this is the user's first connection (a join was published), else 0
PRESENCE_ADD = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then
  redis.call('SPUBLISH', ARGV[4], 'j' .. ARGV[5])
  return 1
end
return 0
"""

# KEYS: connections hash, user counts hash
# ARGV: conn_id, shard channel, channel name
# -> {code, node_id}: code 1 the user's last connection left (a leave was published),
#    0 others remain, -1 unknown connection
PRESENCE_REMOVE = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return {-1, ''} end
redis.call('HDEL', KEYS[1], ARGV[1])
local e = cjson.decode(entry)
if redis.call('HINCRBY', KEYS[2], e.user_id, -1) > 0 then return {0, e.node} end
redis.call('HDEL', KEYS[2], e.user_id)
redis.call('SPUBLISH', ARGV[2], 'l' .. cjson.encode(
  {channel = ARGV[3], user = {user_id = e.user_id, name = e.name}}))
return {1, e.node}
"""

# Heartbeats use the Redis clock so nodes with skewed clocks still agree on who is dead.
# KEYS: nodes sorted set; ARGV: node_id, 'nx' to only register a node not yet known
TOUCH_NODE = """
local t = redis.call('TIME')
local now = string.format('%d.%06d', t[1], t[2])
if ARGV[2] == 'nx' then
  redis.call('ZADD', KEYS[1], 'NX', now, ARGV[1])
else
  redis.call('ZADD', KEYS[1], now, ARGV[1])
end
return now
"""

# Claim every node silent for more than ttl seconds by moving its score to now: a lease.
# Concurrent reapers get disjoint sets (exactly one wins a node); if the winner dies while
# reaping, the lease runs out after ttl and another reaper takes the node over.
# KEYS: nodes sorted set; ARGV: ttl (s) -> {lease score, node ids...}
CLAIM_DEAD_NODES = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = string.format('%.6f', now)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])))
for _, node in ipairs(dead) do
  redis.call('ZADD', KEYS[1], lease, node)
end
table.insert(dead, 1, lease)
return dead
"""

# Forget a reaped node unless it heartbeated meanwhile (its score is no longer our lease).
# KEYS: nodes sorted set; ARGV: node_id, lease score
RELEASE_NODE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
