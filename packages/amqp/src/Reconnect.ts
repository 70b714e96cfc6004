/**
 * Reconnect policies for `AmqpConnection` (and any channel owner that reopens on a schedule).
 *
 * A policy is a plain Effect `Schedule` fed with the error of each failed attempt: its delays are the
 * waits between attempts, and when it ends the connection gives up (state `Closed`). The connection
 * restarts the schedule from its initial state after every successful connect.
 */
import * as Duration from "effect/Duration"
import * as Schedule from "effect/Schedule"
import type { AmqpError } from "./internal/amqpError.js"

/** A reconnect policy: a Schedule over the errors of failed attempts. Its end means "give up". */
export type Policy = Schedule.Schedule<unknown, AmqpError>

/**
 * Exponential backoff from `base` (default 100 ms) multiplied by `factor` (default 2) per retry, each delay
 * jittered to 80-120 % (`jitter`, default on; uses the `Random` service) and never more than `max`
 * (default 30 s). Forever.
 */
export const exponential = (options?: {
  readonly base?: Duration.DurationInput
  readonly factor?: number
  readonly max?: Duration.DurationInput
  readonly jitter?: boolean
}): Policy => {
  const cap = Schedule.spaced(options?.max ?? "30 seconds")
  const capped = Schedule.exponential(options?.base ?? "100 millis", options?.factor ?? 2).pipe(Schedule.union(cap))
  // Jitter after capping (so an astronomically large exponential delay never reaches the RNG arithmetic),
  // then cap again so a jittered delay never exceeds `max`.
  return options?.jitter === false ? capped : capped.pipe(Schedule.jittered, Schedule.union(cap))
}

/** The default policy: exponential from 100 ms, doubling, jittered, capped at 30 s, forever. */
export const defaultPolicy: Policy = exponential()

/**
 * Hare's list backoff: wait `delays[0]` before the first retry, `delays[1]` before the second, ... and the
 * last delay for every retry after that, forever. Hare's default is `fromDelays([0, 10, 100, 1000, 5000])`.
 */
export const fromDelays = (
  delays: readonly [Duration.DurationInput, ...ReadonlyArray<Duration.DurationInput>]
): Policy => {
  const decoded = delays.map((delay) => Duration.decode(delay))
  return Schedule.forever.pipe(Schedule.addDelay((n) => decoded[Math.min(n, decoded.length - 1)]!))
}

/** Hare's default connection backoff: 0, 10, 100, 1000, then 5000 ms forever. */
export const hareDefault: Policy = fromDelays([0, 10, 100, 1000, 5000])

/** At most `retries` retries of `policy`, then give up. */
export const limit = (policy: Policy, retries: number): Policy =>
  policy.pipe(Schedule.intersect(Schedule.recurs(retries)))
