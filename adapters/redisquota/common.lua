-- Shared helpers. The scripts in this package are concatenated (common, algorithms, main)
-- into one script so that one EVALSHA serves every quota of a batch.

-- What to grant of `amount` when `available` is left: all or nothing, or (best effort) what is left.
local function take(amount, available, best_effort)
  if amount <= 0 then
    return 0
  end
  if amount <= available then
    return amount
  end
  if best_effort and available > 0 then
    return available
  end
  return 0
end

-- Milliseconds for PEXPIRE from microseconds, at least 1.
local function ms(us)
  return math.max(1, math.ceil(us / 1000))
end
