"""Deployment capacity: where answers wait for the model, and in what order they get it.

The scarce resource is the model: a deployment (one endpoint) serves `capacity` sequences at
once. A task that needs one does not go to a worker's queue when it is created: it joins the
waiting line of its *flow* (its app's tasks with one route: the same deployments), and a
deployment with room takes the next task, then pushes its job onto the RQ queue of its priority,
so the queues hold only work that can start now, and no worker ever holds a job it cannot run.

Order at a deployment: strictly by priority (`high`, then `medium`, then `low`), `high` alone in
the deployment's `reserved_for_high` sequences; within a priority, fair shares between the flows
it serves (start-time fair queuing: each flow in a ring scored with a virtual start tag, the
lowest served first, its tag then advancing by 1 / the app's weight; a flow that starts waiting
joins at the ring's current virtual time, so nobody banks credit while idle); within a flow,
first come, first served. Every step is a sorted-set operation: choosing the next answer costs
O(log n) whatever the number waiting.

A task holds its deployment as a lease in the deployment's set of holders (renewed while it
runs; a crashed holder's lapses), and gives it back when its attempt ends (`capacity_release`),
which lets the deployment take its next waiter at once. A lapsed lease is found by the next
dispatch at that deployment (the housekeeping dispatches every deployment several times a
second as a backstop).

Routing: among an app's primary deployments, a new task goes to the least busy (in flight
against capacity, by weight); a waiting task to whichever frees first. A deployment that fails
(refusals with 429, or most of its recent calls failing) is cooled down: it takes nothing until
its cooldown ends (a 429's Retry-After at least), then one probe at a time (half open) until a
call succeeds. While every primary of a flow is cooling down or disabled, the flow's fallbacks
take its waiting tasks, in order.

Redis keys (under the platform prefix, `cap:`): per deployment `d:<name>:holders|conf|ring:<p>|
fring:<p>|vt:<p>|flows|inflight|health|rpm|tpm:<minute>|failures`; per flow `f:<flow>` (its
app, weight, deployments) and `f:<flow>:<p>` (its line); `waiting:<p>` (task -> flow) and
`grants` (task -> deployment, flow) for every task waiting or holding a deployment. The scripts
touch keys they compute, so they need one Redis server (or a Sentinel's master), not a Cluster.
"""

import enum
import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.core.priorities import Priority
from apps.core.redis import LuaScript, key, sync_client

PRIORITIES: tuple[str, ...] = (Priority.HIGH.value, Priority.MEDIUM.value, Priority.LOW.value)
RQ_QUEUE_PREFIX = "rq:queue:"
RQ_JOB_PREFIX = "rq:job:"
# Most tasks one dispatch takes (a deployment with thousands of sequences fills in turns).
DISPATCH_BUDGET = 256


@dataclass(frozen=True)
class Target:
    """A deployment as the scheduler counts it."""

    name: str
    capacity: int
    reserved_for_high: int = 0
    # Sequences bulk work (a batch's requests) never takes, for live work.
    bulk_reserve: int = 0
    # The app's routing weight for it, among its primaries.
    weight: int = 1
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    enabled: bool = True


@dataclass(frozen=True)
class Route:
    """Where a task may run: its app's deployments. An app's tasks share a waiting line (a
    flow) per kind of need: its answers, its bulk work, answers that need a larger context
    window (`variant`); the app's `share_weight` is the flow's fair-share weight. A flow
    follows its app's deployments as they are now (each submission says them), so answers
    that wait while an operator changes them go where the app is served then."""

    app: str
    share_weight: int
    primaries: tuple[Target, ...]
    fallbacks: tuple[Target, ...] = ()
    bulk: bool = False
    variant: str = ""

    @property
    def flow(self) -> str:
        return (
            answers_flow(self.app)
            + (f":{self.variant}" if self.variant else "")
            + (":bulk" if self.bulk else "")
        )


def answers_flow(app: str) -> str:
    """The line an app's answers wait in (known without reading the app's deployments)."""
    return str(app)


class CallOutcome(enum.StrEnum):
    """How a holder's use of its deployment ended (what the deployment's health learns)."""

    OK = "ok"
    # The call failed (connection refused or reset, a timeout, a 5xx).
    FAILED = "failed"
    # The server refused for load (429): cooled down at once.
    REFUSED = "refused"
    # The server could not be reached, or cut the answer off (connection refused or reset):
    # cooled down at once.
    UNREACHABLE = "unreachable"
    # Given back without a call (rerouted, the worker stopping, the task cancelled).
    UNUSED = "unused"


