-- Shared by the writing scripts (scripts.rs puts it in front of each): append a
-- transition to the global and the per-server sorted sets (score = time, member =
-- zero-padded sequence + JSON, so members are unique and order within a millisecond is
-- append order), append to the history feed (score = position, member = zero-padded
-- position + `time|event JSON`, trimmed to `cap` entries), and bump + publish the version.
-- By convention KEYS[1] is the version key and ARGV[1] the change channel in every
-- writing script.
local function append(all, one, seqkey, at, json)
  local seq = redis.call('INCR', seqkey)
  local m = string.format('%020d', seq) .. '|' .. json
  redis.call('ZADD', all, at, m)
  redis.call('ZADD', one, at, m)
end
local function feed(key, seqkey, payload, cap)
  local seq = redis.call('INCR', seqkey)
  redis.call('ZADD', key, seq, string.format('%020d', seq) .. '|' .. payload)
  redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(cap) + 1))
end
local function bump()
  local v = redis.call('INCR', KEYS[1])
  redis.call('PUBLISH', ARGV[1], v)
end
