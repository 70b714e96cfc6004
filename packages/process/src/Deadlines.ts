/**
 * Deadline lists: many timeouts for the price of a few fibers.
 *
 * Entries armed with the same timeout expire in the order they were armed, so each distinct timeout gets one
 * FIFO list and one timer fiber sleeping until the head's deadline. Arming and cancelling are synchronous and
 * cheap (no fiber, no allocation beyond the timer itself). The process core uses them for call timeouts; any
 * behaviour with per-request timeouts (an RPC client's pending replies) can do the same.
 *
 * @example
 * ```ts
 * const deadlines = yield* Deadlines.make
 * const timer = Deadlines.unsafeArm(deadlines, "5 seconds", () => failPending(id))
 * // the reply came in time:
 * Deadlines.unsafeCancel(timer)
 * ```
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { DeadlinesImpl, Timer as TimerImpl } from "./internal/deadlines.js"

/** A set of deadline lists with their timer fibers (stopped when the Scope of `make` closes). */
export interface Deadlines {
  readonly [DeadlinesTypeId]: DeadlinesTypeId
}

/** Symbol marking deadline sets. */
export const DeadlinesTypeId: unique symbol = Symbol.for("@warren/process/Deadlines")
/** Type of `DeadlinesTypeId`. */
export type DeadlinesTypeId = typeof DeadlinesTypeId

/** An armed (or expired, or cancelled) deadline. */
export interface Timer {
  readonly [TimerTypeId]: TimerTypeId
}

/** Symbol marking timers. */
export const TimerTypeId: unique symbol = Symbol.for("@warren/process/Deadlines/Timer")
/** Type of `TimerTypeId`. */
export type TimerTypeId = typeof TimerTypeId

class PublicDeadlines extends DeadlinesImpl implements Deadlines {
  readonly [DeadlinesTypeId]: DeadlinesTypeId = DeadlinesTypeId
}

class PublicTimer extends TimerImpl implements Timer {
  readonly [TimerTypeId]: TimerTypeId = TimerTypeId
  owner: PublicDeadlines | undefined = undefined
}

/**
 * A deadline set whose timer fibers run with the current runtime (its Clock: `TestClock` in tests) and stop
 * when the current Scope closes; timers still armed then never fire.
 */
export const make: Effect.Effect<Deadlines, never, Scope.Scope> = Effect.flatMap(
  Effect.runtime<never>(),
  (runtime) =>
    Effect.flatMap(Effect.clock, (clock) => {
      const deadlines = new PublicDeadlines(clock, runtime)
      return Effect.as(Effect.addFinalizer(() => deadlines.shutdown()), deadlines)
    })
)

/**
 * Run `onExpire` (synchronously, in the list's timer fiber) once `timeout` has passed, unless cancelled first.
 * An infinite timeout gives a timer that never fires. `onExpire` must not throw.
 */
export const unsafeArm = (deadlines: Deadlines, timeout: Duration.DurationInput, onExpire: () => void): Timer => {
  const owner = deadlines as PublicDeadlines
  const timer = new PublicTimer(onExpire)
  const millis = Math.max(0, Duration.toMillis(Duration.decode(timeout)))
  if (millis !== Infinity) {
    timer.owner = owner
    owner.arm(timer, millis)
  }
  return timer
}

/** `unsafeArm` as an Effect. */
export const arm = (deadlines: Deadlines, timeout: Duration.DurationInput, onExpire: () => void): Effect.Effect<Timer> =>
  Effect.sync(() => unsafeArm(deadlines, timeout, onExpire))

/** Disarm a timer; true if it was still armed (it will not fire), false if it fired or was cancelled. */
export const unsafeCancel = (timer: Timer): boolean => {
  const impl = timer as PublicTimer
  return impl.owner !== undefined && impl.owner.cancel(impl)
}

/** `unsafeCancel` as an Effect. */
export const cancel = (timer: Timer): Effect.Effect<boolean> => Effect.sync(() => unsafeCancel(timer))

/** Timers armed and not yet fired or cancelled (all lists). */
export const size = (deadlines: Deadlines): number => {
  let n = 0
  for (const list of (deadlines as PublicDeadlines).lists.values()) {
    for (let entry = list.head; entry !== undefined; entry = entry.next) n++
  }
  return n
}