# --- the scripts ------------------------------------------------------------------------------
# ARGV[1..3] of every script: the key prefix, RQ's queue prefix, RQ's job prefix.
_PRELUDE = r"""
local P, RQ_QUEUE, RQ_JOB = ARGV[1], ARGV[2], ARGV[3]
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local PRIOS = {'high', 'medium', 'low'}
-- A task taken in place by the worker that holds it (its job is not pushed).
local IN_PLACE = nil
local GRANTS = P .. 'grants'
local DEPS = P .. 'deployments'
local function dk(d, part) return P .. 'd:' .. d .. ':' .. part end
local function ring(d, p, fb) return dk(d, (fb and 'fring:' or 'ring:') .. p) end
local function line(f, p) return P .. 'f:' .. f .. ':' .. p end
local function meta(f) return P .. 'f:' .. f end
local function waiting(p) return P .. 'waiting:' .. p end
local function split(s, sep)
  local out = {}
  if not s or s == '' then return out end
  for part in string.gmatch(s, '([^' .. sep .. ']+)') do table.insert(out, part) end
  return out
end
local function grant_of(t)
  local g = redis.call('hget', GRANTS, t)
  if not g then return nil, nil end
  local parts = split(g, '\t')
  return parts[1], parts[2]
end
local function waiting_of(t)
  for _, p in ipairs(PRIOS) do
    local f = redis.call('hget', waiting(p), t)
    if f then return f, p end
  end
  return nil, nil
end
local function conf(d)
  local c = redis.call('hmget', dk(d, 'conf'), 'cap', 'high', 'bulk', 'rpm', 'tpm', 'enabled',
    'grant_ttl')
  return {cap = tonumber(c[1] or '0'), high = tonumber(c[2] or '0'), bulk = tonumber(c[3] or '0'),
    rpm = tonumber(c[4] or '0'), tpm = tonumber(c[5] or '0'), enabled = c[6] ~= '0',
    grant_ttl = tonumber(c[7] or '30000')}
end
-- Whether `d` takes work now: enabled, not cooling down.
local function available(d)
  if redis.call('hget', dk(d, 'conf'), 'enabled') == '0' then return false end
  local h = redis.call('hmget', dk(d, 'health'), 'state', 'until')
  if h[1] == 'open' and now_ms < tonumber(h[2]) then return false end
  return true
end
local function primaries_down(f)
  for _, d in ipairs(split(redis.call('hget', meta(f), 'primaries'), ',')) do
    if available(d) then return false end
  end
  return true
end
local function unhold(d, t)
  redis.call('zrem', dk(d, 'holders'), t)
  local gd, gf = grant_of(t)
  if gd == d then
    redis.call('hdel', GRANTS, t)
    if redis.call('hincrby', dk(d, 'inflight'), gf, -1) <= 0 then
      redis.call('hdel', dk(d, 'inflight'), gf)
    end
  end
end
local function lapse(d)
  for _, t in ipairs(redis.call('zrangebyscore', dk(d, 'holders'), '-inf', now_ms)) do
    unhold(d, t)
  end
end
-- A flow that starts waiting at d starts at the ring's virtual time, or where its last turn
-- there ended if that is later: nobody banks turns by leaving and coming back.
local function start_tag(d, p, f)
  local now_tag = tonumber(redis.call('get', dk(d, 'vt:' .. p)) or '0')
  local finished = tonumber(redis.call('hget', dk(d, 'finish:' .. p), f) or '0')
  return math.max(now_tag, finished)
end
-- Join the rings of the flow's deployments at priority p (its fallbacks' too while every
-- primary is down).
local function join(f, p)
  local m = redis.call('hmget', meta(f), 'primaries', 'fallbacks')
  for _, d in ipairs(split(m[1], ',')) do
    redis.call('zadd', ring(d, p, false), 'NX', start_tag(d, p, f), f)
  end
  if primaries_down(f) then
    for _, d in ipairs(split(m[2], ',')) do
      redis.call('zadd', ring(d, p, true), 'NX', start_tag(d, p, f), f)
    end
    return split(m[2], ',')
  end
  return split(m[1], ',')
end
-- The next flow to serve in d's ring at p: the lowest tag among those with a task waiting (and,
-- for bulk flows, room left to bulk work). Stale entries are dropped on the way.
local function pick(d, p, fb, bulk_room)
  local r = ring(d, p, fb)
  local checks = 0
  local offset = 0
  while checks < 64 do
    local batch = redis.call('zrange', r, offset, offset + 15, 'WITHSCORES')
    if #batch == 0 then return nil end
    local dropped = 0
    for i = 1, #batch, 2 do
      checks = checks + 1
      local f, tag = batch[i], tonumber(batch[i + 1])
      if redis.call('zcard', line(f, p)) == 0 or (fb and not primaries_down(f)) then
        redis.call('zrem', r, f)
        dropped = dropped + 1
      elseif bulk_room or redis.call('hget', meta(f), 'bulk') ~= '1' then
        return f, tag
      end
    end
    offset = offset + (#batch / 2) - dropped
  end
  return nil
end
local function grant(d, f, p, t, c)
  redis.call('zadd', dk(d, 'holders'), now_ms + c.grant_ttl, t)
  redis.call('hset', GRANTS, t, d .. '\t' .. f)
  redis.call('hdel', waiting(p), t)
  redis.call('hincrby', dk(d, 'inflight'), f, 1)
  if c.rpm > 0 then redis.call('zadd', dk(d, 'rpm'), now_ms, t .. ':' .. now_ms) end
  local job = RQ_JOB .. t
  if t ~= IN_PLACE and redis.call('exists', job) == 1 then
    redis.call('hset', job, 'origin', p, 'status', 'queued')
    redis.call('rpush', RQ_QUEUE .. p, t)
  end
end
local function tokens_used(d)
  local minute = math.floor(now_ms / 60000)
  local this = tonumber(redis.call('get', dk(d, 'tpm:' .. minute)) or '0')
  local last = tonumber(redis.call('get', dk(d, 'tpm:' .. (minute - 1))) or '0')
  -- A sliding minute: the last minute's tokens, less the part of it that has passed.
  return this + last * (1 - (now_ms % 60000) / 60000)
end
-- Take waiting tasks into d while it has room: strict priority, then fair share, then FIFO.
local function dispatch(d, budget, granted)
  lapse(d)
  local c = conf(d)
  if c.cap <= 0 or not c.enabled then return end
  local room = c.cap
  local h = redis.call('hmget', dk(d, 'health'), 'state', 'until')
  if h[1] == 'open' then
    if now_ms < tonumber(h[2]) then return end
    redis.call('hset', dk(d, 'health'), 'state', 'half')
    h[1] = 'half'
  end
  if h[1] == 'half' then room = 1 end  -- one probe at a time
  local in_flight = redis.call('zcard', dk(d, 'holders'))
  local rpm_room = math.huge
  if c.rpm > 0 then
    redis.call('zremrangebyscore', dk(d, 'rpm'), '-inf', now_ms - 60000)
    rpm_room = c.rpm - redis.call('zcard', dk(d, 'rpm'))
  end
  if c.tpm > 0 and tokens_used(d) >= c.tpm then return end
  while in_flight < room and budget > 0 and rpm_room > 0 do
    local f, tag, p, fb = nil, nil, nil, false
    for _, prio in ipairs(PRIOS) do
      local limit = room
      if prio ~= 'high' and room > 1 then limit = room - c.high end
      if in_flight < limit then
        local bulk_room = in_flight < room - c.bulk
        f, tag = pick(d, prio, false, bulk_room)
        if not f then
          f, tag = pick(d, prio, true, bulk_room)
          fb = f ~= nil
        end
        if f then p = prio break end
      end
    end
    if not f then return end
    local popped = redis.call('zpopmin', line(f, p))
    local t = popped[1]
    local weight = tonumber(redis.call('hget', meta(f), 'weight') or '1')
    local finish = tag + 1 / math.max(1, weight)
    redis.call('set', dk(d, 'vt:' .. p), tag)
    redis.call('hset', dk(d, 'finish:' .. p), f, finish)
    local r = ring(d, p, fb)
    if redis.call('zcard', line(f, p)) > 0 then
      redis.call('zadd', r, finish, f)
    else
      redis.call('zrem', r, f)
    end
    grant(d, f, p, t, c)
    table.insert(granted, t)
    table.insert(granted, d)
    in_flight = in_flight + 1
    budget = budget - 1
    rpm_room = rpm_room - 1
  end
end
local function busy(d)
  local c = conf(d)
  if c.cap <= 0 then return math.huge end
  return redis.call('zcard', dk(d, 'holders')) / c.cap
end
-- Cool d down; the flows whose every primary is down now move to their fallbacks.
local function open(d, ms, reason, granted)
  local h = redis.call('hmget', dk(d, 'health'), 'state', 'until')
  local until_ms = now_ms + ms
  if h[1] == 'open' and tonumber(h[2]) > until_ms then until_ms = tonumber(h[2]) end
  redis.call('hset', dk(d, 'health'), 'state', 'open', 'until', until_ms, 'reason', reason,
    'fails', 0, 'oks', 0, 'window', now_ms, 'last_cooldown', ms)
  redis.call('hincrby', dk(d, 'health'), 'cooldowns', 1)
  for _, f in ipairs(redis.call('smembers', dk(d, 'flows'))) do
    if redis.call('exists', meta(f)) == 0 then
      redis.call('srem', dk(d, 'flows'), f)
    else
      for _, p in ipairs(PRIOS) do
        if redis.call('zcard', line(f, p)) > 0 then
          for _, fd in ipairs(join(f, p)) do dispatch(fd, 64, granted) end
        end
      end
    end
  end
end
"""

