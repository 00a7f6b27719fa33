-- Gives the lock back if the token still holds it.
-- KEYS: lock; ARGV: token
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
