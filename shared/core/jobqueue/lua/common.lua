-- Piece (first in dispatch.lua and in each of a worker's scripts, which share one layout of KEYS and
-- ARGV, described in dispatch.lua's header, and one set of commands): the keys and context as
-- locals, the lanes, the db selection, Redis's time, the reading of arguments and the command
-- table. Every call of every script runs all of it: what only some commands use is a piece of its
-- own (jobqueue/delivery.py composes a worker's scripts from the pieces their commands name).

local queue_key, delayed_key, heartbeat_key, busy_key, index_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local plots_queue_key, plots_delayed_key, skipped_key, plots_busy_key = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local active_key, reaped_key = KEYS[10], KEYS[11]
local jobs_db, queue_db = ARGV[1], ARGV[2]
local job_prefix, result_prefix, processing_prefix = ARGV[3], ARGV[4], ARGV[5]
local done_channel, ttl = ARGV[6], tonumber(ARGV[7])
local status_prefix, operation_prefix = ARGV[8], ARGV[9]
local waited_prefix, announce_all = ARGV[10], ARGV[11]
local command = ARGV[12]

--@include lanes.lua
--@include select.lua

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end

-- arguments of the commands, read in order
local position = 12
local function arg()
  position = position + 1
  return ARGV[position]
end

local commands = {}

-- Set by a command that changed something a second run of it could not report again (ids moved
-- back to the queue): the dispatcher then keeps the call's answer when the call asks it to.
local worth_keeping = false
