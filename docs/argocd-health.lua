-- Argo CD health check for envseal.dev/EnvelopeSecret (docs/gitops.md).
-- Written for Argo CD's engine (gopher-lua, Lua 5.1) as a customization runs there:
-- base and table libraries only, so no string.* functions.
-- Healthy: Ready=True for the current generation and not Reconciling.
-- Degraded: Stalled=True for the current generation (a failure that needs a new spec),
--   with envseal's reason and message; also Ready=False from a controller older than
--   the Stalled/Reconciling conditions (it wrote Ready only).
-- Progressing: anything else (no status yet, a status about an older generation than
--   the spec Argo CD applied, or work still pending).
local hs = {}
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the envseal controller"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the envseal controller to observe generation " .. tostring(generation)
  return hs
end

local ready, stalled, reconciling = nil, nil, nil
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    elseif condition.type == "Stalled" then
      stalled = condition
    elseif condition.type == "Reconciling" then
      reconciling = condition
    end
  end
end

local function describe(condition, fallback)
  return (condition.reason or fallback) .. ": " .. (condition.message or "")
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
elseif reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Reconciling")
elseif ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Secret is up to date"
elseif ready.status == "False" and stalled == nil and reconciling == nil then
  -- An older controller: Ready=False was its only verdict.
  hs.status = "Degraded"
  hs.message = describe(ready, "NotReady")
else
  hs.status = "Progressing"
  hs.message = describe(ready, "Unknown")
end
return hs
