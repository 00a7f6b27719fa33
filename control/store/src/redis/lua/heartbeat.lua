-- Refreshes the TTL; if the counts already expired (the appliance paused
-- longer than the TTL but is alive), rebuilds them from its open sessions.
-- KEYS: live appliances open sessions; ARGV: appliance ttl_ms
redis.call('SADD', KEYS[2], ARGV[1])
if redis.call('PEXPIRE', KEYS[1], ARGV[2]) == 1 then return 1 end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local j = redis.call('HGET', KEYS[4], id)
  if j then
    local s = cjson.decode(j)
    if s.appliance == ARGV[1] and (s.end_unix_ms == nil or s.end_unix_ms == cjson.null) then
      redis.call('HINCRBY', KEYS[1], s.server, 1)
    end
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
