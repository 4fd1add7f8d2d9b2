-- ROLLING_WINDOW: buckets of `bucket` us; a bucket's grants count until `n` buckets later.
-- Hash `key` holds {t = used in the window, <bucket index> = granted in that bucket}; sorted set
-- `index` holds the bucket indexes present (score = index) so old buckets are found without
-- scanning empty ones.
local function rolling_window(key, index, amount, best_effort, max, n, bucket, now)
  local current = math.floor(now / bucket)
  local cutoff = current - n
  local used = tonumber(redis.call('HGET', key, 't')) or 0
  local old = redis.call('ZRANGEBYSCORE', index, '-inf', string.format('%.0f', cutoff))
  for _, idx in ipairs(old) do
    used = used - (tonumber(redis.call('HGET', key, idx)) or 0)
    redis.call('HDEL', key, idx)
  end
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', index, '-inf', string.format('%.0f', cutoff))
  end
  if used < 0 then
    used = 0
  end
  local granted = take(amount, max - used, best_effort)
  if granted > 0 then
    local member = string.format('%.0f', current)
    redis.call('HINCRBY', key, member, granted)
    redis.call('ZADD', index, member, member)
  end
  used = used + granted
  if granted > 0 or #old > 0 then
    redis.call('HSET', key, 't', used)
    local ttl = ms((n + 1) * bucket)
    redis.call('PEXPIRE', key, ttl)
    redis.call('PEXPIRE', index, ttl)
  end
  local reset = 0
  local first = redis.call('ZRANGE', index, 0, 0)[1]
  if first then
    reset = math.max(0, (tonumber(first) + n) * bucket - now)
  end
  return granted, max - used, reset
end
