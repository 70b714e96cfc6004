/**
 * Callers of a process: one object per call that is at once the queued envelope, the `From` handed to
 * `handleCall` and the call's deadline entry. An interrupted caller is noticed through its fiber's exit (one
 * observer per caller fiber, for its life), not through a canceler on each call: Effect wraps a canceler in an
 * interruption region (a mask, a match, two runtime-flag updates) that would cost every call.
 */
import * as Duration from "effect/Duration"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as Scheduler from "effect/Scheduler"
import * as Suspend from "../Suspend.js"
import type { DeadlineList, Entry } from "./deadlines.js"
import type { ProcessImpl } from "./engine.js"
import { CALL, type SYSTEM } from "./mailbox.js"
import * as M from "./model.js"

/** Errors a call can fail with. */
export type CallError = M.CallTimeout | M.ProcessExited<unknown>

export const PENDING = 0
export const REPLIED = 1
export const ABANDONED = 2

/** A waiting caller. */
export class FromImpl implements M.From<unknown>, Entry {
  declare readonly _A: (_: unknown) => void
  status: typeof PENDING | typeof REPLIED | typeof ABANDONED = PENDING
  /** The handler returned `noreply`: the caller is in the process's unanswered list until `replyTo` or exit. */
  awaitingLater = false
  /** Links of the process's unanswered list (intrusive: keeping a caller allocates nothing). */
  prevUnanswered: FromImpl | undefined = undefined
  nextUnanswered: FromImpl | undefined = undefined
  deadline = 0
  list: DeadlineList | undefined = undefined
  prev: Entry | undefined = undefined
  next: Entry | undefined = undefined
  /** The call's timeout in millis (for `CallTimeout`). */
  timeoutMillis = 0
  /** The caller fiber's slot while this call is what it waits for. */
  slot: CallerSlot | undefined = undefined
  constructor(
    readonly kind: typeof CALL | typeof SYSTEM,
    readonly id: number,
    readonly process: ProcessImpl,
    readonly request: unknown,
    readonly resume: (effect: Effect.Effect<unknown, unknown>) => void
  ) {}

  /** The caller no longer waits for this call: empty its slot. */
  leaveSlot(): void {
    const slot = this.slot
    if (slot !== undefined) {
      if (slot.from === this) slot.from = undefined
      this.slot = undefined
    }
  }

  /** Answer once; false if already answered or the caller gave up. */
  settle(result: Effect.Effect<unknown, unknown>): boolean {
    if (this.status !== PENDING) return false
    this.status = REPLIED
    const slot = this.slot
    if (slot !== undefined) this.leaveSlot()
    if (this.list !== undefined) this.list.unlink(this)
    if (this.awaitingLater) this.process.forget(this)
    const eager = this.process.eager
    if (eager !== undefined && eager.running && slot !== undefined) resumeOn(slot.fiber, eager, this.resume, result)
    else this.resume(result)
    return true
  }

  /** The caller gave up (timeout or interruption): forget it, and tell the behaviour if it kept it. */
  abandon(): void {
    if (this.status !== PENDING) return
    this.status = ABANDONED
    if (this.slot !== undefined) this.leaveSlot()
    if (this.list !== undefined) this.list.unlink(this)
    if (this.awaitingLater) {
      this.process.forget(this)
      this.process.notifyAbandoned(this)
    }
  }

  /** The deadline passed (called by the timer fiber, already unlinked). */
  expire(): void {
    if (this.status !== PENDING) return
    this.abandon()
    this.resume(
      Exit.fail(new M.CallTimeout({ process: this.process.name, timeout: Duration.millis(this.timeoutMillis) }))
    )
  }

  /** The handler did not answer: the caller waits for `replyTo` or fails at exit. */
  keepUnanswered(): void {
    if (this.status === PENDING && !this.awaitingLater) this.process.keep(this)
  }
}

/**
 * The call a fiber waits for. A fiber waits in one call at a time, so one slot and one exit observer per caller
 * fiber are enough: when the fiber ends with a call still in its slot (it was interrupted: `Fiber.interrupt`,
 * the losing side of a timeout or race, a closed scope), the observer abandons that call.
 */
class CallerSlot {
  from: FromImpl | undefined = undefined
  constructor(readonly fiber: Fiber.RuntimeFiber<unknown, unknown>) {}
  abandonHeld(): void {
    const from = this.from
    if (from !== undefined) from.abandon()
  }
}

/**
 * The slot of every live fiber that made a call; the fiber's exit observer removes its entry. A Map emptied at
 * exit, not a WeakMap: a `runPromise` per request makes a new caller fiber per call, and a WeakMap entry per fiber
 * costs the garbage collector far more (Effect's fiber objects are not ours to add a field to).
 */
const slots = new Map<Fiber.RuntimeFiber<unknown, unknown>, CallerSlot>()

/** How many fibers hold a caller slot (for tests: the entries go with their fibers). */
export const callerFiberCount = (): number => slots.size

let lastCaller: Fiber.RuntimeFiber<unknown, unknown> | undefined = undefined
let lastSlot: CallerSlot | undefined = undefined

