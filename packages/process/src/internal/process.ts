/**
 * The process engine: one fiber draining a mailbox (a plain array), state held by that fiber,
 * calls as a synchronous `Effect.async` registration (no fork per call), call timeouts run by one
 * timer fiber per distinct timeout duration (deadlines arrive in order, so each timer list is a FIFO).
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Equal from "effect/Equal"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Scope from "effect/Scope"
import * as M from "./model.js"

// ---------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------

const CALL = 0
const CAST = 1
const INFO = 2
const STOP = 3
const ABANDONED = 4

type Envelope =
  | { readonly kind: typeof CALL; readonly request: unknown; readonly from: FromImpl }
  | { readonly kind: typeof CAST | typeof INFO; readonly message: unknown }
  | { readonly kind: typeof STOP; readonly reason: M.ExitReason<unknown> }
  | { readonly kind: typeof ABANDONED; readonly from: FromImpl }

type CallError = M.CallTimeout | M.ProcessExited<unknown>

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

// ---------------------------------------------------------------------------
// Callers
// ---------------------------------------------------------------------------

const PENDING = 0
const REPLIED = 1
const ABANDONED_CALLER = 2

/** A waiting caller: the resume callback of its `Effect.async`, its timer links and its state. */
class FromImpl implements M.From<unknown> {
  declare readonly _A: (_: unknown) => void
  status: typeof PENDING | typeof REPLIED | typeof ABANDONED_CALLER = PENDING
  /** The handler returned `noreply`: the caller is in `unanswered` until `replyTo` or exit. */
  awaitingLater = false
  timers: TimerList | undefined = undefined
  prev: FromImpl | undefined = undefined
  next: FromImpl | undefined = undefined
  deadline = 0
  constructor(
    readonly id: number,
    readonly process: ProcessImpl,
    readonly resume: (effect: Effect.Effect<unknown, CallError>) => void
  ) {}
}

/** Calls waiting with the same timeout, oldest first; one fiber sleeps until the head's deadline. */
class TimerList {
  head: FromImpl | undefined = undefined
  tail: FromImpl | undefined = undefined
  wake: (() => void) | undefined = undefined
  fiber: Fiber.RuntimeFiber<void> | undefined = undefined
  constructor(readonly millis: number, readonly duration: Duration.Duration) {}

  append(from: FromImpl): void {
    from.timers = this
    from.prev = this.tail
    from.next = undefined
    if (this.tail === undefined) this.head = from
    else this.tail.next = from
    this.tail = from
    if (this.wake !== undefined) {
      const wake = this.wake
      this.wake = undefined
      wake()
    }
  }

  unlink(from: FromImpl): void {
    if (from.prev === undefined) this.head = from.next
    else from.prev.next = from.next
    if (from.next === undefined) this.tail = from.prev
    else from.next.prev = from.prev
    from.prev = undefined
    from.next = undefined
    from.timers = undefined
  }
}

const processRefVariance = {
  _Call: (_: unknown) => {},
  _Reply: (): unknown => undefined,
  _Cast: (_: unknown) => {},
  _Info: (_: unknown) => {},
  _Reason: (): unknown => undefined
}

let nextProcessId = 0

/** The live process behind a `ProcessRef`. Only the process fiber touches `state`. */
export class ProcessImpl implements M.ProcessRef<unknown, unknown, unknown, unknown, unknown> {
  readonly [M.ProcessRefTypeId] = processRefVariance
  readonly id: number
  readonly name: string
  mailbox: Array<Envelope> = []
  waiter: ((_: Effect.Effect<void>) => void) | undefined = undefined
  /** Set once terminate has run and every caller has been failed. */
  exitReason: M.ExitReason<unknown> | undefined = undefined
  shutdownRequested = false
  state: unknown = undefined
  readonly unanswered = new Set<FromImpl>()
  readonly timerLists = new Map<number, TimerList>()
  readonly exited: Deferred.Deferred<M.ExitReason<unknown>>
  nextFromId = 0
  readonly awaitMessages: Effect.Effect<void>
  /** The process fiber, once forked (used to refuse a process waiting for its own exit). */
  fiber: Fiber.RuntimeFiber<void> | undefined = undefined
  /** The Scope linking the process to its owner; closed (and detached from the owner) at exit. */
  scope: Scope.CloseableScope | undefined = undefined

  constructor(
    name: string | undefined,
    readonly behaviour: AnyBehaviour,
    readonly clock: Clock.Clock,
    readonly runtime: Runtime.Runtime<never>
  ) {
    this.id = ++nextProcessId
    this.name = name ?? `#${this.id}`
    this.exited = Deferred.unsafeMake(FiberId.none)
    this.awaitMessages = Effect.async<void>((resume) => {
      this.waiter = resume
    })
  }

