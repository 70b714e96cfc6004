/**
 * The process engine: one fiber draining the mailbox, handling one message at a time with the behaviour's
 * callbacks, its state held in a `Ref` owned by the process; then `terminate` once, then the exit.
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Ref from "effect/Ref"
import type * as Runtime from "effect/Runtime"
import type * as Scheduler from "effect/Scheduler"
import * as Scope from "effect/Scope"
import { type FromImpl, PENDING, ABANDONED } from "./callers.js"
import { DeadlinesImpl } from "./deadlines.js"
import { EagerSchedulerImpl } from "./eagerScheduler.js"
import { ABANDONED_NOTICE, CALL, CAST, type Envelope, INFO, isSystem, Mailbox, STOP, SYSTEM } from "./mailbox.js"
import * as M from "./model.js"
import { handleSystem } from "./sys.js"

/** Loosely typed behaviour used inside the engine; the public API keeps the precise types. */
export interface AnyBehaviour {
  readonly init: (arg: unknown, self: ProcessImpl) => unknown
  readonly handleCall?: ((request: unknown, from: FromImpl, state: unknown, self: ProcessImpl) => unknown) | undefined
  readonly handleCast?: ((message: unknown, state: unknown, self: ProcessImpl) => unknown) | undefined
  readonly handleInfo?: ((message: unknown, state: unknown, self: ProcessImpl) => unknown) | undefined
  readonly handleAbandoned?: ((from: FromImpl, state: unknown, self: ProcessImpl) => unknown) | undefined
  readonly terminate?:
    | ((reason: M.ExitReason<unknown>, state: unknown, self: ProcessImpl) => unknown)
    | undefined
}

/**
 * When the process fiber writes its state to its Ref. `AT_YIELD` (the default): whenever the fiber is about to
 * give up control (mailbox empty, effectful callback, periodic yield, system message, exit), which is the only
 * time another fiber can look, so readers always see the state after the last handled message; a run of plain
 * handlers costs one write. `PER_MESSAGE` writes after every message, `NEVER` only for system messages:
 * both exist for the process benchmark, which measures what the Ref costs against them.
 */
export const AT_YIELD = 0
export const PER_MESSAGE = 1
export const NEVER = 2
let refWrites: typeof AT_YIELD | typeof PER_MESSAGE | typeof NEVER = AT_YIELD

/** Benchmark knob (see `AT_YIELD`); not part of the public API. */
export const unsafeSetRefWrites = (mode: typeof AT_YIELD | typeof PER_MESSAGE | typeof NEVER): void => {
  refWrites = mode
}

const processRefVariance = {
  _Call: (_: unknown) => {},
  _Reply: (): unknown => undefined,
  _Cast: (_: unknown) => {},
  _Info: (_: unknown) => {},
  _Reason: (): unknown => undefined
}

let nextProcessId = 0

/** The live process behind a `ProcessRef`. Only the process fiber touches `state` and `stateRef`. */
export class ProcessImpl implements M.ProcessRef<unknown, unknown, unknown, unknown, unknown> {
  readonly [M.ProcessRefTypeId] = processRefVariance
  readonly id: number
  readonly name: string
  readonly mailbox = new Mailbox()
  /** The process fiber's scheduler when it is eager: callers answered during its run resume on it. */
  readonly eager: EagerSchedulerImpl | undefined
  /** Set once terminate has run and every caller has been failed. */
  exitReason: M.ExitReason<unknown> | undefined = undefined
  shutdownRequested = false
  /** Suspended by `Process.suspend`: only system messages are handled. */
  suspended = false
  /** Messages handed to a callback so far. */
  handled = 0
  /** The behaviour state: the Ref is the process's; `state` is the fiber's copy, written back when dirty. */
  state: unknown = undefined
  readonly stateRef: Ref.Ref<unknown> = Ref.unsafeMake<unknown>(undefined)
  dirty = false
  /** Callers a handler left unanswered (`noreply`), newest first: answered later or failed at exit. */
  unanswered: FromImpl | undefined = undefined
  /** Call deadlines, created on the first call with a finite timeout. */
  deadlines: DeadlinesImpl | undefined = undefined
  readonly exited: Deferred.Deferred<M.ExitReason<unknown>>
  nextFromId = 0
  /** The process fiber, once forked (used to refuse a process waiting for its own exit). */
  fiber: Fiber.RuntimeFiber<void> | undefined = undefined
  /** The Scope linking the process to its owner; closed (and detached from the owner) at exit. */
  scope: Scope.CloseableScope | undefined = undefined

