-- wrk script for bench/webhook_throughput.py: POST prepared /webhook bodies in turn.
--
--   wrk -t1 -c16 -d10s -s bench/webhook_post.lua http://127.0.0.1:5055 -- bodies.jsonl
--
-- bodies.jsonl holds one JSON action call per line. Every request is formatted once, in
-- init(), so that wrk spends its CPU on sending, not on Lua. done() prints the figures as
-- one JSON line starting with "wrk-result:", which the bench parses. A token in
-- PERSONALIZE_WEBHOOK_TOKEN goes with every request as a bearer token.

local requests = {}
local next_index = 1
local threads = {}

function setup(thread)
   thread:set("thread_number", #threads)
   table.insert(threads, thread)
end

function init(args)
   local path = args[1]
   if path == nil then
      error("usage: wrk ... -s webhook_post.lua <url> -- <bodies.jsonl>")
   end
   local headers = {["Content-Type"] = "application/json"}
   -- Sent to both servers alike when set; only ours checks it.
   local token = os.getenv("PERSONALIZE_WEBHOOK_TOKEN")
   if token ~= nil and token ~= "" then
      headers["Authorization"] = "Bearer " .. token
   end
   for line in io.lines(path) do
      requests[#requests + 1] = wrk.format("POST", "/webhook", headers, line)
   end
   if #requests == 0 then
      error("no request bodies in " .. path)
   end
   -- Threads start at different bodies, so they do not send the same customer together.
   next_index = ((thread_number or 0) * 7919) % #requests + 1
end

function request()
   local next_request = requests[next_index]
   next_index = next_index % #requests + 1
   return next_request
end

function done(summary, latency, _)
   local errors = summary.errors
   io.write(string.format(
      'wrk-result: {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
         .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, '
         .. '"status_errors": %d, "timeouts": %d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      errors.connect, errors.read, errors.write, errors.status, errors.timeout
   ))
end
