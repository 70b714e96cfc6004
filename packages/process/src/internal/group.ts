/**
 * One-for-all and rest-for-one supervision: a manager fiber starts the children in order, then handles their
 * ends one at a time (like an OTP supervisor's mailbox): stop the affected siblings in reverse start order,
 * then start the affected children again in order, each start finishing before the next.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import {
  type ChildState,
  defaultSchedule,
  gaveUp,
  isFinal,
  restartsTotal,
  type SupervisorGaveUp,
  type SupervisorOptions
} from "./supervisor.js"

/** A child's run ended by itself (ends caused by the manager stopping it are never reported). */
interface ChildEnded {
  readonly index: number
  readonly generation: number
  readonly exit: Exit.Exit<void | "ignored", unknown>
}

export const runGroup = <R>(
  strategy: "one_for_all" | "rest_for_one",
  states: ReadonlyArray<ChildState>,
  options: SupervisorOptions<R>,
  childrenScope: Scope.Scope,
  ready: Deferred.Deferred<void>,
  giveUp: Deferred.Deferred<never, SupervisorGaveUp>
): Effect.Effect<void, never, R> =>
  Effect.gen(function*() {
    const ended = yield* Queue.unbounded<ChildEnded>()
    const drivers = yield* Effect.forEach(options.children, (child) =>
      Schedule.driver(child.schedule ?? options.schedule ?? defaultSchedule))

    /** Start child `index` and wait for its first start to finish (started, or ended already). */
    const start = (index: number) =>
      Effect.suspend(() => {
        const state = states[index]!
        const generation = ++state.generation
        const first = Deferred.unsafeMake<void>(FiberId.none)
        const run = Effect.scoped(options.children[index]!.run((handle) => {
          state.current = Option.some(handle)
          state.running = true
          Deferred.unsafeDone(first, Exit.void)
        })).pipe(
          Effect.ensuring(Effect.sync(() => {
            state.current = Option.none()
            state.running = false
          })),
          Effect.exit,
          Effect.flatMap((exit) => Queue.offer(ended, { index, generation, exit })),
          Effect.ensuring(Deferred.succeed(first, undefined))
        )
        return Effect.flatMap(Effect.forkIn(run, childrenScope), (fiber) => {
          state.fiber = fiber as Fiber.RuntimeFiber<void>
          return Deferred.await(first)
        })
      })

    /** Stop child `index` if running; its end is not reported. */
    const stop = (index: number) =>
      Effect.suspend(() => {
        const state = states[index]!
        const fiber = state.fiber
        state.fiber = undefined
        state.generation++
        return fiber === undefined ? Effect.void : Fiber.interrupt(fiber)
      })

    /** Handle one end; false when the supervisor gives up. */
    const handle = (event: ChildEnded) =>
      Effect.gen(function*() {
        const state = states[event.index]!
        if (event.generation !== state.generation) return true
        state.fiber = undefined
        if (isFinal(state.child, event.exit)) return true
        const next = yield* Effect.either(
          drivers[event.index]!.next({ child: state.child.name, exit: event.exit, restarts: state.restarts })
        )
        if (next._tag === "Left") {
          yield* gaveUp(giveUp, state, event.exit)
          return false
        }
        const from = strategy === "one_for_all" ? 0 : event.index
        for (let j = states.length - 1; j >= from; j--) if (j !== event.index) yield* stop(j)
        for (let j = from; j < states.length; j++) {
          const sibling = states[j]!
          // A temporary sibling stopped by the restart stays down (OTP drops it).
          if (j !== event.index && sibling.child.restart === "temporary") continue
          sibling.restarts++
          yield* Metric.increment(Metric.tagged(restartsTotal, "child", sibling.child.name))
          yield* start(j)
        }
        return true
      })

    for (let i = 0; i < states.length; i++) yield* start(i)
    // Ends during the start-up are handled before `start` returns (a child that cannot start gives up there).
    for (;;) {
      const pending = yield* Queue.poll(ended)
      if (Option.isNone(pending)) break
      if (!(yield* handle(pending.value))) return
    }
    yield* Deferred.succeed(ready, undefined)
    for (;;) {
      if (!(yield* handle(yield* Queue.take(ended)))) return
    }
  })
