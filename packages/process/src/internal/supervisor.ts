/**
 * Static supervision with OTP's three strategies. One-for-one: one fiber per named child runs it in its own
 * Scope, waits for it to end, and restarts it per a Schedule. One-for-all and rest-for-one: one manager fiber
 * receives every child's end and restarts the affected children together (see `group.ts`). When a schedule
 * ends the supervisor gives up and stops every child.
 */
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as ScheduleInterval from "effect/ScheduleInterval"
import * as Scope from "effect/Scope"
import { runGroup } from "./group.js"

/**
 * When a child is restarted (OTP's restart types): `permanent` always, `transient` only after an abnormal
 * exit (a failure; a normal end is final), `temporary` never.
 */
export type Restart = "permanent" | "transient" | "temporary"

/** What the restart schedule sees each time a child ends and is about to be restarted. */
export interface ChildDown {
  readonly child: string
  /** How the child's run ended: success for a normal end, failure with the cause otherwise. */
  readonly exit: Exit.Exit<unknown, unknown>
  /** Restarts of this child so far (before this one). */
  readonly restarts: number
}

/**
 * A supervised child: a named, restartable unit. `run` acquires the child in the Scope it is given,
 * hands its current handle to `started`, and completes when the child has ended (success: normal end,
 * failure: abnormal). Completing with `"ignored"` means the child declined to start (OTP's `ignore`):
 * it stays down and is not restarted. Build children with `child`, `task`, `process` or `supervisor`.
 */
export interface Child<out A, out R> {
  readonly name: string
  readonly restart: Restart
  /** Restart schedule of this child; the supervisor's default when undefined. */
  readonly schedule: Schedule.Schedule<unknown, ChildDown, R> | undefined
  readonly run: (started: (handle: A) => void) => Effect.Effect<void | "ignored", unknown, R | Scope.Scope>
}

/** The supervisor gave up: a child's restart schedule ended. Carries the child's last exit. */
export class SupervisorGaveUp extends Data.TaggedError("SupervisorGaveUp")<{
  readonly child: string
  readonly restarts: number
  /** Why the child last ended (empty for a normal end of a permanent child). */
  readonly cause: Cause.Cause<unknown>
}> {
  override get message(): string {
    return `supervisor gave up on child ${this.child} after ${this.restarts} restarts`
  }
}

/** A snapshot of one child (`supervisor:which_children` plus restart counts). */
export interface ChildInfo {
  readonly name: string
  readonly restarts: number
  readonly running: boolean
}

/**
 * Which children restart when one must (OTP's strategies): `one_for_one` only that child; `one_for_all` every
 * child (the others are stopped in reverse start order, then all start again in order); `rest_for_one` that
 * child and those started after it.
 */
export type Strategy = "one_for_one" | "one_for_all" | "rest_for_one"

/** Options of `start`. */
export interface SupervisorOptions<R> {
  /** Default `one_for_one`. The failed child's schedule decides whether and when the restart happens. */
  readonly strategy?: Strategy | undefined
  /** Children, started in order (each one's first start completes before the next begins), stopped in reverse. */
  readonly children: ReadonlyArray<Child<unknown, R>>
  /** Default restart schedule for children without their own (default: `intensity(3, "5 seconds")`, OTP's default). */
  readonly schedule?: Schedule.Schedule<unknown, ChildDown, R> | undefined
}

export class ChildState {
  current: Option.Option<unknown> = Option.none()
  restarts = 0
  running = false
  /** Group strategies: the fiber of the current incarnation, and a counter that makes stale ends ignorable. */
  fiber: Fiber.RuntimeFiber<void> | undefined = undefined
  generation = 0
  constructor(readonly child: Child<unknown, unknown>) {}
}

/** A running supervisor. */
export interface Supervisor {
  readonly [SupervisorTypeId]: SupervisorTypeId
  /** Child states by name; read through the module functions. */
  readonly states: ReadonlyMap<string, { readonly current: Option.Option<unknown>; readonly restarts: number; readonly running: boolean }>
  readonly done: Deferred.Deferred<void, SupervisorGaveUp>
}

/** Symbol marking supervisors. */
export const SupervisorTypeId: unique symbol = Symbol.for("@warren/process/Supervisor")
/** Type of `SupervisorTypeId`. */
export type SupervisorTypeId = typeof SupervisorTypeId

/**
 * OTP's restart intensity as a Schedule: allow a restart unless `maxRestarts` restarts already happened
 * within the last `period` (sliding window); restarts are immediate.
 */
export const intensity = (maxRestarts: number, period: Duration.DurationInput): Schedule.Schedule<number, unknown> => {
  const periodMillis = toMillis(period)
  return Schedule.makeWithState<ReadonlyArray<number>, unknown, number>([], (now, _input, restarts) => {
    const recent = restarts.filter((at) => at > now - periodMillis)
    if (recent.length >= maxRestarts) {
      return Effect.succeed([recent, recent.length, ScheduleDecision.done] as const)
    }
    const next = [...recent, now]
    return Effect.succeed([next, next.length, ScheduleDecision.continueWith(ScheduleInterval.after(now))] as const)
  })
}

const toMillis = (input: Duration.DurationInput): number => Duration.toMillis(Duration.decode(input))

/** OTP's default restart intensity: at most 3 restarts in 5 seconds. */
export const defaultSchedule = intensity(3, "5 seconds")

