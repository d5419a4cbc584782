-- Piece (included by the scripts that queue ids): each lane's queue list and retry set, and a
-- lane's keys by name (an unknown lane is the default one). Needs the locals queue_key,
-- delayed_key, plots_queue_key and plots_delayed_key.
local LANES = {['default'] = {queue_key, delayed_key}, ['plots'] = {plots_queue_key, plots_delayed_key}}

local function lane_keys(lane)
  return unpack(LANES[lane] or LANES['default'])
end