# ARGV after the prelude: task, flow, priority, arrival (µs), app, weight, bulk, grant TTL (ms),
# avoid, in place ("1": a worker holding the task takes it now, its job not pushed), the number
# of primaries, then 7 values per primary (name, capacity, reserved for high,
# bulk reserve, routing weight, rpm, tpm; enabled is the sign of the capacity), the number of
# fallbacks and theirs. Returns the deployment that holds the task now, or false (it waits).
_SUBMIT = LuaScript(
    _PRELUDE
    + r"""
local t, f, p, arrival = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local app, weight, bulk, grant_ttl, avoid = ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
if ARGV[13] == '1' then IN_PLACE = t end
local function targets(at)
  local n, list, names = tonumber(ARGV[at]), {}, {}
  for i = 0, n - 1 do
    local base = at + 1 + i * 7
    local d, cap = ARGV[base], tonumber(ARGV[base + 1])
    redis.call('hset', dk(d, 'conf'), 'cap', math.abs(cap), 'high', ARGV[base + 2],
      'bulk', ARGV[base + 3], 'rpm', ARGV[base + 5], 'tpm', ARGV[base + 6],
      'enabled', cap > 0 and '1' or '0', 'grant_ttl', grant_ttl)
    redis.call('sadd', DEPS, d)
    table.insert(list, {d, tonumber(ARGV[base + 4])})
    table.insert(names, d)
  end
  return list, table.concat(names, ','), at + 1 + n * 7
end
local primaries, pnames, next_at = targets(14)
local fallbacks, fnames = targets(next_at)
redis.call('hset', meta(f), 'app', app, 'weight', weight, 'primaries', pnames,
  'fallbacks', fnames, 'bulk', bulk)
redis.call('pexpire', meta(f), 7 * 86400 * 1000)
for _, target in ipairs(primaries) do redis.call('sadd', dk(target[1], 'flows'), f) end
-- Holding a deployment already (pushed again: a retry's turn, a new priority): its job goes
-- on the queue of its priority now.
local gd = grant_of(t)
if gd and redis.call('zscore', dk(gd, 'holders'), t) then
  for _, q in ipairs(PRIOS) do redis.call('lrem', RQ_QUEUE .. q, 0, t) end
  if IN_PLACE then return gd end
  local job = RQ_JOB .. t
  if redis.call('exists', job) == 1 then
    redis.call('hset', job, 'origin', p, 'status', 'queued')
    redis.call('rpush', RQ_QUEUE .. p, t)
  end
  return gd
end
local wf, wp = waiting_of(t)
if wf then
  redis.call('zrem', line(wf, wp), t)
  redis.call('hdel', waiting(wp), t)
end
redis.call('zadd', line(f, p), arrival, t)
redis.call('hset', waiting(p), t, f)
local candidates = join(f, p)
-- The least busy first (in flight against capacity, by weight); the one to avoid last.
local weights = {}
for _, target in ipairs(primaries) do weights[target[1]] = target[2] end
local order = {}
for _, d in ipairs(candidates) do
  local score = busy(d) / math.max(1, weights[d] or 1)
  if d == avoid then score = score + 1e9 end
  table.insert(order, {d, score})
end
table.sort(order, function(a, b) return a[2] < b[2] end)
local granted = {}
for _, entry in ipairs(order) do
  dispatch(entry[1], 64, granted)
  local held = grant_of(t)
  if held then return held end
end
if IN_PLACE then
  -- No room now: it does not wait here (its worker sends it back to its line).
  redis.call('zrem', line(f, p), t)
  redis.call('hdel', waiting(p), t)
end
return false
"""
)

