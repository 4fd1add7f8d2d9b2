-- FIXED_WINDOW: hash {t = used, e = window end (us)}. A window opens at the first grant after
-- the previous one closed and lasts `window` us. Nothing is written unless something is granted,
-- so a denied or zero request never opens a window. With `aligned`, the window opened is the
-- multiple of `window` since the Unix epoch (TIME) that holds `now`.
local function fixed_window(key, amount, best_effort, max, window, now, aligned)
  local v = redis.call('HMGET', key, 't', 'e')
  local used = tonumber(v[1]) or 0
  local stop = tonumber(v[2]) or 0
  if now >= stop then
    used = 0
  end
  local granted = take(amount, max - used, best_effort)
  if granted > 0 then
    if now >= stop then
      stop = now + window
      if aligned then
        stop = stop - now % window
      end
    end
    used = used + granted
    redis.call('HSET', key, 't', used, 'e', string.format('%.0f', stop))
    redis.call('PEXPIRE', key, ms(stop - now))
  end
  local reset = 0
  if now < stop then
    reset = stop - now
  end
  return granted, max - used, reset
end
