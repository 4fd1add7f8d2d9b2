-- Allocates every quota request of a batch in one call.
-- ARGV[1] is a JSON array with one array per request:
--   [amount, best effort (0/1), dedup ttl (ms; 0 = no dedup), algorithm (1 fixed, 2 rolling,
--    3 token, 4 fixed aligned to the epoch), max amount, window (us), rolling bucket count, bucket (us), token capacity]
-- KEYS holds each request's keys in order: its state key, then the rolling window's index key
-- (algorithm 2 only), then its dedup key (dedup ttl > 0 only). A request's keys share a slot.
-- Returns a JSON array of 4 numbers per request: granted, remaining, reset (us), replayed.
-- JSON in and out because decoding is done in C (string parsing in Lua cost more than the
-- algorithms). Time is the server's (TIME), never the caller's.
if redis.replicate_commands then
  redis.replicate_commands()
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local requests = cjson.decode(ARGV[1])
local out = {}
local k = 1
for _, a in ipairs(requests) do
  local amount, best_effort, dedup_ttl = a[1], a[2] == 1, a[3]
  local alg, max, window, n, bucket, capacity = a[4], a[5], a[6], a[7], a[8], a[9]
  local key = KEYS[k]
  k = k + 1
  local index
  if alg == 2 then
    index = KEYS[k]
    k = k + 1
  end
  local dedup
  local previous = false
  if dedup_ttl > 0 then
    dedup = KEYS[k]
    k = k + 1
    previous = redis.call('GET', dedup)
  end
  if previous then
    -- a retry: replay the first answer; amount 0 only reports the bucket's state
    amount = 0
  end
  local granted, remaining, reset
  if alg == 1 or alg == 4 then
    granted, remaining, reset = fixed_window(key, amount, best_effort, max, window, now, alg == 4)
  elseif alg == 2 then
    granted, remaining, reset = rolling_window(key, index, amount, best_effort, max, n, bucket, now)
  else
    granted, remaining, reset = token_bucket(key, amount, best_effort, max, window, capacity, now)
  end
  local replayed = 0
  if previous then
    granted = tonumber(previous)
    replayed = 1
  elseif dedup then
    redis.call('SET', dedup, granted, 'PX', dedup_ttl)
  end
  out[#out + 1] = granted
  out[#out + 1] = math.max(remaining, 0)
  out[#out + 1] = reset
  out[#out + 1] = replayed
end
return cjson.encode(out)
