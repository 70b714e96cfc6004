/**
 * Callers of a process: one object per call that is at once the queued envelope, the `From` handed to
 * `handleCall`, the call's deadline entry and the canceler run if the caller is interrupted.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Effectable from "effect/Effectable"
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
    if (this.list !== undefined) this.list.unlink(this)
    if (this.awaitingLater) {
      this.awaitingLater = false
      this.process.unanswered.delete(this)
      this.process.notifyAbandoned(this)
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
 * Send a call or system request and wait for the answer. One `Effect.async` registration, no fork: the caller
 * object is the envelope, the deadline entry and the canceler.
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
    proc.push(from)
    return from
  }) as Effect.Effect<unknown, CallError>
}
