/**
 * Process operations on the engine's loosely typed objects (`Process.ts` gives them their types): start,
 * call, cast, send, reply, stop and wait.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Equal from "effect/Equal"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { type CallError, type FromImpl, request, requestPromise } from "./callers.js"
import { type AnyBehaviour, ProcessImpl, runProcess, toEffect } from "./engine.js"
import { CALL, CAST, INFO, STOP } from "./mailbox.js"
import * as M from "./model.js"

export { type AnyBehaviour, ProcessImpl } from "./engine.js"

/** Run `init` in the caller, then fork the process fiber. */
export const start = (
  behaviour: AnyBehaviour,
  arg: unknown,
  options: M.StartOptions | undefined,
  scoped: boolean
): Effect.Effect<ProcessImpl, M.InitStopped<unknown> | M.InitIgnored, Scope.Scope> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      // Captured inside uninterruptibleMask: fibers forked from it must be made interruptible explicitly.
      const runtime = yield* Effect.runtime<never>()
      const clock = yield* Effect.clock
      const proc = new ProcessImpl(options?.name, behaviour, clock, runtime, options?.scheduler)
      const initExit = yield* Effect.exit(
        restore(Effect.suspend(() => toEffect(behaviour.init(arg, proc)))).pipe(
          Effect.withSpan("Process.init", { attributes: { "process.name": proc.name } })
        )
      )
      if (initExit._tag === "Failure") {
        const reason = M.crashed(initExit.cause)
        yield* proc.finalize(reason)
        return yield* Effect.fail(new M.InitStopped({ process: proc.name, reason }))
      }
      const result = initExit.value
      const tag = typeof result === "object" && result !== null && "_tag" in result ? result._tag : undefined
      switch (tag) {
        case "Ok":
          break
        case "Ignore": {
          yield* proc.finalize(M.normal)
          return yield* Effect.fail(new M.InitIgnored({ process: proc.name }))
        }
        case "StopInit": {
          const reason = M.stopped((result as M.StopInit<unknown>).reason)
          yield* proc.finalize(reason)
          return yield* Effect.fail(new M.InitStopped({ process: proc.name, reason }))
        }
        default: {
          const reason = M.crashed(Cause.die(new M.BadReturn({ callback: "init", value: result })))
          yield* proc.finalize(reason)
          return yield* Effect.fail(new M.InitStopped({ process: proc.name, reason }))
        }
      }
      proc.setState((result as M.Ok<unknown>).state)
      yield* proc.flush()
      // Interruptible like any fiber (this code runs uninterruptibly): callbacks may use timeouts and races.
      const fork = Effect.forkDaemon(Effect.interruptible(runProcess(proc)))
      // The fiber inherits the scheduler it is forked with (set around the fork only, not inside the loop).
      proc.fiber = yield* (proc.scheduler === undefined ? fork : Effect.withScheduler(fork, proc.scheduler))
      if (scoped) {
        // Linked after the fork: an owner Scope that is already closed stops the process at once.
        const link = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
        proc.scope = link
        yield* Scope.addFinalizer(link, shutdownAndAwait(proc))
        // The process may already have exited (before it could see the link): detach now.
        if (proc.exitReason !== undefined) yield* Scope.close(link, Exit.void)
      }
      return proc
    })
  )

/** Ask for a Shutdown after the message in hand (queued messages are dropped), wait for the exit. */
export const shutdownAndAwait = (proc: ProcessImpl): Effect.Effect<M.ExitReason<unknown>> =>
  notFromItself(proc, "stopNow", () => {
    if (proc.exitReason === undefined) {
      proc.shutdownRequested = true
      proc.mailbox.wakeUp()
    }
    return Deferred.await(proc.exited)
  })

export const call = (
  proc: ProcessImpl,
  payload: unknown,
  options: M.CallOptions | undefined
): Effect.Effect<unknown, CallError> => request(proc, CALL, payload, options)

export const unsafeCallPromise = (
  proc: ProcessImpl,
  payload: unknown,
  options: M.CallOptions | undefined
): Promise<unknown> => requestPromise(proc, payload, options)

export const unsafeCast = (proc: ProcessImpl, message: unknown): boolean => proc.push({ kind: CAST, message })

export const unsafeSend = (proc: ProcessImpl, message: unknown): boolean => proc.push({ kind: INFO, message })

export const unsafeReplyTo = (from: FromImpl, value: unknown): boolean => from.settle(Exit.succeed(value))

/** Ordered stop: messages already queued are handled first, then terminate, then the exit. */
export const exit = (proc: ProcessImpl, reason: M.ExitReason<unknown>): Effect.Effect<M.ExitReason<unknown>> =>
  notFromItself(proc, "exit", () => {
    proc.push({ kind: STOP, reason })
    return Deferred.await(proc.exited)
  })

export const awaitExit = (proc: ProcessImpl): Effect.Effect<M.ExitReason<unknown>> =>
  notFromItself(proc, "await", () => Deferred.await(proc.exited))

/** A process waiting for its own exit would wait for ever: make that a defect instead (OTP: `calling_self`). */
export const notFromItself = <A, E>(
  proc: ProcessImpl,
  operation: string,
  body: () => Effect.Effect<A, E>
): Effect.Effect<A, E> =>
  Effect.fiberIdWith((id) =>
    proc.fiber !== undefined && proc.exitReason === undefined && Equal.equals(id, proc.fiber.id())
      ? Effect.dieMessage(`Process.${operation} called by process ${proc.name} on itself`)
      : body()
  )

export const exitReason = (proc: ProcessImpl): Option.Option<M.ExitReason<unknown>> =>
  Option.fromNullable(proc.exitReason)
