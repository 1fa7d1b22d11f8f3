-- Argo CD health check for envseal.dev/EnvelopeSecret (docs/gitops.md).
-- Healthy: Ready=True for the current generation. Degraded: Ready=False for the current
-- generation, with its reason and message. Progressing: anything else (no status yet,
-- or a status about an older generation than the spec Argo CD applied).
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

local ready = nil
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Secret is up to date"
elseif ready.status == "False" then
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
else
  hs.status = "Progressing"
  hs.message = (ready.reason or "Unknown") .. ": " .. (ready.message or "")
end
return hs