# ARGV after the prelude: task, deployment, outcome, Retry-After (ms, 0: none), tokens used,
# cooldown (ms), most cooldown (ms), failure window (ms), failures that may open it, the share
# of calls failing that opens it, the reason. Returns what was dispatched (task, deployment)*.
_RELEASE = LuaScript(
    _PRELUDE
    + r"""
local t, d, outcome = ARGV[4], ARGV[5], ARGV[6]
local retry_after, tokens, cooldown = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local cooldown_max, window, min_fails = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local ratio, reason = tonumber(ARGV[13]), ARGV[14]
local granted = {}
unhold(d, t)
if tokens > 0 then
  local minute = dk(d, 'tpm:' .. math.floor(now_ms / 60000))
  redis.call('incrby', minute, tokens)
  redis.call('pexpire', minute, 120000)
end
local hk = dk(d, 'health')
local h = redis.call('hmget', hk, 'state', 'window', 'fails', 'oks', 'last_cooldown')
local state = h[1] or 'closed'
if outcome ~= 'unused' and (not h[2] or now_ms - tonumber(h[2]) > window) then
  redis.call('hset', hk, 'window', now_ms, 'fails', 0, 'oks', 0)
  h[3], h[4] = '0', '0'
end
if outcome == 'ok' then
  redis.call('hincrby', hk, 'oks', 1)
  if state == 'half' then redis.call('hset', hk, 'state', 'closed') end
elseif outcome == 'refused' or outcome == 'unreachable' then
  redis.call('lpush', dk(d, 'failures'), now_ms .. '\t' .. reason)
  redis.call('ltrim', dk(d, 'failures'), 0, 19)
  local last = tonumber(h[5] or cooldown)
  local ms = math.max(cooldown, retry_after)
  if state == 'half' then ms = math.min(cooldown_max, math.max(ms, last * 2)) end
  open(d, ms, reason, granted)
elseif outcome == 'failed' then
  redis.call('lpush', dk(d, 'failures'), now_ms .. '\t' .. reason)
  redis.call('ltrim', dk(d, 'failures'), 0, 19)
  local fails = redis.call('hincrby', hk, 'fails', 1)
  local oks = tonumber(h[4] or '0')
  if state == 'half' then
    -- The probe failed: longer each time, up to the most.
    local last = tonumber(h[5] or cooldown)
    open(d, math.min(cooldown_max, math.max(cooldown, last * 2)), reason, granted)
  elseif fails >= min_fails and fails / (fails + oks) >= ratio then
    open(d, cooldown, reason, granted)
  end
end
dispatch(d, 256, granted)
return granted
"""
)

