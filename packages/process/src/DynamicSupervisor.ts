/**
 * Dynamic supervisors (OTP's `simple_one_for_one`, Elixir's `DynamicSupervisor`): many children of one
 * spec, started on demand (one per TCP connection, per job, ...).
 *
 * Each child is one fiber running `spec.run(arg)` in its own Scope. When the body ends the Scope closes and
 * the child leaves the table (`temporary`, the default) or is restarted with the same `arg` (`transient`
 * after a failure, `permanent` always) under the supervisor's restart intensity, shared by all children;
 * exceeding it stops every child and fails `await` with `SupervisorGaveUp`. Closing the Scope the
 * supervisor was made in interrupts every child, runs their finalizers and waits for them.
 *
 * @example
 * ```ts
 * const sup = yield* DynamicSupervisor.make(
 *   { run: (socket: Socket) => handleConnection(socket) },
 *   { maxChildren: 10_000 }
 * )
 * const child = yield* DynamicSupervisor.startChild(sup, socket) // fails with MaxChildrenReached when full
 * const { active } = yield* DynamicSupervisor.count(sup)
 * yield* DynamicSupervisor.terminateChild(sup, child)
 * ```
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/dynamicSupervisor.js"
import type { SupervisorGaveUp } from "./internal/supervisor.js"

export {
  /**
   * What every child runs: `run(arg)` in the child's own Scope, and its restart type.
   */
  type ChildSpec,
  /**
   * A child (its id is stable across restarts).
   */
  type Child,
  /**
   * A running dynamic supervisor whose children take an `Arg`.
   */
  type DynamicSupervisor,
  /**
   * Symbol marking dynamic supervisors.
   */
  DynamicSupervisorTypeId,
  /**
   * `startChild` refused: the supervisor already has `maxChildren` children.
   */
  MaxChildrenReached,
  /**
   * Options of `make`.
   */
  type Options
} from "./internal/dynamicSupervisor.js"

const impl = <Arg>(sup: internal.DynamicSupervisor<Arg>): internal.DynamicSupervisorImpl =>
  sup as unknown as internal.DynamicSupervisorImpl

/**
 * Make a dynamic supervisor with no children in the current Scope. The children's requirements `R` are
 * taken from the context of `make`, so `startChild` needs none and works from any fiber.
 */
export const make = <Arg, E, R>(
  spec: internal.ChildSpec<Arg, E, R>,
  options?: internal.Options
): Effect.Effect<internal.DynamicSupervisor<Arg>, never, Scope.Scope | R> => internal.make(spec, options)

/**
 * Start a child running `spec.run(arg)`; returns at once (the body runs in the child's own fiber). Fails with
 * `MaxChildrenReached` when the supervisor is full. Starting on a stopped supervisor (its Scope closed or it
 * gave up) is a defect, like calling a dead process in OTP.
 */
export const startChild = <Arg>(
  sup: internal.DynamicSupervisor<Arg>,
  arg: Arg
): Effect.Effect<internal.Child, internal.MaxChildrenReached> => internal.startChild(impl(sup), arg)

/**
 * Interrupt a child (it is not restarted, whatever its restart type) and wait until its Scope has closed.
 * Does nothing for a child that has already left the table.
 */
export const terminateChild = <Arg>(sup: internal.DynamicSupervisor<Arg>, child: internal.Child): Effect.Effect<void> =>
  internal.terminateChild(impl(sup), child)

/**
 * The children in the table, oldest first (including those waiting for a restart).
 */
export const which = <Arg>(sup: internal.DynamicSupervisor<Arg>): Effect.Effect<ReadonlyArray<internal.Child>> =>
  Effect.sync(() => Array.from(impl(sup).children.values()))

/**
 * OTP's `count_children`: `workers` children in the table, `active` of them running their body (the others
 * wait for a restart), and always one spec.
 */
export const count = <Arg>(
  sup: internal.DynamicSupervisor<Arg>
): Effect.Effect<{ readonly active: number; readonly specs: 1; readonly workers: number }> =>
  Effect.sync(() => {
    let active = 0
    for (const record of impl(sup).children.values()) if (record.running) active++
    return { active, specs: 1, workers: impl(sup).children.size }
  })

/**
 * Wait for the supervisor to stop: succeeds when its Scope has closed (after every child), fails with
 * `SupervisorGaveUp` when the restart intensity was exceeded.
 */
const await_ = <Arg>(sup: internal.DynamicSupervisor<Arg>): Effect.Effect<void, SupervisorGaveUp> =>
  Deferred.await(impl(sup).done)

export {
  /**
   * Wait for the supervisor to stop; fails with `SupervisorGaveUp` when it gave up.
   */
  await_ as await
}
