local out = {0, '', 0, 0}
if KEYS[1] ~= '' then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
  out[1] = n
end
local v = redis.call('GET', KEYS[2])
if not v then redis.call('SET', KEYS[2], ARGV[2]) v = ARGV[2] end
out[2] = v
if KEYS[3] ~= '' and redis.call('SET', KEYS[3], '1', 'NX', 'EX', 60) then out[3] = 1 end
local sums, missing = {}, {}
local k, a = 4, 4
for g = 1, tonumber(ARGV[3]) do
  local nk, nf = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local fields = {'_built'}
  for j = 1, nf do fields[j + 1] = ARGV[a + 1 + j] end
  a = a + 2 + nf
  local hi, lo = {}, {}
  for j = 1, nf do hi[j] = 0 lo[j] = 0 end
  for i = k, k + nk - 1 do
    local vals = redis.call('HMGET', KEYS[i], unpack(fields))
    if not vals[1] then
      table.insert(missing, i - 3)
    else
      for j = 1, nf do
        local s = vals[j + 1]
        if s then
          local neg = string.byte(s, 1) == 45
          if neg then s = string.sub(s, 2) end
          local l = tonumber(string.sub(s, -9))
          local h = 0
          if #s > 9 then h = tonumber(string.sub(s, 1, #s - 9)) end
          if neg then hi[j] = hi[j] - h lo[j] = lo[j] - l else hi[j] = hi[j] + h lo[j] = lo[j] + l end
        end
      end
    end
  end
  k = k + nk
  for j = 1, nf do table.insert(sums, hi[j]) table.insert(sums, lo[j]) end
end
out[4] = #missing
for _, i in ipairs(missing) do table.insert(out, i) end
for _, x in ipairs(sums) do table.insert(out, x) end
return out
