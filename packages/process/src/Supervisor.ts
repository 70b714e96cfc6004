/**
 * Supervisors on Effect: named children, restarted per a `Schedule` when they end, with OTP's strategies
 * (`one_for_one`, the default: only that child; `one_for_all`: every child; `rest_for_one`: that child and
 * the ones started after it; the others are stopped in reverse start order, then started again in order).
 *
 * A child runs in its own Scope; when it ends (a process exits, a task's effect completes or fails, a
 * start fails) its Scope closes and the supervisor consults the child's restart schedule (the Schedule's
 * delay is the backoff, its end means "give up"). Giving up stops every child in reverse start order and
 * fails `await` with `SupervisorGaveUp`, which carries the final failure. Closing the Scope the supervisor
 * was started in stops the children in reverse order (processes get `Shutdown` and run `terminate`).
 *
 * @example
 * ```ts
 * const conn = Supervisor.process("conn", connectionBehaviour, url, {
 *   schedule: Schedule.exponential("100 millis").pipe(Schedule.intersect(Schedule.recurs(10)))
 * })
 * const sup = yield* Supervisor.start({ children: [conn] })
 * const ref = yield* Supervisor.current(sup, conn) // Option<ProcessRef<...>>
 * const n = yield* Supervisor.restarts(sup, conn)
 * ```
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/supervisor.js"
import * as Process from "./Process.js"

export {
  /** A supervised child (see the module doc). */
  type Child,
  /** What a restart schedule sees when a child ends. */
  type ChildDown,
  /** A snapshot of one child. */
  type ChildInfo,
  /** OTP's restart intensity (at most N restarts per period) as a Schedule. */
  intensity,
  /** When a child is restarted: permanent, transient or temporary. */
  type Restart,
  /** Counter of restarts, tagged with the child's name. */
  restartsTotal,
  /** Which children restart together: `one_for_one`, `one_for_all`, `rest_for_one`. */
  type Strategy,
  /** A running supervisor. */
  type Supervisor,
  /** The supervisor gave up on a child; carries its last failure. */
  SupervisorGaveUp,
  /** Options of `start`. */
  type SupervisorOptions,
  /** Symbol marking supervisors. */
  SupervisorTypeId
} from "./internal/supervisor.js"

/** Per-child options shared by the child constructors. */
export interface ChildOptions<R> {
  /** Default `permanent`. */
  readonly restart?: internal.Restart | undefined
  /** Restart schedule for this child; the supervisor's default when omitted. */
  readonly schedule?: Schedule.Schedule<unknown, internal.ChildDown, R> | undefined
}

/**
 * A child from a scoped `start` (acquire the child, return its handle) and an `await` that completes when
 * that handle's child has ended (success: normal, failure: abnormal).
 */
export const child = <A, E = never, R = never, R2 = never, R3 = never>(
  spec: {
    readonly name: string
    readonly start: Effect.Effect<A, E, R | Scope.Scope>
    readonly await: (handle: A) => Effect.Effect<unknown, unknown, R2>
  } & ChildOptions<R3>
): internal.Child<A, R | R2 | R3> => ({
  name: spec.name,
  restart: spec.restart ?? "permanent",
  schedule: spec.schedule,
  run: (started) =>
    Effect.flatMap(spec.start, (handle) => {
      started(handle)
      return Effect.asVoid(spec.await(handle))
    })
})

/**
 * A child that is a scoped effect: it lives while `run` runs (a background loop, a consumer), ends
 * normally when `run` succeeds and abnormally when it fails or dies. Its handle is `void`.
 */
export const task = <E = never, R = never, R2 = never>(
  name: string,
  run: Effect.Effect<unknown, E, R | Scope.Scope>,
  options?: ChildOptions<R2>
): internal.Child<void, R | R2> => ({
  name,
  restart: options?.restart ?? "permanent",
  schedule: options?.schedule,
  run: (started) =>
    Effect.suspend(() => {
      started(undefined)
      return Effect.asVoid(run)
    })
})

