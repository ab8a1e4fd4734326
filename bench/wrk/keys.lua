-- wrk script for ratelimit-*: every request carries X-Client, cycling over
-- BENCH_KEYS distinct values (default 100000), so a rate limiter keyed on that
-- header holds that many buckets. The requests are built once in init(), so
-- the client's cost per request is one table lookup, the same for every proxy
-- (the "ward without the filter" row uses this script too).
local keys = tonumber(os.getenv("BENCH_KEYS") or "100000")
local reqs = {}
local i = 0
local threads = 0

-- setup() runs in wrk's main Lua state once per thread: number the threads.
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  -- Each wrk thread starts at another offset: threads do not walk in step.
  for k = 1, keys do
    reqs[k] = wrk.format(nil, nil, { ["X-Client"] = "client-" .. k })
  end
  i = ((tid or 0) * 7919) % keys
end

function request()
  i = i + 1
  if i > keys then
    i = 1
  end
  return reqs[i]
end

-- done(): the same machine-readable line as report.lua.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")