  /** Deliver an envelope; false when the process has exited (the envelope is dropped). */
  push(envelope: Envelope): boolean {
    if (this.exitReason !== undefined) return false
    this.mailbox.push(envelope)
    this.wakeUp()
    return true
  }

  wakeUp(): void {
    if (this.waiter !== undefined) {
      const waiter = this.waiter
      this.waiter = undefined
      waiter(Effect.void)
    }
  }

  /** Put back the unprocessed tail of a batch, ahead of anything that arrived since. */
  requeue(batch: Array<Envelope>, from: number): void {
    if (from >= batch.length) return
    const rest = batch.slice(from)
    this.mailbox = this.mailbox.length === 0 ? rest : rest.concat(this.mailbox)
  }

  exitedError(reason: M.ExitReason<unknown>): M.ProcessExited<unknown> {
    return new M.ProcessExited({ process: this.name, reason })
  }

  // -- callers -------------------------------------------------------------

  armTimer(from: FromImpl, millis: number, duration: Duration.Duration): void {
    from.deadline = this.clock.unsafeCurrentTimeMillis() + millis
    const list = this.timerLists.get(millis)
    if (list !== undefined) return list.append(from)
    // A new list gets its entry before its fiber starts (the fiber may run at once and sees it non-empty).
    const created = new TimerList(millis, duration)
    this.timerLists.set(millis, created)
    created.append(from)
    created.fiber = Runtime.runFork(this.runtime)(Effect.interruptible(timerLoop(this, created)))
  }

  /** Answer a caller once; false if it was already answered or gave up. */
  settle(from: FromImpl, result: Effect.Effect<unknown, CallError>): boolean {
    if (from.status !== PENDING) return false
    from.status = REPLIED
    if (from.timers !== undefined) from.timers.unlink(from)
    if (from.awaitingLater) {
      from.awaitingLater = false
      this.unanswered.delete(from)
    }
    from.resume(result)
    return true
  }

  /** The caller gave up (timeout or interruption): forget it, and tell the behaviour if it kept it. */
  abandon(from: FromImpl): void {
    if (from.status !== PENDING) return
    from.status = ABANDONED_CALLER
    if (from.timers !== undefined) from.timers.unlink(from)
    if (from.awaitingLater) {
      from.awaitingLater = false
      this.unanswered.delete(from)
      this.notifyAbandoned(from)
    }
  }

  notifyAbandoned(from: FromImpl): void {
    if (this.behaviour.handleAbandoned !== undefined) this.push({ kind: ABANDONED, from })
  }

  timeout(from: FromImpl, duration: Duration.Duration): void {
    if (from.status !== PENDING) return
    this.abandon(from)
    from.resume(Effect.fail(new M.CallTimeout({ process: this.name, timeout: duration })))
  }

  // -- the loop ------------------------------------------------------------

  /** Run the callback for one envelope; returns a result, an Effect of one, or SKIP. */
  dispatch(envelope: Envelope): unknown {
    const behaviour = this.behaviour
    switch (envelope.kind) {
      case CALL: {
        if (envelope.from.status !== PENDING) return SKIP
        if (behaviour.handleCall === undefined) return Effect.fail(new M.NoHandler({ callback: "handleCall" }))
        return behaviour.handleCall(envelope.request, envelope.from, this.state, this)
      }
      case CAST: {
        if (behaviour.handleCast === undefined) return Effect.fail(new M.NoHandler({ callback: "handleCast" }))
        return behaviour.handleCast(envelope.message, this.state, this)
      }
      case INFO: {
        if (behaviour.handleInfo === undefined) return SKIP
        return behaviour.handleInfo(envelope.message, this.state, this)
      }
      case ABANDONED: {
        if (behaviour.handleAbandoned === undefined) return SKIP
        return behaviour.handleAbandoned(envelope.from, this.state, this)
      }
      case STOP:
        return SKIP
    }
  }

  /** A callback crashed: keep its caller (if any) to fail with the exit reason, put back the rest. */
  crash(envelope: Envelope, batch: Array<Envelope>, index: number, cause: Cause.Cause<unknown>): M.ExitReason<unknown> {
    if (envelope.kind === CALL) this.keepUnanswered(envelope.from)
    this.requeue(batch, index + 1)
    return M.crashed(cause)
  }

  /** The call was not answered by its handler: it waits for `replyTo` or fails at exit. */
  keepUnanswered(from: FromImpl): void {
    if (from.status === PENDING && !from.awaitingLater) {
      from.awaitingLater = true
      this.unanswered.add(from)
    }
  }

