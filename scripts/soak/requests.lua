-- wrk script for scripts/soak-serve.sh: rotates over the requests of a manifest (one per line:
-- "METHOD<TAB>PATH<TAB>CONTENT-TYPE<TAB>BODY-FILE", "-" for none) and counts the answers, per thread, as
--   good manifests: failed = any status >= 400; bad manifests: failed = a 2xx/3xx (a bad request accepted);
--   and in both, 5xx apart. done() prints "SOAK <requests> <failed> <5xx>".
-- usage: wrk ... -s requests.lua URL -- MANIFEST good|bad [PAUSE_MS]   (PAUSE_MS between requests: thins a stream)
local threads = {}
function setup(thread) table.insert(threads, thread) end

local requests, expect, pause = {}, "good", 0
failed, server_errors, answered = 0, 0, 0

function init(args)
  expect = args[2] or "good"
  pause = tonumber(args[3] or "0")
  for line in io.lines(args[1]) do
    local method, path, ctype, file = line:match("^([^\t]+)\t([^\t]+)\t([^\t]*)\t([^\t]+)$")
    local body = nil
    if file ~= "-" then local h = io.open(file, "rb"); body = h:read("*a"); h:close() end
    local headers = {}
    if ctype ~= "" then headers["Content-Type"] = ctype end
    table.insert(requests, wrk.format(method, path, headers, body))
  end
end

function delay() return pause end

local i = 0
function request()
  i = i + 1
  return requests[(i % #requests) + 1]
end

function response(status, headers, body)
  answered = answered + 1
  if status >= 500 then server_errors = server_errors + 1 end
  if expect == "good" and status >= 400 then failed = failed + 1 end
  if expect == "bad" and status < 400 then failed = failed + 1 end
end

function done(summary, latency, requests)
  local f, e, a = 0, 0, 0
  for _, t in ipairs(threads) do f = f + t:get("failed"); e = e + t:get("server_errors"); a = a + t:get("answered") end
  io.write(string.format("SOAK %d %d %d\n", a, f, e))
end