  constructor(
    name: string | undefined,
    readonly behaviour: AnyBehaviour,
    readonly clock: Clock.Clock,
    readonly runtime: Runtime.Runtime<never>,
    /** The process fiber's scheduler, if `start` was given one. */
    readonly scheduler: Scheduler.Scheduler | undefined = undefined
  ) {
    this.eager = scheduler instanceof EagerSchedulerImpl ? scheduler : undefined
    this.id = ++nextProcessId
    this.name = name ?? `#${this.id}`
    this.exited = Deferred.unsafeMake(FiberId.none)
  }

  /** Deliver an envelope; false when the process has exited (the envelope is dropped). */
  push(envelope: Envelope): boolean {
    if (this.exitReason !== undefined) return false
    this.mailbox.push(envelope)
    return true
  }

  /** Put a caller in the unanswered list. */
  keep(from: FromImpl): void {
    from.awaitingLater = true
    const head = this.unanswered
    from.prevUnanswered = undefined
    from.nextUnanswered = head
    if (head !== undefined) head.prevUnanswered = from
    this.unanswered = from
  }

  /** Take a caller out of the unanswered list. */
  forget(from: FromImpl): void {
    from.awaitingLater = false
    const prev = from.prevUnanswered
    const next = from.nextUnanswered
    if (prev === undefined) this.unanswered = next
    else prev.nextUnanswered = next
    if (next !== undefined) next.prevUnanswered = prev
    from.prevUnanswered = undefined
    from.nextUnanswered = undefined
  }

  /** Arm a caller's deadline. */
  arm(from: FromImpl, millis: number): void {
    from.timeoutMillis = millis
    const deadlines = this.deadlines ?? (this.deadlines = new DeadlinesImpl(this.clock, this.runtime))
    deadlines.arm(from, millis)
  }

  exitedError(reason: M.ExitReason<unknown>): M.ProcessExited<unknown> {
    return new M.ProcessExited({ process: this.name, reason })
  }

  notifyAbandoned(from: FromImpl): void {
    if (this.behaviour.handleAbandoned !== undefined) this.push({ kind: ABANDONED_NOTICE, from })
  }

  /** The new state after a message; the Ref gets it at the next write. */
  setState(state: unknown): void {
    if (state !== this.state) {
      this.state = state
      this.dirty = true
    }
  }

  /** Write the state to the Ref (the fiber yields it); one Effect per process, reused for every write. */
  readonly flushState: Effect.Effect<void> = Ref.update(this.stateRef, () => {
    this.dirty = false
    return this.state
  })

  flush(): Effect.Effect<void> {
    return this.flushState
  }

  /** Run the callback for one envelope; returns a result, an Effect of one, or SKIP. */
  dispatch(envelope: Envelope): unknown {
    const behaviour = this.behaviour
    switch (envelope.kind) {
      case CALL: {
        if (envelope.status !== PENDING) return SKIP
        this.handled++
        if (behaviour.handleCall === undefined) return Effect.fail(new M.NoHandler({ callback: "handleCall" }))
        return behaviour.handleCall(envelope.request, envelope, this.state, this)
      }
      case CAST: {
        this.handled++
        if (behaviour.handleCast === undefined) return Effect.fail(new M.NoHandler({ callback: "handleCast" }))
        return behaviour.handleCast(envelope.message, this.state, this)
      }
      case INFO: {
        this.handled++
        if (behaviour.handleInfo === undefined) return SKIP
        return behaviour.handleInfo(envelope.message, this.state, this)
      }
      case ABANDONED_NOTICE: {
        if (behaviour.handleAbandoned === undefined) return SKIP
        this.handled++
        return behaviour.handleAbandoned(envelope.from, this.state, this)
      }
      case STOP:
      case SYSTEM:
        return SKIP
    }
  }

