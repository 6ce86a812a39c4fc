-- POST /api/v1/auth/signup, each with a new username (BENCH_PREFIX, the thread, a counter).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local prefix = os.getenv("BENCH_PREFIX")
local password = os.getenv("BENCH_PASSWORD")
local counter = 0

function request()
  counter = counter + 1
  local body = string.format('{"username": "%s-%d-%d", "password": "%s"}',
    prefix, thread_index or 0, counter, password)
  return wrk.format("POST", "/api/v1/auth/signup", {["Content-Type"] = "application/json"}, body)
end
