/**
 * Reconnect policies and the one mechanism that follows them: every loop in warren that reopens something after
 * a failure (the AMQP connection, an RPC client's or server's channel) steps a `Policy` with `make` and sleeps the
 * delay it gives.
 *
 * A policy is a plain Effect `Schedule` fed with the error of each failed attempt: its delays are the waits
 * between attempts, and when it ends the owner gives up. Owners restart the schedule from its initial state after
 * every success (`reset`).
 *
 * @since 0.2.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as ScheduleIntervals from "effect/ScheduleIntervals"

/**
 * A reconnect policy: a Schedule over the errors of failed attempts. Its end means "give up".
 *
 * @since 0.2.0
 */
export type Policy<E = unknown> = Schedule.Schedule<unknown, E>

/**
 * Exponential backoff from `base` (default 100 ms) multiplied by `factor` (default 2) per retry, each delay
 * jittered to 80-120 % (`jitter`, default on; uses the `Random` service) and never more than `max`
 * (default 2 s). Forever.
 *
 * @since 0.2.0
 */
export const exponential = (options?: {
  readonly base?: Duration.DurationInput
  readonly factor?: number
  readonly max?: Duration.DurationInput
  readonly jitter?: boolean
}): Policy => {
  const cap = Schedule.spaced(options?.max ?? DEFAULT_MAX)
  const capped = Schedule.exponential(options?.base ?? "100 millis", options?.factor ?? 2).pipe(Schedule.union(cap))
  // Jitter after capping (so an astronomically large exponential delay never reaches the RNG arithmetic),
  // then cap again so a jittered delay never exceeds `max`.
  return options?.jitter === false ? capped : capped.pipe(Schedule.jittered, Schedule.union(cap))
}

/** The default cap between two attempts. */
const DEFAULT_MAX = "2 seconds"

/**
 * The default policy: exponential from 100 ms, doubling, jittered, capped at 2 s, forever. Whatever the length of
 * an outage, the next attempt after the peer is back comes within 2 s, so a connection and the channels on it
 * serve again within a few seconds of the broker's return; the jitter keeps many clients from retrying in step.
 *
 * @since 0.2.0
 */
export const defaultPolicy: Policy = exponential()

/**
 * Hare's list backoff: wait `delays[0]` before the first retry, `delays[1]` before the second, ... and the
 * last delay for every retry after that, forever. Hare's default is `fromDelays([0, 10, 100, 1000, 5000])`.
 *
 * @since 0.2.0
 */
export const fromDelays = (
  delays: readonly [Duration.DurationInput, ...ReadonlyArray<Duration.DurationInput>]
): Policy => {
  const decoded = delays.map((delay) => Duration.decode(delay))
  return Schedule.forever.pipe(Schedule.addDelay((n) => decoded[Math.min(n, decoded.length - 1)]!))
}

/**
 * Hare's default connection backoff: 0, 10, 100, 1000, then 5000 ms forever.
 *
 * @since 0.2.0
 */
export const hareDefault: Policy = fromDelays([0, 10, 100, 1000, 5000])

/**
 * At most `retries` retries of `policy`, then give up.
 *
 * @since 0.2.0
 */
export const limit = <E>(policy: Policy<E>, retries: number): Policy<E> =>
  policy.pipe(Schedule.intersect(Schedule.recurs(retries)))

/**
 * A policy stepped by its owner, so that the owner can publish the delay (in a status, a log) before sleeping
 * it, and restart the policy after a success.
 *
 * @since 0.2.0
 */
export interface Backoff<in E> {
  /** The delay before the next attempt after `error`, or None when the policy gives up. */
  readonly next: (error: E) => Effect.Effect<Option.Option<Duration.Duration>>
  /** Restart the policy from its initial state (after a success). */
  readonly reset: Effect.Effect<void>
}

/**
 * Steps `policy` for one reconnecting owner. Clock and Random come from the calling fiber, so `TestClock` and
 * `TestRandom` drive it in tests.
 *
 * @since 0.2.0
 */
export const make = <E>(policy: Policy<E>): Backoff<E> => {
  let state: unknown = policy.initial
  return {
    next: (error) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const [nextState, , decision] = yield* policy.step(now, error, state)
        state = nextState
        if (ScheduleDecision.isDone(decision)) return Option.none()
        return Option.some(Duration.millis(Math.max(0, ScheduleIntervals.start(decision.intervals) - now)))
      }),
    reset: Effect.sync(() => {
      state = policy.initial
    })
  }
}
