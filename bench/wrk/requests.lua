-- wrk script for bench/run.sh: POST or GET /bank/v1/transactions as many people, each
-- request with one of the access tokens in $BENCH_TOKENS (lines `sub sid token`).
--   BENCH_REQUEST=post|get, BENCH_BACKEND and BENCH_CONCURRENCY only label the result line.
-- Requests are built once in init (1,000 per thread) and replayed round-robin, so the Lua
-- side costs little. done() prints one JSON line that bench/report.py reads.

local categories = { "groceries", "fuel", "dining", "coffee", "transport", "shopping",
  "travel", "entertainment", "utilities", "health", "other" }
local prepared = {}
local n = 0

function init(args)
  local tokens = {}
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    local token = line:match("^%S+%s+%S+%s+(%S+)")
    if token then table.insert(tokens, token) end
  end
  local kind = os.getenv("BENCH_REQUEST") or "post"
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  for i = 1, 1000 do
    local token = tokens[math.random(#tokens)]
    local headers = { ["Authorization"] = "Bearer " .. token }
    if kind == "post" then
      headers["Content-Type"] = "application/json"
      local body = string.format(
        '{"transactionName":"Bench merchant %d","category":"%s","amount":"%d.%02d"}',
        math.random(1, 500), categories[math.random(#categories)],
        math.random(1, 199), math.random(0, 99))
      prepared[i] = wrk.format("POST", "/bank/v1/transactions", headers, body)
    else
      prepared[i] = wrk.format("GET", "/bank/v1/transactions?limit=50", headers)
    end
  end
end

function request()
  n = n + 1
  return prepared[(n - 1) % #prepared + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"kind":"wrk","backend":"%s","request":"%s","concurrency":%s,"requests":%d,' ..
    '"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"non2xx":%d,"socket_errors":%d}\n',
    os.getenv("BENCH_BACKEND") or "?", os.getenv("BENCH_REQUEST") or "post",
    os.getenv("BENCH_CONCURRENCY") or "0", summary.requests, summary.duration / 1e6,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