# ARGV after the prelude: task, deployment, TTL (ms). The running attempt keeps its place (taken
# again if it lapsed: the answer is being generated, whatever Redis forgot).
_RENEW = LuaScript(
    _PRELUDE
    + r"""
local t, d, ttl = ARGV[4], ARGV[5], tonumber(ARGV[6])
redis.call('zadd', dk(d, 'holders'), now_ms + ttl, t)
if not redis.call('hget', GRANTS, t) then
  local f = ARGV[7]
  redis.call('hset', GRANTS, t, d .. '\t' .. f)
  redis.call('hincrby', dk(d, 'inflight'), f, 1)
end
return 1
"""
)

# ARGV after the prelude: task. The task stops waiting (cancelled, expired, ended): it leaves
# its line, and a deployment it held but had not started on takes its next waiter.
_FORGET = LuaScript(
    _PRELUDE
    + r"""
local t = ARGV[4]
local wf, wp = waiting_of(t)
if wf then
  redis.call('zrem', line(wf, wp), t)
  redis.call('hdel', waiting(wp), t)
end
local granted = {}
local gd = grant_of(t)
if gd then
  for _, q in ipairs(PRIOS) do redis.call('lrem', RQ_QUEUE .. q, 0, t) end
  unhold(gd, t)
  dispatch(gd, 64, granted)
end
return granted
"""
)

