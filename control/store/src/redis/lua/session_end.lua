-- Compare-and-set end of a session. A count that expired with its appliance is not
-- driven below zero.
-- KEYS: version sessions open live lastend ends server_ends feed feed_seq;
-- ARGV: channel id old new server end_ms feed_payload feed_cap
local cur = redis.call('HGET', KEYS[2], ARGV[2])
if not cur then return 0 end
if cur ~= ARGV[3] then return 1 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[6], ARGV[6], ARGV[2])
redis.call('ZADD', KEYS[7], ARGV[6], ARGV[2])
feed(KEYS[8], KEYS[9], ARGV[7], ARGV[8])
if redis.call('SREM', KEYS[3], ARGV[2]) == 1 then
  local c = tonumber(redis.call('HGET', KEYS[4], ARGV[5]) or '0')
  if c > 0 then redis.call('HINCRBY', KEYS[4], ARGV[5], -1) end
end
local last = tonumber(redis.call('HGET', KEYS[5], ARGV[5]) or '0')
if tonumber(ARGV[6]) > last then redis.call('HSET', KEYS[5], ARGV[5], ARGV[6]) end
bump()
return 2