  /** A callback crashed: keep its caller (if any) to fail with the exit reason, put back the rest. */
  crash(envelope: Envelope, index: number, cause: Cause.Cause<unknown>): M.ExitReason<unknown> {
    if (envelope.kind === CALL) envelope.keepUnanswered()
    this.mailbox.requeue(index + 1)
    return M.crashed(cause)
  }

  /** Apply a callback's result; returns the exit reason when the process must stop. */
  apply(envelope: Envelope, result: unknown): M.ExitReason<unknown> | undefined {
    const call = envelope.kind === CALL ? envelope : undefined
    const tag = typeof result === "object" && result !== null && "_tag" in result ? result._tag : undefined
    switch (tag) {
      case "NoReply": {
        this.setState((result as M.NoReply<unknown>).state)
        if (call !== undefined) {
          if (call.status === PENDING) call.keepUnanswered()
          // The caller gave up while the handler ran; the behaviour may have kept `from`.
          else if (call.status === ABANDONED) this.notifyAbandoned(call)
        }
        return undefined
      }
      case "Stop": {
        const stop = result as M.Stop<unknown, unknown>
        this.setState(stop.state)
        // Unanswered: the caller fails with the exit reason unless terminate replies.
        if (call !== undefined) call.keepUnanswered()
        return M.stopped(stop.reason)
      }
      case "Reply": {
        if (call === undefined) break
        const reply = result as M.Reply<unknown, unknown>
        this.setState(reply.state)
        call.settle(Exit.succeed(reply.value))
        return undefined
      }
      case "StopReply": {
        if (call === undefined) break
        const stop = result as M.StopReply<unknown, unknown, unknown>
        this.setState(stop.state)
        call.settle(Exit.succeed(stop.value))
        return M.stopped(stop.reason)
      }
    }
    if (call !== undefined) call.keepUnanswered()
    return M.crashed(Cause.die(new M.BadReturn({ callback: callbackName(envelope), value: result })))
  }

  /** After terminate: fail every caller still waiting or queued, stop timers, publish the exit. */
  finalize(reason: M.ExitReason<unknown>): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.exitReason = reason
      const failure = Exit.fail(this.exitedError(reason))
      for (const envelope of this.mailbox.drain()) {
        if (envelope.kind === CALL || envelope.kind === SYSTEM) envelope.settle(failure)
      }
      const unanswered: Array<FromImpl> = []
      for (let from = this.unanswered; from !== undefined; from = from.nextUnanswered) unanswered.push(from)
      // Oldest first, as they were kept.
      for (let i = unanswered.length - 1; i >= 0; i--) unanswered[i]!.settle(failure)
      Deferred.unsafeDone(this.exited, Exit.succeed(reason))
      const scope = this.scope
      this.scope = undefined
      // Closing the link scope removes its finalizer from the owner's Scope: a process that exits by
      // itself leaves nothing in a long-lived owner Scope.
      const detach = scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
      return this.deadlines === undefined ? detach : Effect.zipRight(this.deadlines.shutdown(), detach)
    })
  }
}

export const SKIP: unique symbol = Symbol("@warren/process/skip")

const callbackName = (envelope: Envelope): string => {
  switch (envelope.kind) {
    case CALL:
      return "handleCall"
    case CAST:
      return "handleCast"
    case INFO:
      return "handleInfo"
    case ABANDONED_NOTICE:
      return "handleAbandoned"
    case STOP:
    case SYSTEM:
      return "system"
  }
}

/** Times in a row an eager process runs the fibers queued behind it before it suspends (bounds its turn). */
const MAX_PULLS = 64

/** Messages handled in a row before the process fiber yields to others. */
const YIELD_EVERY = 512

