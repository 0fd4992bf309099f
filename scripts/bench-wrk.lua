-- wrk script for `scripts/bench.sh --compare-wrk`: every request posts one SMS to a
-- different recipient with a different body, like the bench client's `--mix sms`.
--
--   wrk -t2 -c64 -d15s --latency -s scripts/bench-wrk.lua http://127.0.0.1:PORT

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + id)
  -- A different recipient range per thread and per run.
  base = id * 100000000 + math.random(0, 999) * 100000
  n = 0
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  n = n + 1
  local k = base + n
  local body = string.format(
    '{"from":"+15551234567","to":"+1555%07d","type":"sms","body":"Your verification code is %06d. Ref %d"}',
    k % 10000000, (k * 7919) % 1000000, k)
  return wrk.format("POST", "/api/v1/messages/send", headers, body)
end
