-- Appends a fleet-wide event to the history feed.
-- KEYS: version feed feed_seq; ARGV: channel feed_payload feed_cap
feed(KEYS[2], KEYS[3], ARGV[2], ARGV[3])
bump()
return 1