/** The process fiber: handle messages until a stop, then terminate once, then finalize. */
export const runProcess = (proc: ProcessImpl): Effect.Effect<void> => {
  const mailbox = proc.mailbox
  const eager = proc.eager
  const loop = Effect.gen(function*() {
    // Times in a row the process let its eager scheduler's queued fibers run before suspending.
    let pulls = 0
    for (;;) {
      if (mailbox.queue.length === 0) {
        if (proc.shutdownRequested) return M.shutdown as M.ExitReason<unknown>
        if (proc.dirty && refWrites !== NEVER) yield* proc.flush()
        if (eager !== undefined && eager.pending && pulls < MAX_PULLS) {
          // The callers just answered are queued on this scheduler: run them here, between two messages, and
          // handle what they send next without a suspension and a wake-up of this fiber in between.
          pulls++
          eager.runQueued()
          continue
        }
        pulls = 0
        yield* mailbox.awaitMessages
        continue
      }
      const batch = mailbox.take()
      for (let i = 0; i < batch.length; i++) {
        mailbox.cursor = i
        if (i > 0 && i % YIELD_EVERY === 0) {
          // Plain handlers never give control back to the runtime: let other fibers run now and then.
          if (proc.dirty && refWrites !== NEVER) yield* proc.flush()
          yield* Effect.yieldNow()
        }
        if (proc.shutdownRequested) {
          mailbox.requeue(i)
          return M.shutdown
        }
        const envelope = batch[i]!
        if (proc.suspended && !isSystem(envelope)) {
          mailbox.hold(envelope)
          continue
        }
        if (envelope.kind === STOP) {
          mailbox.requeue(i + 1)
          return envelope.reason
        }
        if (envelope.kind === SYSTEM) {
          if (proc.dirty) yield* proc.flush()
          const wasSuspended = proc.suspended
          yield* handleSystem(proc, envelope)
          if (wasSuspended && !proc.suspended) {
            // Resumed: the messages put aside come first.
            mailbox.release(i + 1)
            break
          }
          continue
        }
        let result: unknown
        try {
          result = proc.dispatch(envelope)
        } catch (defect) {
          return proc.crash(envelope, i, Cause.die(defect))
        }
        if (result === SKIP) continue
        if (Effect.isEffect(result)) {
          if (proc.dirty && refWrites !== NEVER) yield* proc.flush()
          // The callbacks' requirements were provided by `start`'s context, inherited by this fiber.
          const exit = yield* Effect.exit(result as Effect.Effect<unknown, unknown>)
          if (exit._tag === "Failure") return proc.crash(envelope, i, exit.cause)
          result = exit.value
        }
        const reason = proc.apply(envelope, result)
        if (reason !== undefined) {
          mailbox.requeue(i + 1)
          return reason
        }
        if (refWrites === PER_MESSAGE && proc.dirty) yield* proc.flush()
      }
      if (mailbox.batch === batch) mailbox.requeue(batch.length)
    }
  })
  return loop.pipe(
    Effect.catchAllCause((cause) => Effect.succeed(M.crashed(cause))),
    Effect.flatMap((reason) => terminateThenFinalize(proc, reason)),
    // Only reachable if the process fiber itself is interrupted (it is a daemon nobody else holds):
    // no terminate then, like a kill, but callers are still failed.
    Effect.onExit((exit) =>
      exit._tag === "Failure" && proc.exitReason === undefined ? proc.finalize(M.crashed(exit.cause)) : Effect.void
    )
  )
}

const terminateThenFinalize = (proc: ProcessImpl, reason: M.ExitReason<unknown>): Effect.Effect<void> => {
  const terminate = proc.behaviour.terminate
  const finish = (final: M.ExitReason<unknown>) =>
    final._tag === "Crashed"
      ? Effect.zipRight(
        // OTP's crash report: a crash is never silent.
        Effect.logError("process crashed", final.cause).pipe(Effect.annotateLogs("process", proc.name)),
        proc.finalize(final)
      )
      : proc.finalize(final)
  const flushed = proc.dirty ? proc.flush() : Effect.void
  if (terminate === undefined) return Effect.zipRight(flushed, finish(reason))
  return Effect.zipRight(flushed, Effect.suspend(() => toEffect(terminate(reason, proc.state, proc)))).pipe(
    Effect.exit,
    Effect.flatMap((exit) => finish(exit._tag === "Failure" ? M.crashed(exit.cause) : reason))
  )
}

export const toEffect = (value: unknown): Effect.Effect<unknown, unknown> =>
  Effect.isEffect(value) ? (value as Effect.Effect<unknown, unknown>) : Effect.succeed(value)
