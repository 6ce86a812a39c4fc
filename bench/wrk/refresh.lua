-- POST /token, grant_type=refresh_token, for the first-party client. Refresh tokens rotate on
-- every use, so each thread keeps a queue: a request takes a token, its answer puts the next one
-- back. BENCH_TOKENS holds one token per line; thread i takes lines i, i+n, i+2n, ...
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local queue = {}
local first, last = 1, 0

function init(args)
  local threads = tonumber(os.getenv("BENCH_THREADS"))
  local line_number = 0
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if line_number % threads == thread_index then
      last = last + 1
      queue[last] = line
    end
    line_number = line_number + 1
  end
end

function request()
  local token = queue[first]
  if first <= last then
    queue[first] = nil
    first = first + 1
  end
  return wrk.format("POST", "/token", {["Content-Type"] = "application/x-www-form-urlencoded"},
    "grant_type=refresh_token&refresh_token=" .. (token or "none-left"))
end

function on_response(status, body)
  local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if token then
    last = last + 1
    queue[last] = token
  end
end
