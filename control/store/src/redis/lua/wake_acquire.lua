-- The lock and its fencing epoch in one step, so a holder always has an epoch.
-- KEYS: lock epoch; ARGV: token ttl_ms
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('INCR', KEYS[2])
