-- Piece (included by every script): SELECT only when the db changes. A batch of commands
-- alternates between the two dbs less often than its commands do, and each redis.call costs about
-- as much as a small command. The selection ends with the script (the caller's connection keeps
-- its own).
local selected = nil
local function use(db)
  if selected ~= db then
    redis.call('SELECT', db)
    selected = db
  end
end