# ARGV after the prelude: task, priority. A waiting task moves to another priority's line
# (aging, an operator), keeping its place in arrival order; one holding a deployment moves to
# that priority's queue. 1 when it was found.
_MOVE = LuaScript(
    _PRELUDE
    + r"""
local t, p = ARGV[4], ARGV[5]
local wf, wp = waiting_of(t)
if wf then
  local arrival = redis.call('zscore', line(wf, wp), t)
  redis.call('zrem', line(wf, wp), t)
  redis.call('hdel', waiting(wp), t)
  redis.call('zadd', line(wf, p), arrival or now_ms * 1000, t)
  redis.call('hset', waiting(p), t, wf)
  local granted = {}
  for _, d in ipairs(join(wf, p)) do dispatch(d, 64, granted) end
  return 1
end
local gd = grant_of(t)
if gd then
  local moved = 0
  for _, q in ipairs(PRIOS) do moved = moved + redis.call('lrem', RQ_QUEUE .. q, 0, t) end
  if moved > 0 then
    redis.call('hset', RQ_JOB .. t, 'origin', p)
    redis.call('rpush', RQ_QUEUE .. p, t)
  end
  return 1
end
return 0
"""
)

# Every deployment takes what it has room for (the backstop for leases that lapsed, cooldowns
# that ended and limits per minute that freed). Returns what was dispatched.
_DISPATCH_ALL = LuaScript(
    _PRELUDE
    + r"""
local granted = {}
for _, d in ipairs(redis.call('smembers', DEPS)) do dispatch(d, 256, granted) end
return granted
"""
)


def _base_args() -> list[Any]:
    return [key("cap", ""), RQ_QUEUE_PREFIX, RQ_JOB_PREFIX]


def _target_args(targets: tuple[Target, ...]) -> list[Any]:
    args: list[Any] = [len(targets)]
    for target in targets:
        capacity = max(1, target.capacity)
        args += [
            target.name,
            capacity if target.enabled else -capacity,
            max(0, min(target.reserved_for_high, capacity - 1)),
            max(0, min(target.bulk_reserve, capacity - 1)),
            max(1, target.weight),
            target.rpm_limit or 0,
            target.tpm_limit or 0,
        ]
    return args


def _grant_ttl_ms() -> int:
    return math.ceil(float(settings.PLATFORM["DEPLOYMENT_GRANT_TTL_S"]) * 1000)


def _submit_args(
    task_id: str, route: Route, priority: str, arrival_s: float, avoid: str, in_place: bool
) -> list[Any]:
    return [
        *_base_args(),
        task_id,
        route.flow,
        priority,
        # Microseconds: answers that arrive in the same millisecond keep their order.
        int(arrival_s * 1_000_000),
        route.app,
        max(1, route.share_weight),
        "1" if route.bulk else "0",
        _grant_ttl_ms(),
        avoid,
        "1" if in_place else "0",
        *_target_args(route.primaries),
        *_target_args(route.fallbacks),
    ]


def capacity_submit(
    *,
    task_id: str,
    route: Route,
    priority: str,
    arrival_s: float,
    avoid: str = "",
    in_place: bool = False,
) -> str | None:
    """Join the task's line and let its deployments take what they have room for; the
    deployment that holds it now (its job is on its queue), or None while it waits.
    `in_place`: a worker that holds the task (it lost its hold) asks for one: if a deployment
    takes it, the job is not pushed again, the worker runs it; if none can, the task is left
    out of the line (the worker sends it back to wait, once it let go of the task's lock)."""
    args = _submit_args(task_id, route, priority, arrival_s, avoid, in_place)
    reply = _SUBMIT(sync_client(), args=args)
    return reply.decode() if isinstance(reply, bytes) else None


def capacity_submit_in(
    pipe: Any, *, task_id: str, route: Route, priority: str, arrival_s: float, avoid: str = ""
) -> None:
    """`capacity_submit` queued in a pipeline (after the job's hash, in the same round trip)."""
    _SUBMIT.queue(pipe, args=_submit_args(task_id, route, priority, arrival_s, avoid, False))


def _pairs(reply: Any) -> list[tuple[str, str]]:
    items = [item.decode() if isinstance(item, bytes) else str(item) for item in reply or []]
    return list(zip(items[::2], items[1::2], strict=True))


