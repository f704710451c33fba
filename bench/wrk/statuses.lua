-- Counts responses by status class per wrk thread and prints them at the end as one JSON line
-- (wrk's own summary counts only "non-2xx or 3xx"). With script arguments `<rate> <connections>`
-- each connection waits between its requests so that all of them together offer about <rate>
-- requests per second (an offered load, not as many as the server can answer).
local threads = {}
local pause_ms = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, limited, other = 0, 0, 0
  local rate, connections = tonumber(args[1]), tonumber(args[2])
  if rate and connections and rate > 0 then
    pause_ms = connections / rate * 1000
  end
end

function delay()
  return pause_ms
end

function response(status, headers, body)
  if status < 300 then
    ok = ok + 1
  elseif status == 429 then
    limited = limited + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local total_ok, total_limited, total_other = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_limited = total_limited + thread:get("limited")
    total_other = total_other + thread:get("other")
  end
  io.write(string.format('WRK_STATUSES {"ok": %d, "limited": %d, "other": %d}\n',
    total_ok, total_limited, total_other))
end
