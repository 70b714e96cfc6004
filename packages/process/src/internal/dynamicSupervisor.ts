/**
 * Dynamic supervision (`simple_one_for_one`): a table of children of one spec, each one fiber that runs the
 * spec's body in its own Scope and restarts it (in a fresh Scope) per its restart type and the supervisor's
 * intensity.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Metric from "effect/Metric"
import * as Runtime from "effect/Runtime"
import * as RuntimeFlags from "effect/RuntimeFlags"
import type * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as ScheduleIntervals from "effect/ScheduleIntervals"
import * as Scope from "effect/Scope"
import { type ChildDown, defaultSchedule, type Restart, restartsTotal, SupervisorGaveUp } from "./supervisor.js"

/** What every child of a dynamic supervisor runs. */
export interface ChildSpec<Arg, E, R> {
  /** The child's body, run in the child's own Scope (closed when the body ends or the child is terminated). */
  readonly run: (arg: Arg) => Effect.Effect<unknown, E, R | Scope.Scope>
  /** When the body ends: `temporary` (default) never restarts, `transient` after a failure, `permanent` always. */
  readonly restart?: Restart | undefined
}

/** Options of `make`. */
export interface Options {
  /** Most children at once (running or waiting for a restart); `startChild` fails beyond it. Default: no limit. */
  readonly maxChildren?: number | undefined
  /** Restart intensity shared by all children (default: `intensity(3, "5 seconds")`); its end stops the supervisor. */
  readonly intensity?: Schedule.Schedule<unknown, ChildDown> | undefined
  /** Name used in logs, `SupervisorGaveUp` and the restart metric's `child` tag; default `dynamic-<n>`. */
  readonly name?: string | undefined
}

/** A child of a dynamic supervisor. Its id is stable across restarts. */
export interface Child {
  readonly id: number
}

/** `startChild` refused: the supervisor already has `maxChildren` children. */
export class MaxChildrenReached extends Data.TaggedError("MaxChildrenReached")<{ readonly maxChildren: number }> {
  override get message(): string {
    return `dynamic supervisor has reached its limit of ${this.maxChildren} children`
  }
}

/** Symbol marking dynamic supervisors. */
export const DynamicSupervisorTypeId: unique symbol = Symbol.for("@warren/process/DynamicSupervisor")
/** Type of `DynamicSupervisorTypeId`. */
export type DynamicSupervisorTypeId = typeof DynamicSupervisorTypeId

/** A running dynamic supervisor whose children take an `Arg`. */
export interface DynamicSupervisor<in Arg> {
  readonly [DynamicSupervisorTypeId]: { readonly _Arg: (_: Arg) => void }
}

/** One child: its fiber, its argument and whether its body is running (false while it waits for a restart). */
class ChildRecord implements Child {
  fiber: Fiber.RuntimeFiber<void> | undefined = undefined
  running = false
  restarts = 0
  constructor(readonly id: number, readonly arg: unknown) {}
}

const variance = { _Arg: (_: unknown) => {} }

/** The supervisor: the child table, the shared intensity state, and how it stopped. */
export class DynamicSupervisorImpl implements DynamicSupervisor<unknown> {
  readonly [DynamicSupervisorTypeId] = variance
  readonly children = new Map<number, ChildRecord>()
  nextId = 0
  /** Set when the owner's Scope closes or the intensity is exceeded: no more starts or restarts. */
  stopped = false
  scheduleState: unknown
  readonly lock = Effect.unsafeMakeSemaphore(1)
  readonly done: Deferred.Deferred<void, SupervisorGaveUp> = Deferred.unsafeMake(FiberId.none)
  readonly restartsMetric: Metric.Metric.Counter<number>
  readonly runtimeFlags: RuntimeFlags.RuntimeFlags

  constructor(
    readonly spec: ChildSpec<unknown, unknown, never>,
    readonly restart: Restart,
    readonly maxChildren: number,
    readonly intensity: Schedule.Schedule<unknown, ChildDown>,
    readonly name: string,
    readonly runtime: Runtime.Runtime<never>
  ) {
    this.scheduleState = intensity.initial
    // `make` may run in an uninterruptible region (a layer, an acquire): children must stay interruptible.
    this.runtimeFlags = RuntimeFlags.enable(runtime.runtimeFlags, RuntimeFlags.Interruption)
    this.restartsMetric = Metric.tagged(restartsTotal, "child", name)
  }

  /**
   * Register a child and fork its fiber, whose context is the supervisor's plus the child's Scope: the first
   * incarnation needs no `provideService` (a copy of the fiber's FiberRefs), which keeps an idle child small.
   */
  start(arg: unknown, scope: Scope.CloseableScope): ChildRecord {
    const record = new ChildRecord(++this.nextId, arg)
    // Active from now on, as an OTP child is once `start_child` returned (its body starts on the next tick).
    record.running = true
    this.children.set(record.id, record)
    const runtime = Runtime.make({
      context: Context.add(this.runtime.context, Scope.Scope, scope),
      fiberRefs: this.runtime.fiberRefs,
      runtimeFlags: this.runtimeFlags
    })
    // Detached on purpose: the child outlives the fiber that started it; `shutdown` (run by the owner's
    // Scope) and `terminateChild` interrupt it, and the observer takes it out of the table when it ends.
    const fiber = Runtime.runFork(runtime)(incarnation(this, record, scope))
    record.fiber = fiber
    fiber.addObserver(() => {
      record.running = false
      if (this.children.get(record.id) === record) this.children.delete(record.id)
    })
    return record
  }