def capacity_release(
    *,
    task_id: str,
    deployment: str,
    outcome: CallOutcome,
    retry_after_s: float | None = None,
    tokens: int = 0,
    reason: str = "",
) -> list[tuple[str, str]]:
    """Give the deployment back (and tell its health how the call went); it takes its next
    waiters at once. Returns what it took: (task, deployment) pairs."""
    platform = settings.PLATFORM
    args = [
        *_base_args(),
        task_id,
        deployment,
        outcome.value,
        math.ceil((retry_after_s or 0) * 1000),
        max(0, tokens),
        math.ceil(float(platform["DEPLOYMENT_COOLDOWN_S"]) * 1000),
        math.ceil(float(platform["DEPLOYMENT_COOLDOWN_MAX_S"]) * 1000),
        math.ceil(float(platform["DEPLOYMENT_FAILURE_WINDOW_S"]) * 1000),
        int(platform["DEPLOYMENT_FAILURES_TO_COOL"]),
        float(platform["DEPLOYMENT_FAILURE_RATIO"]),
        reason[:200],
    ]
    return _pairs(_RELEASE(sync_client(), args=args))


def capacity_renew_in(pipe: Any, *, task_id: str, deployment: str, flow: str, ttl_s: float) -> None:
    """Renew a running attempt's hold on its deployment, in the caller's pipeline."""
    args = [*_base_args(), task_id, deployment, math.ceil(ttl_s * 1000), flow]
    _RENEW.queue(pipe, args=args)


def capacity_configure(target: Target) -> None:
    """Tell the scheduler a deployment's capacity now (an operator changed it): what waits for
    it is dispatched within the new limits at once, and a disabled one takes nothing more."""
    capacity = max(1, target.capacity)
    sync_client().hset(
        key("cap", "d", target.name, "conf"),
        mapping={
            "cap": capacity,
            "high": max(0, min(target.reserved_for_high, capacity - 1)),
            "bulk": max(0, min(target.bulk_reserve, capacity - 1)),
            "rpm": target.rpm_limit or 0,
            "tpm": target.tpm_limit or 0,
            "enabled": "1" if target.enabled else "0",
            "grant_ttl": _grant_ttl_ms(),
        },
    )
    sync_client().sadd(key("cap", "deployments"), target.name)
    capacity_dispatch_all()


def capacity_forget(*, task_id: str) -> list[tuple[str, str]]:
    """The task waits no more (cancelled, expired): out of its line, and a deployment it held
    without having started takes its next waiter."""
    return _pairs(_FORGET(sync_client(), args=[*_base_args(), task_id]))


def capacity_move(*, task_id: str, priority: str) -> bool:
    """Move a waiting task to another priority's line (or its queued job to that queue)."""
    return bool(_MOVE(sync_client(), args=[*_base_args(), task_id, priority]))


def capacity_dispatch_all() -> list[tuple[str, str]]:
    return _pairs(_DISPATCH_ALL(sync_client(), args=_base_args()))


def grants_key() -> str:
    """Task -> the deployment it holds and its flow there ("deployment\tflow")."""
    return key("cap", "grants")


def grant_of(task_id: str) -> tuple[str, str] | None:
    """(deployment, flow) the task holds, if any."""
    value: Any = sync_client().hget(grants_key(), task_id)
    if not value:
        return None
    deployment, _, flow = value.decode().partition("\t")
    return deployment, flow


# Replies capacity_waiting_in queues: any of them true means the task waits for a deployment.
CAPACITY_WAITING_REPLIES = len(PRIORITIES)


def capacity_waiting_in(pipe: Any, task_id: str) -> None:
    """Queue, in a pipeline, whether the task waits in a deployment's line (for the
    reconciler): CAPACITY_WAITING_REPLIES replies. A task a deployment took is held by its job
    (on its queue, or started by a live worker), not by its place in the deployment."""
    for priority in PRIORITIES:
        pipe.hexists(key("cap", "waiting", priority), task_id)


def flow_waiting(flow: str, priorities: tuple[str, ...] = PRIORITIES) -> int:
    """Tasks of one flow (an app's tasks with one route) waiting at these priorities."""
    pipe = sync_client().pipeline(transaction=False)
    for priority in priorities:
        pipe.zcard(key("cap", "f", flow, priority))
    return sum(int(n) for n in pipe.execute())


def waiting_counts() -> dict[str, int]:
    """Tasks waiting for a deployment, by priority, cluster-wide."""
    pipe = sync_client().pipeline(transaction=False)
    for priority in PRIORITIES:
        pipe.hlen(key("cap", "waiting", priority))
    return dict(zip(PRIORITIES, (int(n) for n in pipe.execute()), strict=True))


