-- Removes a server and its last session end (its transitions stay).
-- KEYS: version servers lastend; ARGV: channel id
if redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('HDEL', KEYS[3], ARGV[2])
bump()
return 1
