-- wrk script for `deno task bench` (bench/wrk.ts): POSTs a small MCP JSON-RPC body with a bearer
-- token. BENCH_TOKENS names a file with one token per line: one token is sent as a static
-- header (wrk formats the request once); several are rotated round robin, each thread starting
-- at its own offset, with every request pre-formatted in init(). done() prints one JSON line
-- prefixed with BENCH_JSON. Token bytes are never printed.

local file = os.getenv("BENCH_TOKENS")
local tokens = {}
if file and file ~= "" then
  for line in io.lines(file) do
    if line ~= "" then tokens[#tokens + 1] = line end
  end
end

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or "{}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"

if #tokens == 1 then
  wrk.headers["Authorization"] = "Bearer " .. tokens[1]
elseif #tokens > 1 then
  local threads = 0
  function setup(thread)
    thread:set("offset", threads)
    threads = threads + 1
  end

  local requests = {}
  local i = 0
  function init(args)
    for k, token in ipairs(tokens) do
      local headers = {}
      for name, value in pairs(wrk.headers) do headers[name] = value end
      headers["Authorization"] = "Bearer " .. token
      requests[k] = wrk.format(nil, nil, headers)
    end
    i = ((offset or 0) * 7919) % #requests
  end

  function request()
    i = i % #requests + 1
    return requests[i]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"socket_errors":%d,"status_errors":%d,' ..
      '"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