# --- what operators see -----------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentLoad:
    """One deployment now: in flight against capacity, waiting by priority and by app, health."""

    name: str
    capacity: int
    in_flight: int
    waiting: dict[str, int]
    waiting_by_app: dict[str, int]
    in_flight_by_app: dict[str, int]
    state: str  # "closed" (healthy), "open" (cooling down), "half" (probing)
    cooldown_left_s: float
    cooldown_reason: str
    cooldowns: int
    recent_failures: list[tuple[float, str]]
    tokens_last_minute: int


def deployment_load(name: str) -> DeploymentLoad:
    client: Any = sync_client()
    prefix = key("cap", "d", name, "")
    now_ms = time.time() * 1000
    conf = client.hgetall(prefix + "conf")
    capacity = int(conf.get(b"cap", 0))
    in_flight = int(client.zcount(prefix + "holders", f"({int(now_ms)}", "+inf"))
    waiting: dict[str, int] = {}
    by_app: dict[str, int] = {}
    flows: dict[str, str] = {}

    def app_of(flow: str) -> str:
        if flow not in flows:
            flows[flow] = (client.hget(key("cap", "f", flow), "app") or b"").decode()
        return flows[flow]

    for priority in PRIORITIES:
        total = 0
        members = {
            *client.zrange(prefix + f"ring:{priority}", 0, -1),
            *client.zrange(prefix + f"fring:{priority}", 0, -1),
        }
        for flow_bytes in members:
            flow = flow_bytes.decode()
            count = int(client.zcard(key("cap", "f", flow, priority)))
            total += count
            if count:
                by_app[app_of(flow)] = by_app.get(app_of(flow), 0) + count
        waiting[priority] = total
    running: dict[str, int] = {}
    for flow_bytes, count in client.hgetall(prefix + "inflight").items():
        app = app_of(flow_bytes.decode())
        running[app] = running.get(app, 0) + int(count)
    health = client.hgetall(prefix + "health")
    state = health.get(b"state", b"closed").decode()
    until = float(health.get(b"until", 0))
    if state == "open" and until <= now_ms:
        state = "half"
    failures = []
    for entry in client.lrange(prefix + "failures", 0, 19):
        at, _, why = entry.decode().partition("\t")
        failures.append((float(at) / 1000, why))
    minute = int(now_ms // 60000)
    this, last = client.mget([prefix + f"tpm:{minute}", prefix + f"tpm:{minute - 1}"])
    fraction = (now_ms % 60000) / 60000
    tokens = int(this or 0) + int(int(last or 0) * (1 - fraction))
    return DeploymentLoad(
        name=name,
        capacity=capacity,
        in_flight=in_flight,
        waiting=waiting,
        waiting_by_app=by_app,
        in_flight_by_app=running,
        state=state,
        cooldown_left_s=max(0.0, (until - now_ms) / 1000) if state == "open" else 0.0,
        cooldown_reason=health.get(b"reason", b"").decode(),
        cooldowns=int(health.get(b"cooldowns", 0)),
        recent_failures=failures,
        tokens_last_minute=tokens,
    )


def deployments_known() -> list[str]:
    names: Any = sync_client().smembers(key("cap", "deployments"))
    return sorted(name.decode() for name in names)


# An app counts as over its share past this many times it: a few answers beyond it are an app
# at work, not the flood that loads the platform.
FAIR_SHARE_SLACK = 2.0


def app_over_share(*, route: Route) -> bool:
    """Whether the app asks more of its deployments than its fair share: its tasks in flight
    and waiting against the part of their capacity its weight entitles it to among the apps
    active there now. Read under load only (apps.scheduling.tasks.policy)."""
    client: Any = sync_client()
    demand = 0
    share = 0.0
    pipe = client.pipeline(transaction=False)
    for priority in PRIORITIES:
        pipe.zcard(key("cap", "f", route.flow, priority))
    demand += sum(int(n) for n in pipe.execute())
    for target in route.primaries:
        prefix = key("cap", "d", target.name, "")
        active: set[bytes] = set(client.hkeys(prefix + "inflight"))
        for priority in PRIORITIES:
            active.update(client.zrange(prefix + f"ring:{priority}", 0, -1))
        demand += int(client.hget(prefix + "inflight", route.flow) or 0)
        weights = 0
        for flow in active | {route.flow.encode()}:
            weights += int(client.hget(key("cap", "f", flow.decode()), "weight") or 1)
        share += target.capacity * max(1, route.share_weight) / max(1, weights)
    return demand > share * FAIR_SHARE_SLACK
