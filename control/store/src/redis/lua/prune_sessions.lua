-- Removes ended sessions whose player time the caller split into hours, adding that
-- time to the hourly aggregates; a session another appliance pruned first is skipped, so
-- its time is added once. KEYS: sessions starts ends; ARGV, per session: id server_starts
-- server_ends player_ms n, then n pairs of hour start and ms.
local i, n = 1, 0
while i <= #ARGV do
  local id, nb = ARGV[i], tonumber(ARGV[i + 4])
  redis.call('ZREM', KEYS[3], id)
  if redis.call('HDEL', KEYS[1], id) == 1 then
    n = n + 1
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', ARGV[i + 1], id)
    redis.call('ZREM', ARGV[i + 2], id)
    for b = 0, nb - 1 do
      redis.call('HINCRBY', ARGV[i + 3], ARGV[i + 5 + 2 * b], ARGV[i + 6 + 2 * b])
    end
  end
  i = i + 5 + 2 * nb
end
return n
