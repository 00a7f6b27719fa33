-- Extends the lock if the token still holds it.
-- KEYS: lock; ARGV: token ttl_ms
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
