-- Removes a document.
-- KEYS: version docs; ARGV: channel id
if redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then return 0 end
bump()
return 1
