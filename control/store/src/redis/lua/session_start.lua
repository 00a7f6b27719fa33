-- Records an open session, counts it for its appliance and indexes its start.
-- KEYS: version sessions open live appliances starts server_starts feed feed_seq;
-- ARGV: channel id json server appliance ttl_ms start feed_payload feed_cap
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
redis.call('PEXPIRE', KEYS[4], ARGV[6])
redis.call('SADD', KEYS[5], ARGV[5])
redis.call('ZADD', KEYS[6], ARGV[7], ARGV[2])
redis.call('ZADD', KEYS[7], ARGV[7], ARGV[2])
feed(KEYS[8], KEYS[9], ARGV[8], ARGV[9])
bump()
return 1
