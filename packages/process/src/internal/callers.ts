/**
 * Callers of a process: one object per call that is at once the queued envelope, the `From` handed to
 * `handleCall` and the call's deadline entry. An interrupted caller is noticed through its fiber's exit (one
 * observer per fiber, a slot holding the call it waits in), not through a canceler per call: Effect wraps an
 * `Effect.async` canceler in an interruption region (an uninterruptible mask, a match and two runtime-flag
 * updates, each a run-loop step), which cost more per call than the rest of the call path.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Effectable from "effect/Effectable"
import * as Fiber from "effect/Fiber"
import type { DeadlineList, Entry } from "./deadlines.js"
import type { ProcessImpl } from "./engine.js"
import type { CALL, SYSTEM } from "./mailbox.js"
import * as M from "./model.js"

/** Errors a call can fail with. */
export type CallError = M.CallTimeout | M.ProcessExited<unknown>

export const PENDING = 0
export const REPLIED = 1
export const ABANDONED = 2

/**
 * A waiting caller. As an Effect it is the canceler of the caller's `Effect.async` (it runs only if the caller
 * is interrupted): the call needs no separate canceler object.
 */
export class FromImpl extends Effectable.Class<void> implements M.From<unknown>, Entry {
  declare readonly _A: (_: unknown) => void
  status: typeof PENDING | typeof REPLIED | typeof ABANDONED = PENDING
  /** The handler returned `noreply`: the caller is in `unanswered` until `replyTo` or exit. */
  awaitingLater = false
  deadline = 0
  list: DeadlineList | undefined = undefined
  prev: Entry | undefined = undefined
  next: Entry | undefined = undefined
  /** The call's timeout in millis (for `CallTimeout`). */
  timeoutMillis = 0
  /** The caller fiber's slot while the call waits in it. */
  slot: CallerSlot | undefined = undefined
  constructor(
    readonly kind: typeof CALL | typeof SYSTEM,
    readonly id: number,
    readonly process: ProcessImpl,
    readonly request: unknown,
    readonly resume: (effect: Effect.Effect<unknown, unknown>) => void
  ) {
    super()
  }

  /** The caller was interrupted. */
  commit(): Effect.Effect<void> {
    return Effect.sync(() => this.abandon())
  }

  /** Answer once; false if already answered or the caller gave up. */
  settle(result: Effect.Effect<unknown, unknown>): boolean {
    if (this.status !== PENDING) return false
    this.status = REPLIED
    this.leaveSlot()
    if (this.list !== undefined) this.list.unlink(this)
    if (this.awaitingLater) {
      this.awaitingLater = false
      this.process.unanswered.delete(this)
    }
    this.resume(result)
    return true
  }

  /** The caller gave up (timeout or interruption): forget it, and tell the behaviour if it kept it. */
  abandon(): void {
    if (this.status !== PENDING) return
    this.status = ABANDONED
    this.leaveSlot()
    if (this.list !== undefined) this.list.unlink(this)
    if (this.awaitingLater) {
      this.awaitingLater = false
      this.process.unanswered.delete(this)
      this.process.notifyAbandoned(this)
    }
  }

  /** The call is over: its caller fiber's slot no longer holds it. */
  leaveSlot(): void {
    const slot = this.slot
    if (slot !== undefined) {
      if (slot.from === this) slot.from = undefined
      this.slot = undefined
    }
  }

  /** The deadline passed (called by the timer fiber, already unlinked). */
  expire(): void {
    if (this.status !== PENDING) return
    this.abandon()
    this.resume(Effect.fail(new M.CallTimeout({ process: this.process.name, timeout: Duration.millis(this.timeoutMillis) })))
  }

  /** The handler did not answer: the caller waits for `replyTo` or fails at exit. */
  keepUnanswered(): void {
    if (this.status === PENDING && !this.awaitingLater) {
      this.awaitingLater = true
      this.process.unanswered.add(this)
    }
  }
}

/**
 * The call a fiber waits in. A fiber waits in at most one call at a time (of any process), so one slot and one
 * exit observer per fiber are enough. When the fiber ends with a call still in its slot (it was interrupted:
 * `Fiber.interrupt`, the losing side of `Effect.timeout` or a race, a closed scope), the observer abandons it; a
 * new call from a fiber whose slot is still taken (an interrupted caller calling again in a finalizer) abandons
 * the old one first. The slot is emptied when the call ends, so it holds on to no process after that.
 */
class CallerSlot {
  from: FromImpl | undefined = undefined

  abandonHeld(): void {
    const from = this.from
    this.from = undefined
    if (from !== undefined) from.abandon()
  }
}

/** Every fiber that made a call, with its slot (weakly held: an entry goes with its fiber). */
const callerSlots = new WeakMap<object, CallerSlot>()

/** Puts `from` in the current fiber's slot; false when there is no current fiber (then a canceler is used). */
const watchCaller = (from: FromImpl): boolean => {
  const current = Fiber.getCurrentFiber()
  if (current._tag === "None") return false
  const caller = current.value
  let slot = callerSlots.get(caller)
  if (slot === undefined) {
    const created = new CallerSlot()
    callerSlots.set(caller, created)
    caller.addObserver(() => created.abandonHeld())
    slot = created
  } else {
    slot.abandonHeld()
  }
  slot.from = from
  from.slot = slot
  return true
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
 * Send a call or system request and wait for the answer. One `Effect.async` registration, no fork, no canceler:
 * the caller object is the envelope and the deadline entry, and the caller fiber's exit abandons it.
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
  return Effect.async<unknown, unknown>((resume) => {
    if (proc.exitReason !== undefined) {
      resume(Effect.fail(proc.exitedError(proc.exitReason)))
      return
    }
    const from = new FromImpl(kind, proc.nextFromId++, proc, payload, resume)
    if (millis !== Infinity) proc.arm(from, millis)
    // The register function runs on the caller's fiber.
    const watched = watchCaller(from)
    proc.push(from)
    return watched ? undefined : from
  }) as Effect.Effect<unknown, CallError>
}