  /** Decide on a restart under the shared intensity; false means give up. Sleeps the schedule's delay. */
  allowRestart(record: ChildRecord, exit: Exit.Exit<unknown, unknown>): Effect.Effect<boolean> {
    return Effect.flatMap(
      this.lock.withPermits(1)(Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.map(
          this.intensity.step(now, { child: `${this.name}#${record.id}`, exit, restarts: record.restarts }, this.scheduleState),
          ([state, _out, decision]) => {
            this.scheduleState = state
            return ScheduleDecision.isDone(decision) ? -1 : Math.max(0, ScheduleIntervals.start(decision.intervals) - now)
          }
        ))),
      (delay) => delay < 0 ? Effect.succeed(false) : delay === 0 ? Effect.succeed(true) : Effect.as(Effect.sleep(Duration.millis(delay)), true)
    )
  }

  /** Interrupt every child (all at once) and wait until each one's Scope has closed. */
  shutdown(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.stopped = true
      const fibers: Array<Fiber.RuntimeFiber<void>> = []
      for (const record of this.children.values()) if (record.fiber !== undefined) fibers.push(record.fiber)
      return fibers.length === 0 ? Effect.void : Fiber.interruptAll(fibers)
    })
  }

  /** The intensity was exceeded: stop every other child, then fail `done`. */
  giveUp(record: ChildRecord, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> {
    const cause = Exit.isFailure(exit) ? exit.cause : Cause.empty
    this.children.delete(record.id)
    return Effect.logError("dynamic supervisor gives up", cause).pipe(
      Effect.annotateLogs({ supervisor: this.name, child: record.id }),
      Effect.zipRight(this.shutdown()),
      Effect.zipRight(Deferred.fail(this.done, new SupervisorGaveUp({ child: `${this.name}#${record.id}`, restarts: record.restarts, cause })))
    )
  }
}

/** One run of the child's body in `scope`, closed when the body ends or the fiber is interrupted. */
const incarnation = (
  sup: DynamicSupervisorImpl,
  record: ChildRecord,
  scope: Scope.CloseableScope
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.matchCauseEffect(
    Effect.onExit(
      Effect.suspend(() => {
        record.running = true
        return sup.spec.run(record.arg)
      }),
      (exit) => {
        record.running = false
        return Scope.close(scope, exit)
      }
    ),
    {
      onFailure: (cause) => afterEnd(sup, record, Exit.failCause(cause)),
      onSuccess: () => afterEnd(sup, record, Exit.void)
    }
  )

/** The body ended by itself: leave (the observer removes the record) or restart, per the restart type. */
const afterEnd = (sup: DynamicSupervisorImpl, record: ChildRecord, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> => {
  if (sup.stopped) return Effect.void
  if (sup.restart === "temporary" || (sup.restart === "transient" && Exit.isSuccess(exit))) return Effect.void
  return Effect.flatMap(sup.allowRestart(record, exit), (allowed) => {
    if (!allowed) return sup.giveUp(record, exit)
    if (sup.stopped) return Effect.void
    record.restarts++
    return Effect.zipRight(
      Metric.increment(sup.restartsMetric),
      Effect.flatMap(Scope.make(), (scope) => Effect.provideService(incarnation(sup, record, scope), Scope.Scope, scope))
    )
  })
}

let nextSupervisor = 0

export const make = <Arg, E, R>(
  spec: ChildSpec<Arg, E, R>,
  options?: Options
): Effect.Effect<DynamicSupervisorImpl, never, Scope.Scope | R> =>
  Effect.flatMap(Effect.runtime<R>(), (runtime) => {
    const sup = new DynamicSupervisorImpl(
      spec as unknown as ChildSpec<unknown, unknown, never>,
      spec.restart ?? "temporary",
      options?.maxChildren ?? Infinity,
      options?.intensity ?? defaultSchedule,
      options?.name ?? `dynamic-${++nextSupervisor}`,
      runtime as Runtime.Runtime<never>
    )
    return Effect.as(
      Effect.addFinalizer(() => Effect.zipRight(sup.shutdown(), Deferred.succeed(sup.done, undefined))),
      sup
    )
  })

export const startChild = (sup: DynamicSupervisorImpl, arg: unknown): Effect.Effect<Child, MaxChildrenReached> =>
  Effect.flatMap(Scope.make(), (scope): Effect.Effect<Child, MaxChildrenReached> => {
    if (sup.stopped) return Effect.dieMessage(`dynamic supervisor ${sup.name} is stopped`)
    if (sup.children.size >= sup.maxChildren) return Effect.fail(new MaxChildrenReached({ maxChildren: sup.maxChildren }))
    return Effect.succeed(sup.start(arg, scope))
  })

export const terminateChild = (sup: DynamicSupervisorImpl, child: Child): Effect.Effect<void> =>
  Effect.suspend(() => {
    const record = sup.children.get(child.id)
    return record?.fiber === undefined ? Effect.void : Fiber.interrupt(record.fiber)
  }).pipe(Effect.asVoid)
