-- wrk script of benchmarks/server.sh: POST /api/generate as signed-in users (development auth),
-- a different user on each request (BENCH_USERS users named BENCH_USER_PREFIX1..N), no
-- Idempotency-Key: every request is a new generation that costs one token.
local users = tonumber(os.getenv("BENCH_USERS") or "50")
local prefix = os.getenv("BENCH_USER_PREFIX") or "user_bench"
local body = '{"input":"Write the release notes for version 2 of the billing page"}'
local counter = 0

function setup(thread)
  -- Threads start at different users so they do not march in step.
  thread:set("offset", math.random(0, users - 1))
end

function request()
  counter = counter + 1
  local user = prefix .. ((counter + (offset or 0)) % users + 1)
  return wrk.format("POST", "/api/generate", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer dev:" .. user,
  }, body)
end
