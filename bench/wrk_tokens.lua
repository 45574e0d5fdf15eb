-- wrk script: send each request with the next token of a file, and print a JSON summary.
-- BENCH_TOKENS_FILE names a file with one token a line (none: no Authorization header);
-- BENCH_AUTH_KEYWORD is the scheme written before the token ("Bearer" or "Token").

local tokens = {}
local keyword = os.getenv("BENCH_AUTH_KEYWORD") or "Bearer"
local path = os.getenv("BENCH_TOKENS_FILE")
if path and path ~= "" then
  for line in io.lines(path) do
    if line ~= "" then
      tokens[#tokens + 1] = line
    end
  end
end

local counter = 0

request = function()
  if #tokens == 0 then
    return wrk.format("GET")
  end
  counter = counter + 1
  local headers = { ["Authorization"] = keyword .. " " .. tokens[(counter % #tokens) + 1] }
  return wrk.format("GET", nil, headers)
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "latency_us": {"p50": %d, "p90": %d, "p99": %d, ' ..
    '"p999": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
