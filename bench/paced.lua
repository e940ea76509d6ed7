-- wrk script: each connection pauses between a response and its next request, so the load is a
-- steady rate well below what the target can serve. With every connection sending back to back
-- (wrk's default) the percentiles of 64 connections are mostly queueing: latency = 64 ÷ req/s.
-- BENCH_PACED_DELAY_MS sets the pause (default 8 ms: about 64 / 8 ms = 8,000 req/s offered).
local pause = tonumber(os.getenv("BENCH_PACED_DELAY_MS") or "8")

function delay()
  return pause
end