/** Restarts performed by supervisors, tagged with the child's name. */
export const restartsTotal = Metric.counter("warren_supervisor_restarts_total", {
  description: "Children restarted by @warren/process supervisors",
  incremental: true
})

/** Log and signal that the supervisor gives up on `state`'s child, which last ended with `exit`. */
export const gaveUp = (
  giveUp: Deferred.Deferred<never, SupervisorGaveUp>,
  state: ChildState,
  exit: Exit.Exit<unknown, unknown>
): Effect.Effect<void> => {
  const cause = Exit.isFailure(exit) ? exit.cause : Cause.empty
  return Effect.logError("supervisor gives up on child", cause).pipe(
    Effect.annotateLogs({ child: state.child.name, restarts: state.restarts }),
    Effect.zipRight(
      Deferred.fail(giveUp, new SupervisorGaveUp({ child: state.child.name, restarts: state.restarts, cause }))
    ),
    Effect.asVoid
  )
}

/** Is an end of the child final (no restart) whatever the strategy? */
export const isFinal = (child: Child<unknown, unknown>, exit: Exit.Exit<void | "ignored", unknown>): boolean =>
  (Exit.isSuccess(exit) && exit.value === "ignored") || child.restart === "temporary" ||
  (child.restart === "transient" && Exit.isSuccess(exit))

const runChild = <R>(
  state: ChildState,
  child: Child<unknown, R>,
  schedule: Schedule.Schedule<unknown, ChildDown, R>,
  firstAttempt: Deferred.Deferred<void>,
  giveUp: Deferred.Deferred<never, SupervisorGaveUp>
): Effect.Effect<void, never, R> =>
  Effect.gen(function*() {
    const driver = yield* Schedule.driver(schedule)
    for (;;) {
      const exit = yield* Effect.exit(
        Effect.scoped(child.run((handle) => {
          state.current = Option.some(handle)
          state.running = true
          Deferred.unsafeDone(firstAttempt, Exit.void)
        })).pipe(Effect.ensuring(Effect.sync(() => {
          state.current = Option.none()
          state.running = false
        })))
      )
      Deferred.unsafeDone(firstAttempt, Exit.void)
      if (isFinal(child, exit)) return
      const next = yield* Effect.either(driver.next({ child: child.name, exit, restarts: state.restarts }))
      if (next._tag === "Left") return yield* gaveUp(giveUp, state, exit)
      state.restarts++
      yield* Metric.increment(Metric.tagged(restartsTotal, "child", child.name))
    }
  })

/**
 * Wait until `signal` is done or the supervisor gave up. Interruptible even when `start` runs in an
 * uninterruptible region (a layer): the race interrupts its loser, which must let it.
 */
const waitFor = (signal: Deferred.Deferred<void>, giveUp: Deferred.Deferred<never, SupervisorGaveUp>) =>
  Effect.raceFirst(
    Effect.interruptible(Deferred.await(signal)),
    Effect.interruptible(Effect.exit(Deferred.await(giveUp)))
  )

export const start = <R>(
  options: SupervisorOptions<R>
): Effect.Effect<Supervisor, SupervisorGaveUp, R | Scope.Scope> =>
  Effect.gen(function*() {
    const names = new Set<string>()
    for (const child of options.children) {
      if (names.has(child.name)) return yield* Effect.dieMessage(`duplicate child name: ${child.name}`)
      names.add(child.name)
    }
    const outer = yield* Effect.scope
    // `giveUp` is completed by the child that gives up; `done` once every child has been stopped.
    const giveUp = yield* Deferred.make<never, SupervisorGaveUp>()
    const done = yield* Deferred.make<void, SupervisorGaveUp>()
    // Finalizers run in reverse: the owner closing us stops the children, then completes `done`.
    yield* Effect.addFinalizer(() => Deferred.succeed(done, undefined))
    const childrenScope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
    // The fibers forked here are made interruptible: `start` may run in an uninterruptible region (a layer).
    yield* Deferred.await(giveUp).pipe(
      Effect.interruptible,
      Effect.exit,
      Effect.flatMap((exit) => Effect.zipRight(Scope.close(childrenScope, exit), Deferred.done(done, exit))),
      Effect.forkIn(outer)
    )
    const states = new Map<string, ChildState>()
    for (const child of options.children) {
      states.set(child.name, new ChildState(child))
    }
    const strategy = options.strategy ?? "one_for_one"
    if (strategy !== "one_for_one") {
      const ready = yield* Deferred.make<void>()
      yield* Effect.forkIn(
        runGroup(strategy, Array.from(states.values()), options, childrenScope, ready, giveUp).pipe(
          Effect.ensuring(Deferred.succeed(ready, undefined)),
          Effect.interruptible
        ),
        childrenScope
      )
      yield* waitFor(ready, giveUp)
    }
    for (const child of strategy === "one_for_one" ? options.children : []) {
      if (yield* Deferred.isDone(giveUp)) break
      const firstAttempt = yield* Deferred.make<void>()
      yield* Effect.forkIn(
        runChild(states.get(child.name)!, child, child.schedule ?? options.schedule ?? defaultSchedule, firstAttempt, giveUp)
          .pipe(Effect.ensuring(Deferred.succeed(firstAttempt, undefined)), Effect.interruptible),
        childrenScope
      )
      yield* waitFor(firstAttempt, giveUp)
    }
    if (yield* Deferred.isDone(giveUp)) yield* Deferred.await(done)
    const supervisor: Supervisor = { [SupervisorTypeId]: SupervisorTypeId, states, done }
    return supervisor
  })
