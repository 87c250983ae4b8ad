-- Load for `rankloop bench api` with wrk (the default driver): one annotator per connection.
--
-- Run as `wrk -t N -c N -s annotators.lua URL`: one connection per wrk thread, so each thread's
-- Lua state is one annotator walking next -> submit a full ranking -> next ... . wrk's own
-- latency numbers mix both endpoints, so each response is timed here (monotonic clock through
-- LuaJIT's FFI) and written, one line each, to `<RANKLOOP_BENCH_OUT>/wrk-<thread>.txt`:
--   next <ms> <status>
--   ranking <ms> <status> <ranking id or ->
-- The benchmark reads those files: per-endpoint rates and percentiles, and the ranking ids
-- acknowledged with a 201 (compared with the database afterwards).
--
-- Environment: RANKLOOP_BENCH_TOKENS (a file, one annotator token a line; thread i of
-- RANKLOOP_BENCH_CONNECTIONS = N takes tokens i, i + N, i + 2N, ... and moves to its next token
-- on a 204: it has ranked every open round),
-- RANKLOOP_BENCH_OUT (a folder), RANKLOOP_BENCH_BARE=1 (POST the bare endpoint instead).

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } rankloop_timespec;
int clock_gettime(int clock_id, rankloop_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local now_ts = ffi.new("rankloop_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now_ts)
  return tonumber(now_ts.tv_sec) * 1000.0 + tonumber(now_ts.tv_nsec) / 1e6
end

local counter = 0

function setup(thread)
  thread:set("thread_index", counter)  -- a global in that thread's own Lua state
  counter = counter + 1
end

local bare = os.getenv("RANKLOOP_BENCH_BARE") == "1"
local tokens, token_at, stride
local log
local state = "next"  -- what the next request is: "next" or "ranking"
local task_id, order_json
local sent_at = 0

function init(args)
  local index = thread_index
  stride = tonumber(os.getenv("RANKLOOP_BENCH_CONNECTIONS") or "1")
  local out = os.getenv("RANKLOOP_BENCH_OUT") or "."
  log = io.open(string.format("%s/wrk-%03d.txt", out, index), "w")
  log:setvbuf("line")  -- nothing lost when wrk exits without closing the file
  if bare then
    return
  end
  tokens = {}
  for line in io.lines(os.getenv("RANKLOOP_BENCH_TOKENS")) do
    if #line > 0 then
      table.insert(tokens, line)
    end
  end
  token_at = index + 1
end

local function auth()
  return { ["Authorization"] = "Bearer " .. (tokens[token_at] or "exhausted") }
end

function request()
  sent_at = now_ms()
  if bare then
    return wrk.format("POST", "/bare", { ["Content-Type"] = "application/json" },
      '{"order": ["a", "b"]}')
  end
  if state == "ranking" then
    local headers = auth()
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", "/api/tasks/" .. task_id .. "/ranking", headers,
      '{"order": [' .. order_json .. ']}')
  end
  return wrk.format("GET", "/api/tasks/next", auth())
end

function response(status, headers, body)
  local elapsed = now_ms() - sent_at
  if bare then
    log:write(string.format("bare %.3f %d\n", elapsed, status))
    return
  end
  if state == "ranking" then
    local ranking_id = status == 201 and body:match('"ranking_id"%s*:%s*(%d+)') or "-"
    log:write(string.format("ranking %.3f %d %s\n", elapsed, status, ranking_id))
    state = "next"
    return
  end
  log:write(string.format("next %.3f %d\n", elapsed, status))
  if status == 204 then
    token_at = token_at + stride  -- every open round ranked: the next annotator
  elseif status == 200 then
    task_id = body:match('"task_id"%s*:%s*"([^"]+)"')
    local images = body:match('"images"%s*:%s*(%b[])') or ""
    local ids = {}
    for id in images:gmatch('"id"%s*:%s*"([^"]+)"') do
      table.insert(ids, '"' .. id .. '"')
    end
    if task_id and #ids > 0 then
      order_json = table.concat(ids, ", ")
      state = "ranking"
    end
  end
end
