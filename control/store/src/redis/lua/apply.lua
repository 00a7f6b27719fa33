-- Compare-and-set on the exact stored JSON (which includes the epoch).
-- KEYS: version servers tr_all tr_one tr_seq feed feed_seq;
-- ARGV: channel id old new transition at feed_payload feed_cap
local cur = redis.call('HGET', KEYS[2], ARGV[2])
if not cur then return 0 end
if cur ~= ARGV[3] then return 1 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
append(KEYS[3], KEYS[4], KEYS[5], ARGV[6], ARGV[5])
feed(KEYS[6], KEYS[7], ARGV[7], ARGV[8])
bump()
return 2
