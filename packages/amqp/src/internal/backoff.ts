import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as ScheduleIntervals from "effect/ScheduleIntervals"

/**
 * A Schedule stepped by hand, so that the caller can publish the delay (e.g. in a state) before sleeping it,
 * and restart the schedule after a success.
 */
export interface Backoff<In> {
  /** The delay before the next attempt after `input` failed, or None when the schedule is over. */
  readonly next: (input: In) => Effect.Effect<Option.Option<Duration.Duration>>
  /** Restart the schedule from its initial state. */
  readonly reset: Effect.Effect<void>
}

/** Steps `schedule` by hand (Clock and Random come from the calling fiber, so TestClock works). */
export const make = <In>(schedule: Schedule.Schedule<unknown, In>): Backoff<In> => {
  let state: unknown = schedule.initial
  return {
    next: (input) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const [nextState, , decision] = yield* schedule.step(now, input, state)
        state = nextState
        if (ScheduleDecision.isDone(decision)) return Option.none()
        return Option.some(Duration.millis(Math.max(0, ScheduleIntervals.start(decision.intervals) - now)))
      }),
    reset: Effect.sync(() => {
      state = schedule.initial
    })
  }
}
