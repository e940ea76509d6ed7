-- wrk script: each connection pauses between a response and its next request, so the load is a
-- steady rate well below what the target can serve. With every connection sending back to back
-- (wrk's default) the percentiles of 64 connections are mostly queueing: latency = 64 ÷ req/s.
-- BENCH_PACED_DELAY_MS sets the mean pause (default 8 ms: about 64 / 8 ms = 8,000 req/s offered).
--
-- The pause is drawn uniformly from 0 .. 2 × the mean. A fixed pause would not give a steady rate:
-- connections answered in the same millisecond would send again in the same millisecond, so groups
-- only ever merge, and within seconds all 64 move in lockstep. Each request then queues behind up
-- to 63 others, and p99 measures 64 × the cost of one request, not the latency of one.
-- `node bench/pacing-check.mjs` shows the arrival bursts each way.
-- BENCH_PACED_JITTER=0 restores the fixed pause.
local mean = tonumber(os.getenv("BENCH_PACED_DELAY_MS") or "8")
local jitter = os.getenv("BENCH_PACED_JITTER") ~= "0"

-- A fixed seed: every run offers the same sequence of pauses.
math.randomseed(1)

function delay()
  if jitter then
    return math.random(0, 2 * mean)
  end
  return mean
end
