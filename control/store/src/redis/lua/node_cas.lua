-- Compare-and-set on a node's exact stored JSON (old '' = no record yet). Bumps the change
-- version unless bump is '0' (lease renewals: frequent, and nobody waits on them).
-- KEYS: version nodes; ARGV: channel id old new bump
local cur = redis.call('HGET', KEYS[2], ARGV[2])
if ARGV[3] == '' then
  if cur then return 0 end
elseif cur ~= ARGV[3] then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
if ARGV[5] == '1' then bump() end
return 1
