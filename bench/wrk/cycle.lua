-- wrk script: hands out pre-built raw HTTP requests (bench/loadgen.py), records every status.
--
-- Configured by environment (wrk gives script arguments to the threads only, not to done()):
--   LH_WRK_DIR      folder with t<N>.req files, one per wrk thread (loadgen.write_request_files)
--   LH_WRK_THREADS  number of wrk threads (must equal wrk -t)
--   LH_WRK_RATE     total requests/s to aim for (0 or unset: as fast as the connections go).
--                   Each thread keeps an absolute schedule (t0 + k/rate), so it does not drift;
--                   a connection still waits for its response, so above capacity the rate drops.
--   LH_WRK_TRACK    "1": record (thread, index, status) of every answered request into
--                   LH_WRK_OUT. Only exact with one connection per thread (wrk -t N -c N): each
--                   thread then has at most one request in flight, so a response is the answer
--                   to the last request handed out, and a request handed out while another is
--                   still pending means the earlier one was lost (connection error).
--   LH_WRK_OUT      file for the tracked statuses (thread index status per line)
--
-- A thread that has handed out all its requests starts again from its first (counted as a wrap:
-- the server then sees duplicates). done() prints one line "LHWRK {json}" with the summary and
-- latency percentiles in microseconds (wrk measures from the first byte written, after delay()).

local ffi = require("ffi")
ffi.cdef [[
typedef struct lh_timespec { long tv_sec; long tv_nsec; } lh_timespec;
int clock_gettime(int clk_id, lh_timespec *tp);
]]
local ts = ffi.new("lh_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local dir = os.getenv("LH_WRK_DIR")
local nthreads = tonumber(os.getenv("LH_WRK_THREADS") or "1")
local rate = tonumber(os.getenv("LH_WRK_RATE") or "0") or 0
local track = os.getenv("LH_WRK_TRACK") == "1"
local out = os.getenv("LH_WRK_OUT")

-- main state ------------------------------------------------------------------------------------
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  threads[#threads + 1] = thread
end

-- thread states ---------------------------------------------------------------------------------
function init(args)
  local f = assert(io.open(dir .. "/t" .. tid .. ".req", "rb"))
  local data = f:read("*a")
  f:close()
  reqs = {}
  local pos = 1
  while pos <= #data do
    local nl = data:find("\n", pos, true)
    local len = tonumber(data:sub(pos, nl - 1))
    reqs[#reqs + 1] = data:sub(nl + 1, nl + len)
    pos = nl + 1 + len
  end
  data = nil
  nreqs = #reqs
  assert(nreqs > 0, "no requests for thread " .. tid)
  nexti = 0
  handed = 0
  wraps = 0
  lost = 0
  pending = nil
  codes = {}
  t_idx, t_status = {}, {}
  thread_rate = rate / nthreads
  t0 = nil
  slot = 0
end

function request()
  if track and pending then
    lost = lost + 1
  end
  nexti = nexti + 1
  if nexti > nreqs then
    nexti = 1
    wraps = wraps + 1
  end
  pending = nexti
  handed = handed + 1
  return reqs[nexti]
end

function response(status, headers, body)
  local key = tostring(status)
  codes[key] = (codes[key] or 0) + 1
  if track and pending then
    t_idx[#t_idx + 1] = pending
    t_status[#t_status + 1] = status
  end
  pending = nil
end

if rate > 0 then
  function delay()
    local t = now()
    if not t0 then
      t0 = t
    end
    slot = slot + 1
    local ms = (t0 + slot / thread_rate - t) * 1000
    if ms < 0 then
      return 0
    end
    return ms
  end
end

-- main state again: summary -----------------------------------------------------------------------
local function json_codes(all)
  local parts = {}
  for k, v in pairs(all) do
    parts[#parts + 1] = string.format('"%s":%d', k, v)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local all = {}
  local handed_total, wraps_total, lost_total = 0, 0, 0
  local f = nil
  if track and out then
    f = assert(io.open(out, "w"))
  end
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("codes") or {}) do
      all[k] = (all[k] or 0) + v
    end
    handed_total = handed_total + (t:get("handed") or 0)
    wraps_total = wraps_total + (t:get("wraps") or 0)
    lost_total = lost_total + (t:get("lost") or 0)
    if f then
      local tid = t:get("tid")
      local idx, st = t:get("t_idx"), t:get("t_status")
      local lines = {}
      for i = 1, #idx do
        lines[#lines + 1] = string.format("%d %d %d", tid, idx[i], st[i])
      end
      if #lines > 0 then
        f:write(table.concat(lines, "\n"), "\n")
      end
    end
  end
  if f then
    f:close()
  end
  local e = summary.errors
  io.write(string.format(
    'LHWRK {"requests":%d,"duration_us":%d,"bytes":%d,"handed_out":%d,"wraps":%d,"lost":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"codes":%s,' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,"p50":%d,"p90":%d,"p99":%d,"p99_9":%d}}\n',
    summary.requests, summary.duration, summary.bytes, handed_total, wraps_total, lost_total,
    e.connect, e.read, e.write, e.status, e.timeout, json_codes(all),
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
