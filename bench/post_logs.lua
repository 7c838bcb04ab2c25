-- wrk script for bench/run.py: POST the README's log entry for a set time,
-- then let every POST still in flight finish before wrk stops.
--
-- wrk drops whatever is in flight when its -d time runs out, and the server
-- may already have queued those entries, so "2xx answers = queue growth"
-- could not be checked exactly. So after `post_seconds` (the script's
-- argument) a connection sends GET /health instead, which queues nothing, and
-- each thread stops once every POST it sent has its answer.
--
-- The counts go to stdout as one line starting "BENCH ", in JSON.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])
-- Lua's os.time() counts whole seconds; the posting window needs better.
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

local entry = '{"service_name": "payment-service", "level": "ERROR", '
  .. '"message": "Transaction failed"}'
local post, health

-- Every wrk thread has a Lua state of its own; done() reads these globals
-- from each thread.
posts_sent, posts_2xx, posts_other = 0, 0, 0
other_statuses = {}
local stop_posting_at

-- Before it starts, wrk calls request() once on the first thread's state to
-- check the script; that request is never sent, so it must not be counted.
checking = false

local threads = {}
function setup(thread)
  table.insert(threads, thread)
  if #threads == 1 then
    thread:set("checking", true)
  end
end

function init(args)
  -- Built here, not at the top: wrk sets the Host header only after loading
  -- the script, and Node's HTTP server answers 400 to a request without one.
  post = wrk.format("POST", "/logs", { ["Content-Type"] = "application/json" }, entry)
  health = wrk.format("GET", "/health")
  stop_posting_at = now() + tonumber(args[1])
end

function request()
  if checking then
    checking = false
    return post
  end
  if now() < stop_posting_at then
    posts_sent = posts_sent + 1
    return post
  end
  return health
end

function response(status, headers, body)
  -- Only a /health answer names "redis"; every other answer is to a POST.
  if not body:find('"redis"', 1, true) then
    if status >= 200 and status < 300 then
      posts_2xx = posts_2xx + 1
    else
      posts_other = posts_other + 1
      other_statuses[status] = (other_statuses[status] or 0) + 1
    end
  end
  if now() >= stop_posting_at and posts_sent == posts_2xx + posts_other then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local sent, ok, other, counts = 0, 0, 0, {}
  for _, thread in ipairs(threads) do
    sent = sent + thread:get("posts_sent")
    ok = ok + thread:get("posts_2xx")
    other = other + thread:get("posts_other")
    for status, count in pairs(thread:get("other_statuses")) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local statuses = {}
  for status, count in pairs(counts) do
    table.insert(statuses, string.format('"%d": %d', status, count))
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"posts_sent": %d, "posts_2xx": %d, "posts_other": %d, '
      .. '"other_statuses": {%s}, "requests": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "socket_errors": %d, "timeouts": %d}\n',
    sent, ok, other, table.concat(statuses, ", "), summary.requests,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, errors.connect + errors.read + errors.write, errors.timeout
  ))
end
