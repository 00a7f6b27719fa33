-- Creates a server and appends its creation transition, unless the id is taken.
-- KEYS: version servers tr_all tr_one tr_seq feed feed_seq;
-- ARGV: channel id record transition at feed_payload feed_cap
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
append(KEYS[3], KEYS[4], KEYS[5], ARGV[5], ARGV[4])
feed(KEYS[6], KEYS[7], ARGV[6], ARGV[7])
bump()
return 1
