-- Argo CD health check for enclave.dev/Tenant: argocd-cm, key
-- resource.customizations.health.enclave.dev_Tenant (argocd-cm.yaml embeds this file verbatim).
-- Argo CD sets the global `obj` to the Tenant; the script returns `hs` = {status, message}.
-- Plain Lua 5.1, as Argo CD's interpreter (gopher-lua) runs it.
--
-- It reads what the operator writes on every reconcile: status.observedGeneration, status.phase
-- and the conditions Ready, Reconciling (the operator is still working) and Stalled (the spec
-- cannot be applied as is). In this order:
--   no status yet, or a generation not yet observed  -> Progressing
--   Stalled True, or phase Blocked                   -> Degraded   (the reason is in the message)
--   phase Suspended                                  -> Suspended  (stopped on purpose)
--   phase Decommissioning, purge under way           -> Progressing
--   phase Decommissioning, waiting for its deadline  -> Suspended  (stopped, data kept until purgeAfter)
--   phase Purged                                     -> Healthy    (what Decommissioned asks is done)
--   Reconciling True, or phase Pending               -> Progressing
--   phase Degraded                                   -> Degraded   (the false conditions are in the message)
--   Ready True                                       -> Healthy
--   anything else                                    -> Progressing
local hs = {}

local function find_condition(status, type_)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function message_of(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    if c.reason ~= nil and c.reason ~= "" then
      return c.reason .. ": " .. c.message
    end
    return c.message
  end
  return fallback
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Enclave operator to reconcile the tenant"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
    .. " (status describes generation " .. tostring(status.observedGeneration) .. ")"
  return hs
end

local phase = status.phase
local ready = find_condition(status, "Ready")
local reconciling = find_condition(status, "Reconciling")
local stalled = find_condition(status, "Stalled")

if is_true(stalled) or phase == "Blocked" then
  hs.status = "Degraded"
  if is_true(stalled) then
    hs.message = "Blocked: " .. message_of(stalled, "the spec cannot be applied as is")
  else
    hs.message = "Blocked: " .. message_of(ready, "the spec cannot be applied as is")
  end
  return hs
end

if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = message_of(ready, "Suspended: workloads stopped, exposure closed, data kept")
  return hs
end

if phase == "Decommissioning" then
  if is_true(reconciling) then
    hs.status = "Progressing"
    hs.message = message_of(reconciling, "Purging the tenant's data")
  else
    hs.status = "Suspended"
    if status.purgeAfter ~= nil then
      hs.message = "Decommissioning: workloads stopped, exposure closed; data retained until "
        .. status.purgeAfter .. ", then purged"
    else
      hs.message = message_of(ready, "Decommissioning: workloads stopped, exposure closed")
    end
  end
  return hs
end

if phase == "Purged" then
  hs.status = "Healthy"
  hs.message = message_of(ready, "Purged: the tenant's data is destroyed and verified gone")
  return hs
end

if is_true(reconciling) or phase == "Pending" then
  hs.status = "Progressing"
  hs.message = message_of(reconciling, message_of(ready, "The operator is applying the tenant"))
  return hs
end

if phase == "Degraded" then
  local problems = {}
  if status.conditions ~= nil then
    for _, c in ipairs(status.conditions) do
      if c.status == "False" and c.type ~= "Ready" then
        table.insert(problems, c.type .. " " .. message_of(c, "False"))
      end
    end
  end
  hs.status = "Degraded"
  if #problems > 0 then
    hs.message = table.concat(problems, "; ")
  else
    hs.message = "Degraded: something declared is not as declared (see the conditions)"
  end
  return hs
end

if is_true(ready) then
  hs.status = "Healthy"
  hs.message = message_of(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = message_of(ready, "Phase " .. tostring(phase))
return hs