/**
 * A child that is a `Process`: started with `Process.start(behaviour, arg, { name })`, ended when the
 * process exits. `Normal`/`Shutdown` exits are normal ends; `Stopped` and `Crashed` are failures. An
 * `init` returning `ignore` leaves the child not running and not restarted (as in OTP).
 */
export const process = <
  Arg,
  State,
  Call = never,
  Reply = never,
  Cast = never,
  Info = never,
  Reason = never,
  R = never,
  R2 = never
>(
  name: string,
  behaviour: Process.Behaviour<Arg, State, Call, Reply, Cast, Info, Reason, R>,
  arg: Arg,
  options?: ChildOptions<R2>
): internal.Child<Process.ProcessRef<Call, Reply, Cast, Info, Reason>, R | R2> => ({
  name,
  restart: options?.restart ?? "permanent",
  schedule: options?.schedule,
  run: (started) =>
    Process.start(behaviour, arg, { name }).pipe(
      Effect.catchTag("InitIgnored", () => Effect.succeed("ignored" as const)),
      Effect.flatMap((ref) => {
        if (ref === "ignored") return Effect.succeed(ref)
        started(ref)
        return Effect.flatMap(Process.await(ref), (reason) => {
          switch (reason._tag) {
            case "Normal":
            case "Shutdown":
              return Effect.void
            case "Stopped":
              return Effect.fail(new Process.ProcessExited({ process: name, reason }))
            case "Crashed":
              return Effect.failCause(reason.cause)
          }
        })
      })
    )
})

/** A child that is itself a supervisor (a supervision tree); it ends when it gives up. */
export const supervisor = <R, R2 = never>(
  name: string,
  options: internal.SupervisorOptions<R>,
  childOptions?: ChildOptions<R2>
): internal.Child<internal.Supervisor, R | R2> =>
  child({ name, start: start(options), await: await_, ...childOptions })

/**
 * Start a supervisor in the current Scope. Children start in order, each one's first start
 * finishing (successfully or not) before the next; a failed first start is restarted per its schedule.
 * Fails with `SupervisorGaveUp` if it already gave up while starting.
 */
export const start = <R>(
  options: internal.SupervisorOptions<R>
): Effect.Effect<internal.Supervisor, internal.SupervisorGaveUp, R | Scope.Scope> => internal.start(options)

/**
 * Wait for the supervisor to stop: succeeds when its Scope closed, fails with `SupervisorGaveUp`
 * (carrying the last failure of the child it gave up on) when a restart schedule ended.
 */
const await_ = (supervisor: internal.Supervisor): Effect.Effect<void, internal.SupervisorGaveUp> =>
  Deferred.await(supervisor.done)

export {
  /** Wait for the supervisor to stop; fails with `SupervisorGaveUp` when it gave up. */
  await_ as await
}

const stateOf = (supervisor: internal.Supervisor, child: internal.Child<unknown, unknown> | string) =>
  supervisor.states.get(typeof child === "string" ? child : child.name)

/** How many times the child has been restarted (0 for an unknown child). */
export const restarts = (
  supervisor: internal.Supervisor,
  child: internal.Child<unknown, unknown> | string
): Effect.Effect<number> => Effect.sync(() => stateOf(supervisor, child)?.restarts ?? 0)

/** The handle of the child's current incarnation, none while it is down (or restarting). */
export const current = <A>(
  supervisor: internal.Supervisor,
  child: internal.Child<A, unknown>
): Effect.Effect<Option.Option<A>> =>
  Effect.sync(() => (stateOf(supervisor, child)?.current ?? Option.none()) as Option.Option<A>)

/** Every child with its restart count and whether it is running, in start order. */
export const which = (supervisor: internal.Supervisor): Effect.Effect<ReadonlyArray<internal.ChildInfo>> =>
  Effect.sync(() =>
    Array.from(supervisor.states.entries(), ([name, state]) => ({
      name,
      restarts: state.restarts,
      running: state.running
    }))
  )

/** The cause carried by a `SupervisorGaveUp`, squashed to one value (convenience for logs and tests). */
export const finalFailure = (error: internal.SupervisorGaveUp): unknown => Cause.squash(error.cause)
