-- Sums the live counts of every appliance whose counts have not expired.
-- Reads keys derived from the appliance set, which is fine on a single Redis
-- (not on a cluster). KEYS: appliances; ARGV: live_prefix server
local n = 0
for _, a in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local c = tonumber(redis.call('HGET', ARGV[1] .. a, ARGV[2]) or '0')
  if c and c > 0 then n = n + c end
end
return n
