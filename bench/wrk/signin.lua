-- POST /api/v1/auth/signin with a right password. BENCH_USERS holds "name password" lines; each
-- request takes the next one, so that no single account carries the whole load.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local bodies = {}
for line in io.lines(os.getenv("BENCH_USERS")) do
  local name, password = line:match("^(%S+) (.+)$")
  if name then
    table.insert(bodies, string.format('{"username": "%s", "password": "%s"}', name, password))
  end
end
local next_body = 0

function request()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", "/api/v1/auth/signin", {["Content-Type"] = "application/json"},
    bodies[next_body])
end