  /** Apply a callback's result; returns the exit reason when the process must stop. */
  apply(envelope: Envelope, result: unknown): M.ExitReason<unknown> | undefined {
    const isCall = envelope.kind === CALL
    const tag = typeof result === "object" && result !== null && "_tag" in result ? result._tag : undefined
    switch (tag) {
      case "NoReply": {
        this.state = (result as M.NoReply<unknown>).state
        if (isCall) {
          const from = envelope.from
          if (from.status === PENDING) {
            this.keepUnanswered(from)
          } else if (from.status === ABANDONED_CALLER) {
            // The caller gave up while the handler ran; the behaviour may have kept `from`.
            this.notifyAbandoned(from)
          }
        }
        return undefined
      }
      case "Stop": {
        const stop = result as M.Stop<unknown, unknown>
        this.state = stop.state
        // Unanswered: the caller fails with the exit reason unless terminate replies.
        if (isCall) this.keepUnanswered(envelope.from)
        return M.stopped(stop.reason)
      }
      case "Reply": {
        if (!isCall) break
        const reply = result as M.Reply<unknown, unknown>
        this.state = reply.state
        this.settle(envelope.from, Exit.succeed(reply.value))
        return undefined
      }
      case "StopReply": {
        if (!isCall) break
        const stop = result as M.StopReply<unknown, unknown, unknown>
        this.state = stop.state
        this.settle(envelope.from, Exit.succeed(stop.value))
        return M.stopped(stop.reason)
      }
    }
    if (isCall) this.keepUnanswered(envelope.from)
    return M.crashed(Cause.die(new M.BadReturn({ callback: callbackName(envelope), value: result })))
  }

  /** After terminate: fail every caller still waiting or queued, stop timers, publish the exit. */
  finalize(reason: M.ExitReason<unknown>): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.exitReason = reason
      const failure = Exit.fail(this.exitedError(reason))
      const queued = this.mailbox
      this.mailbox = []
      for (const envelope of queued) {
        if (envelope.kind === CALL) this.settle(envelope.from, failure)
      }
      for (const from of Array.from(this.unanswered)) this.settle(from, failure)
      const fibers: Array<Fiber.RuntimeFiber<void>> = []
      for (const list of this.timerLists.values()) {
        if (list.fiber !== undefined) fibers.push(list.fiber)
      }
      this.timerLists.clear()
      Deferred.unsafeDone(this.exited, Exit.succeed(reason))
      const scope = this.scope
      this.scope = undefined
      // Closing the link scope removes its finalizer from the owner's Scope: a process that exits by
      // itself leaves nothing in a long-lived owner Scope.
      const detach = scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
      return fibers.length === 0 ? detach : Effect.zipRight(Fiber.interruptAll(fibers), detach)
    })
  }
}

const SKIP: unique symbol = Symbol("@warren/process/skip")

const callbackName = (envelope: Envelope): string => {
  switch (envelope.kind) {
    case CALL:
      return "handleCall"
    case CAST:
      return "handleCast"
    case INFO:
      return "handleInfo"
    case ABANDONED:
      return "handleAbandoned"
    case STOP:
      return "stop"
  }
}

/** Idle timer fibers kept per process (one per distinct call timeout in use). */
const MAX_IDLE_TIMER_LISTS = 8

const timerLoop = (proc: ProcessImpl, list: TimerList): Effect.Effect<void> =>
  Effect.gen(function*() {
    for (;;) {
      const head = list.head
      if (head === undefined) {
        if (proc.timerLists.size > MAX_IDLE_TIMER_LISTS) {
          // Many distinct timeouts in use: do not keep an idle fiber for each.
          proc.timerLists.delete(list.millis)
          return
        }
        yield* Effect.async<void>((resume) => {
          list.wake = () => resume(Effect.void)
        })
        continue
      }
      const now = proc.clock.unsafeCurrentTimeMillis()
      if (head.deadline <= now) {
        list.unlink(head)
        proc.timeout(head, list.duration)
        continue
      }
      yield* proc.clock.sleep(Duration.millis(head.deadline - now))
    }
  })

/** Messages handled in a row before the process fiber yields to others. */
const YIELD_EVERY = 512