/** Put `from` in the current fiber's slot (the register function of a call runs on the caller's fiber). */
const watchCaller = (from: FromImpl): void => {
  const current = Fiber.getCurrentFiber()
  if (current._tag === "None") return
  const caller = current.value
  // A caller in a loop calls from the same fiber every time: skip the WeakMap lookup then.
  let slot = caller === lastCaller ? lastSlot : slots.get(caller)
  if (slot === undefined) {
    const created = new CallerSlot(caller)
    slots.set(caller, created)
    caller.addObserver(() => {
      slots.delete(caller)
      if (lastSlot === created) {
        lastCaller = undefined
        lastSlot = undefined
      }
      created.abandonHeld()
    })
    slot = created
  }
  lastCaller = caller
  lastSlot = slot
  if (slot.from !== undefined) {
    // The fiber left that call without its answer (it was interrupted and now calls again, in a finalizer).
    slot.abandonHeld()
  }
  slot.from = from
  from.slot = slot
}

/**
 * Effect 3's fiber runtime keeps its scheduler in the `currentScheduler` field (a cache of its FiberRef, read
 * when the fiber is woken); checked on the first caller fiber, and the redirection is skipped if it is not there.
 */
let canRedirect: boolean | undefined = undefined

/**
 * Resume a waiting caller fiber on the process's eager scheduler while that scheduler is running (the process is
 * answering from its own run): the wake-up is queued behind the process's task in the same scheduler run, instead
 * of a microtask of the caller's scheduler later. Only the scheduling of this one wake-up changes: the field is
 * set back before this returns (the fiber's FiberRef is never touched), so the caller runs on with its own
 * scheduler. The caller fiber is suspended in the call (or is the running fiber whose call this is), so nothing
 * reads the field meanwhile except its own `tell`.
 */
const resumeOn = (
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  scheduler: Scheduler.Scheduler,
  resume: (effect: Effect.Effect<unknown, unknown>) => void,
  result: Effect.Effect<unknown, unknown>
): void => {
  if (canRedirect === undefined) canRedirect = Object.prototype.hasOwnProperty.call(fiber, "currentScheduler")
  if (!canRedirect) return resume(result)
  const writable = fiber as unknown as { currentScheduler: Scheduler.Scheduler }
  const own = writable.currentScheduler
  writable.currentScheduler = scheduler
  try {
    resume(result)
  } finally {
    writable.currentScheduler = own
  }
}

const DEFAULT_TIMEOUT_MILLIS = 5000

// The last timeout decoded: callers usually pass the same value on every call (a constant or a config field),
// so a call decodes nothing.
let lastTimeout: unknown = undefined
let lastTimeoutMillis = DEFAULT_TIMEOUT_MILLIS

const timeoutMillis = (options: M.CallOptions | undefined): number => {
  const timeout = options?.timeout
  if (timeout === undefined) return DEFAULT_TIMEOUT_MILLIS
  if (timeout === lastTimeout) return lastTimeoutMillis
  const millis = Duration.toMillis(Duration.decode(timeout))
  lastTimeout = timeout
  lastTimeoutMillis = millis
  return millis
}

/**
 * Send a call or system request and wait for the answer. One `Suspend` registration without a canceler,
 * no fork: the caller object is the envelope and the deadline entry, and the caller's fiber exit abandons it.
 */
export const request = (
  proc: ProcessImpl,
  kind: typeof CALL | typeof SYSTEM,
  payload: unknown,
  options: M.CallOptions | undefined
): Effect.Effect<unknown, CallError> => {
  let millis: number
  try {
    millis = timeoutMillis(options)
  } catch (error) {
    return Effect.die(error)
  }
  return Suspend.make<unknown, unknown>((resume) => {
    if (proc.exitReason !== undefined) {
      resume(Effect.fail(proc.exitedError(proc.exitReason)))
      return
    }
    const from = new FromImpl(kind, proc.nextFromId++, proc, payload, resume)
    watchCaller(from)
    if (millis !== Infinity) proc.arm(from, millis)
    proc.push(from)
  }) as Effect.Effect<unknown, CallError>
}

/**
 * A call whose caller is a Promise instead of a fiber: the same caller object (envelope, `From`, deadline entry),
 * mailbox and replies, but answering settles the Promise directly, so no fiber is created or resumed per call.
 * Every answer is an Exit (`Exit.succeed` from a reply, `Exit.fail` from a timeout or the exit); a typed failure
 * rejects with the error itself. A Promise cannot be interrupted: its caller gives up only at the timeout.
 */
export const requestPromise = (
  proc: ProcessImpl,
  payload: unknown,
  options: M.CallOptions | undefined
): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const millis = timeoutMillis(options)
    if (proc.exitReason !== undefined) {
      reject(proc.exitedError(proc.exitReason))
      return
    }
    const from = new FromImpl(CALL, proc.nextFromId++, proc, payload, (result) => {
      if (!Exit.isExit(result)) reject(new Error("Process call answered with an Effect that is not an Exit"))
      else if (result._tag === "Success") resolve(result.value)
      else reject(Cause.squash(result.cause))
    })
    if (millis !== Infinity) proc.arm(from, millis)
    proc.push(from)
  })
