-- TOKEN_BUCKET: hash {k = tokens, s = stamp (us)}. Capacity `capacity`, starts full, refills
-- continuously at `max` tokens per `window` us. Refill is a pure function of time, so nothing is
-- written unless tokens are taken; the key expires once the bucket would be full again.
local function token_bucket(key, amount, best_effort, max, window, capacity, now)
  local rate = max / window
  local v = redis.call('HMGET', key, 'k', 's')
  local tokens = tonumber(v[1])
  local stamp = tonumber(v[2])
  if tokens == nil or stamp == nil then
    tokens = capacity
    stamp = now
  elseif now > stamp then
    tokens = math.min(capacity, tokens + (now - stamp) * rate)
    stamp = now
  end
  local granted = take(amount, math.floor(tokens), best_effort)
  if granted > 0 then
    tokens = tokens - granted
    redis.call('HSET', key, 'k', string.format('%.17g', tokens), 's', string.format('%.0f', stamp))
    redis.call('PEXPIRE', key, ms((capacity - tokens) / rate) + 1000)
  end
  return granted, math.floor(tokens), math.ceil((capacity - tokens) / rate)
end
