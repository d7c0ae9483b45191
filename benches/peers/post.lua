-- wrk script: POST /api/v1/statuses as the orchestrator's mastodon-poster
-- does, each request with its own Idempotency-Key, accounts round-robin.
--
--   wrk -t2 -c200 -d5s -s post.lua http://127.0.0.1:PORT -- ACCOUNTS THREADS
--
-- Request i of thread t is global number n = i * THREADS + t: distinct
-- across threads, so every request creates one status.

local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
end

local accounts, threads, n
local headers = { ["Content-Type"] = "application/json" }

function init(args)
   accounts = tonumber(args[1]) or 1
   threads = tonumber(args[2]) or 1
   n = id
end

function request()
   local i = n
   n = n + threads
   headers["Authorization"] = "Bearer acct-" .. (i % accounts)
   headers["Idempotency-Key"] = "wrk-" .. i
   return wrk.format("POST", "/api/v1/statuses", headers, '{"status":"post ' .. i .. '"}')
end