/** The process fiber: handle messages until a stop, then terminate once, then finalize. */
const runProcess = (proc: ProcessImpl): Effect.Effect<void> => {
  const loop = Effect.gen(function*() {
    for (;;) {
      if (proc.mailbox.length === 0) {
        if (proc.shutdownRequested) return M.shutdown as M.ExitReason<unknown>
        yield* proc.awaitMessages
        continue
      }
      const batch = proc.mailbox
      proc.mailbox = []
      for (let i = 0; i < batch.length; i++) {
        if (i > 0 && i % YIELD_EVERY === 0) {
          // Plain handlers never give control back to the runtime: let other fibers run now and then.
          yield* Effect.yieldNow()
        }
        if (proc.shutdownRequested) {
          proc.requeue(batch, i)
          return M.shutdown
        }
        const envelope = batch[i]!
        if (envelope.kind === STOP) {
          proc.requeue(batch, i + 1)
          return envelope.reason
        }
        let result: unknown
        try {
          result = proc.dispatch(envelope)
        } catch (defect) {
          return proc.crash(envelope, batch, i, Cause.die(defect))
        }
        if (result === SKIP) continue
        if (Effect.isEffect(result)) {
          // The callbacks' requirements were provided by `start`'s context, inherited by this fiber.
          const exit = yield* Effect.exit(result as Effect.Effect<unknown, unknown>)
          if (exit._tag === "Failure") return proc.crash(envelope, batch, i, exit.cause)
          result = exit.value
        }
        const reason = proc.apply(envelope, result)
        if (reason !== undefined) {
          proc.requeue(batch, i + 1)
          return reason
        }
      }
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
  if (terminate === undefined) return finish(reason)
  return Effect.suspend(() => toEffect(terminate(reason, proc.state, proc))).pipe(
    Effect.exit,
    Effect.flatMap((exit) => finish(exit._tag === "Failure" ? M.crashed(exit.cause) : reason))
  )
}

const toEffect = (value: unknown): Effect.Effect<unknown, unknown> =>
  Effect.isEffect(value) ? (value as Effect.Effect<unknown, unknown>) : Effect.succeed(value)

// ---------------------------------------------------------------------------
// Public operations (loosely typed; `Process.ts` gives them their types)
// ---------------------------------------------------------------------------

const DEFAULT_TIMEOUT = Duration.seconds(5)

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
      const proc = new ProcessImpl(options?.name, behaviour, clock, runtime)
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
      proc.state = (result as M.Ok<unknown>).state
      // Interruptible like any fiber (this code runs uninterruptibly): callbacks may use timeouts and races.
      proc.fiber = yield* Effect.forkDaemon(Effect.interruptible(runProcess(proc)))
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
      proc.wakeUp()
    }
    return Deferred.await(proc.exited)
  })

export const call = (
  proc: ProcessImpl,
  request: unknown,
  options: M.CallOptions | undefined
): Effect.Effect<unknown, CallError> => {
  const duration = options?.timeout === undefined ? DEFAULT_TIMEOUT : Duration.decode(options.timeout)
  const millis = Duration.toMillis(duration)
  return Effect.async<unknown, CallError>((resume) => {
    if (proc.exitReason !== undefined) {
      resume(Effect.fail(proc.exitedError(proc.exitReason)))
      return
    }
    const from = new FromImpl(proc.nextFromId++, proc, resume)
    if (Number.isFinite(millis)) proc.armTimer(from, millis, duration)
    proc.push({ kind: CALL, request, from })
    return Effect.sync(() => proc.abandon(from))
  })
}

export const unsafeCast = (proc: ProcessImpl, message: unknown): boolean => proc.push({ kind: CAST, message })

export const unsafeSend = (proc: ProcessImpl, message: unknown): boolean => proc.push({ kind: INFO, message })

export const unsafeReplyTo = (from: FromImpl, value: unknown): boolean => from.process.settle(from, Exit.succeed(value))

/** Ordered stop: messages already queued are handled first, then terminate, then the exit. */
export const exit = (proc: ProcessImpl, reason: M.ExitReason<unknown>): Effect.Effect<M.ExitReason<unknown>> =>
  notFromItself(proc, "exit", () => {
    proc.push({ kind: STOP, reason })
    return Deferred.await(proc.exited)
  })

export const awaitExit = (proc: ProcessImpl): Effect.Effect<M.ExitReason<unknown>> =>
  notFromItself(proc, "await", () => Deferred.await(proc.exited))

/** A process waiting for its own exit would wait for ever: make that a defect instead (OTP: `calling_self`). */
const notFromItself = <A>(proc: ProcessImpl, operation: string, body: () => Effect.Effect<A>): Effect.Effect<A> =>
  Effect.fiberIdWith((id) =>
    proc.fiber !== undefined && proc.exitReason === undefined && Equal.equals(id, proc.fiber.id())
      ? Effect.dieMessage(`Process.${operation} called by process ${proc.name} on itself`)
      : body()
  )

export const exitReason = (proc: ProcessImpl): Option.Option<M.ExitReason<unknown>> =>
  Option.fromNullable(proc.exitReason)
