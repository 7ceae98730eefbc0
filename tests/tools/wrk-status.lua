-- wrk script: counts the responses by status in every thread and prints one summary
-- line at the end (wrk's own "Non-2xx or 3xx" counts 3xx as success; this does not):
--   WRK requests=N duration_s=S rps=R non2xx=N connect=N read=N write=N timeout=N statuses=200:N,...
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   statuses = {}
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local all, non2xx, keys = {}, 0, {}
   for _, t in ipairs(threads) do
      for status, n in pairs(t:get("statuses")) do
         all[status] = (all[status] or 0) + n
      end
   end
   for status, n in pairs(all) do
      if status < 200 or status > 299 then non2xx = non2xx + n end
      table.insert(keys, status)
   end
   table.sort(keys)
   local parts = {}
   for _, status in ipairs(keys) do table.insert(parts, status .. ":" .. all[status]) end
   local seconds = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "WRK requests=%d duration_s=%.1f rps=%.0f non2xx=%d connect=%d read=%d write=%d timeout=%d p99_ms=%.1f statuses=%s\n",
      summary.requests, seconds, summary.requests / seconds, non2xx,
      e.connect, e.read, e.write, e.timeout, latency:percentile(99) / 1000,
      table.concat(parts, ",")))
end
