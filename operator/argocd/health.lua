-- Argo CD health check of weir.dev/StreamJob. Install it in argocd-cm as
-- resource.customizations.health.weir.dev_StreamJob (see operator/argocd/README.md).
-- It reads the kstatus conditions the operator writes (Ready, Reconciling, Stalled,
-- UpgradeBlocked) and observedGeneration, the same fields Flux's kstatus reads.
local hs = {}
if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Weir operator to observe the StreamJob"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local conditions = {}
for _, c in ipairs(obj.status.conditions or {}) do
  conditions[c.type] = c
end
local function is_true(name)
  return conditions[name] ~= nil and conditions[name].status == "True"
end
local function message(name, default)
  if conditions[name] ~= nil and conditions[name].message ~= nil and conditions[name].message ~= "" then
    return conditions[name].message
  end
  return default
end
local state = obj.status.lifecycleState or "Created"
if is_true("UpgradeBlocked") then
  hs.status = "Degraded"
  hs.message = "Upgrade blocked: " .. message("UpgradeBlocked", "the new spec cannot restore the job's state")
  return hs
end
if is_true("Stalled") then
  hs.status = "Degraded"
  hs.message = message("Stalled", state)
  return hs
end
if state == "Suspended" then
  hs.status = "Suspended"
  hs.message = "Suspended with a savepoint"
  return hs
end
if is_true("Ready") then
  hs.status = "Healthy"
  hs.message = state
  return hs
end
if state == "Failed" then
  hs.status = "Degraded"
  hs.message = obj.status.error or "The job failed"
  return hs
end
hs.status = "Progressing"
hs.message = message("Reconciling", state)
return hs
