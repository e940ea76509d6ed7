-- wrk script: a caller that is traced itself, as services behind a traced front end are. Each
-- request carries a W3C traceparent of a new trace (random trace and parent ids, as an
-- OpenTelemetry SDK draws them), sampled by the caller one time in 1 / BENCH_CALLER_SAMPLED
-- (default 0.01: the ratio the proxy is given in bench/configs/tracing.yaml's 1 % run). Other
-- headers come from wrk's -H, which this script keeps.
-- A parent-based proxy follows the caller's flag, so this measures what continuing a trace costs.
local sampled = tonumber(os.getenv("BENCH_CALLER_SAMPLED") or "0.01")

-- A fixed seed: every run sends the same ids and the same sampled requests.
math.randomseed(1)

local digits = "0123456789abcdef"

local function hex(count)
  local out = {}
  for i = 1, count do
    local d = math.random(1, 16)
    out[i] = digits:sub(d, d)
  end
  return table.concat(out)
end

function request()
  local flags = math.random() < sampled and "01" or "00"
  wrk.headers["traceparent"] = "00-" .. hex(32) .. "-" .. hex(16) .. "-" .. flags
  return wrk.format()
end
