-- Writes a document; with create = '1' only if it does not exist yet.
-- KEYS: version docs; ARGV: channel id json create
if ARGV[4] == '1' then
  if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
else
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
end
bump()
return 1
