/**
 * Erlang-style processes (`gen_server`) on Effect.
 *
 * A process is one fiber draining a mailbox, one message at a time in arrival order, with its state
 * owned by that fiber. Its behaviour is a record of callbacks (`init`, `handleCall`, `handleCast`,
 * `handleInfo`, `terminate`, ...) returning tagged results built with `ok`, `ignore`, `noreply`,
 * `reply`, `stop` and `stopReply`. Callbacks may return their result directly or as an Effect.
 *
 * @example
 * ```ts
 * const counter: Process.Behaviour<number, number, "get", number, number, never, never, never> = {
 *   init: (n) => Process.ok(n),
 *   handleCall: (_req, _from, n) => Process.reply(n, n),
 *   handleCast: (k, n) => Process.noreply(n + k)
 * }
 * const ref = yield* Process.start(counter, 0)
 * yield* Process.cast(ref, 2)
 * const n = yield* Process.call(ref, "get") // 2
 * ```
 */
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type {
  AnyProcessRef,
  Behaviour,
  CallOptions,
  CallTimeout,
  ExitReason,
  From,
  InitIgnored,
  InitStopped,
  ProcessExited,
  ProcessRef,
  ReplyFor,
  StartOptions
} from "./internal/model.js"
import { ProcessRefTypeId } from "./internal/model.js"
import type { ProcessInfo, ReplaceStateFailed } from "./internal/model.js"
import * as internal from "./internal/process.js"
import * as sys from "./internal/sys.js"

export * from "./internal/model.js"

// The engine works on erased types; the casts below are the one place where the public, precise types
// meet it. Public handles and `From`s are the engine's own objects.
const impl = (ref: AnyProcessRef): internal.ProcessImpl => ref as unknown as internal.ProcessImpl
type FromImplOf = Parameters<typeof internal.unsafeReplyTo>[0]
const erased = <Arg, State, Call, Reply, Cast, Info, Reason, R>(
  behaviour: Behaviour<Arg, State, Call, Reply, Cast, Info, Reason, R>
): internal.AnyBehaviour => behaviour as unknown as internal.AnyBehaviour
const typedReason = <Reason>(effect: Effect.Effect<ExitReason<unknown>>): Effect.Effect<ExitReason<Reason>> =>
  effect as Effect.Effect<ExitReason<Reason>>

/** True if `u` is a process handle. */
export const isProcessRef = (u: unknown): u is AnyProcessRef =>
  typeof u === "object" && u !== null && ProcessRefTypeId in u

/**
 * Start a process like `gen_server:start_link`: run `init(arg, self)` and wait for it. `ok(state)` gives the
 * handle; `ignore` fails with `InitIgnored`; `stop(reason)` or a failure of `init` fails with `InitStopped`
 * (no `terminate` in either case). The process is linked to the current Scope: when it closes, the process
 * stops with reason `Shutdown` after the message in hand (queued messages are dropped, their callers fail),
 * `terminate` runs, and the Scope waits for it.
 */
export const start = <Arg, State, Call = never, Reply = never, Cast = never, Info = never, Reason = never, R = never>(
  behaviour: Behaviour<Arg, State, Call, Reply, Cast, Info, Reason, R>,
  arg: Arg,
  options?: StartOptions
): Effect.Effect<ProcessRef<Call, Reply, Cast, Info, Reason>, InitStopped<Reason> | InitIgnored, R | Scope.Scope> =>
  internal.start(erased(behaviour), arg, options, true) as unknown as Effect.Effect<
    ProcessRef<Call, Reply, Cast, Info, Reason>,
    InitStopped<Reason> | InitIgnored,
    R | Scope.Scope
  >

/**
 * Like `start`, but not linked to any Scope: the process lives until it stops itself or `exit` is called.
 */
export const startDetached = <
  Arg,
  State,
  Call = never,
  Reply = never,
  Cast = never,
  Info = never,
  Reason = never,
  R = never
>(
  behaviour: Behaviour<Arg, State, Call, Reply, Cast, Info, Reason, R>,
  arg: Arg,
  options?: StartOptions
): Effect.Effect<ProcessRef<Call, Reply, Cast, Info, Reason>, InitStopped<Reason> | InitIgnored, R> =>
  internal.start(erased(behaviour), arg, options, false) as unknown as Effect.Effect<
    ProcessRef<Call, Reply, Cast, Info, Reason>,
    InitStopped<Reason> | InitIgnored,
    R
  >

/**
 * Send a request and wait for the reply (`gen_server:call`), by default for 5 seconds. Fails with
 * `CallTimeout` when no reply comes in time and with `ProcessExited` when the process has exited or exits
 * before replying. A caller that times out or is interrupted leaves nothing behind: if its request is
 * still queued it is skipped, and a late reply is dropped.
 */
export const call = <Call, Reply, Reason, Q extends Call>(
  ref: ProcessRef<Call, Reply, never, never, Reason>,
  request: Q,
  options?: CallOptions
): Effect.Effect<ReplyFor<Q, Call, Reply>, CallTimeout | ProcessExited<Reason>> =>
  internal.call(impl(ref as AnyProcessRef), request, options) as Effect.Effect<
    ReplyFor<Q, Call, Reply>,
    CallTimeout | ProcessExited<Reason>
  >

/**
 * `call` for Promise code: the same call (the process's mailbox, `From`, deadline and `replyTo`), but the caller
 * is a Promise, settled directly by the reply, so no fiber is created or resumed per call (from Promise code a
 * `runPromise(call(...))` costs a fiber, its scheduling and two promises more). Rejects with `CallTimeout` or
 * `ProcessExited` (the error itself). A Promise cannot be interrupted: the caller gives up only at its timeout.
 */
export const unsafeCallPromise = <Call, Reply, Reason, Q extends Call>(
  ref: ProcessRef<Call, Reply, never, never, Reason>,
  request: Q,
  options?: CallOptions
): Promise<ReplyFor<Q, Call, Reply>> =>
  internal.unsafeCallPromise(impl(ref as AnyProcessRef), request, options) as Promise<ReplyFor<Q, Call, Reply>>

/** Queue a cast (`gen_server:cast`); never waits for the handler, and is dropped if the process has exited. */
export const cast = <Cast>(ref: ProcessRef<never, unknown, Cast, never, unknown>, message: Cast): Effect.Effect<void> =>
  Effect.sync(() => {
    internal.unsafeCast(impl(ref), message)
  })

/** Synchronous `cast`, for callbacks outside Effect; false if the process has exited. */
export const unsafeCast = <Cast>(ref: ProcessRef<never, unknown, Cast, never, unknown>, message: Cast): boolean =>
  internal.unsafeCast(impl(ref), message)

/** Queue a plain message for `handleInfo` (`Pid ! Msg`); never waits, dropped if the process has exited. */
export const send = <Info>(ref: ProcessRef<never, unknown, never, Info, unknown>, message: Info): Effect.Effect<void> =>
  Effect.sync(() => {
    internal.unsafeSend(impl(ref), message)
  })

/**
 * Synchronous `send`, for Node callbacks (amqplib consumers, socket events) that feed a process;
 * false if the process has exited.
 */
export const unsafeSend = <Info>(ref: ProcessRef<never, unknown, never, Info, unknown>, message: Info): boolean =>
  internal.unsafeSend(impl(ref), message)

/**
 * Answer a call later (`gen_server:reply`): `handleCall` returned `noreply` and kept `from`.
 * A `From` is answered at most once; answering a caller that gave up does nothing.
 */
export const replyTo = <A>(from: From<A>, value: A): Effect.Effect<void> =>
  Effect.sync(() => {
    internal.unsafeReplyTo(from as unknown as FromImplOf, value)
  })

/** Synchronous `replyTo`; true if the caller got the value, false if it was answered already or gave up. */
export const unsafeReplyTo = <A>(from: From<A>, value: A): boolean =>
  internal.unsafeReplyTo(from as unknown as FromImplOf, value)

/**
 * Stop a process like `gen_server:stop` and wait until it has exited: the stop is queued behind the
 * messages already sent, then `terminate` runs. Without a reason the exit reason is `Normal`, otherwise
 * `Stopped(reason)`. Returns the exit reason (the earlier one if the process had already exited).
 * Do not call it from the process's own callbacks (return `stop(reason, state)` there).
 */
export const exit: {
  <Reason>(ref: ProcessRef<never, unknown, never, never, Reason>): Effect.Effect<ExitReason<Reason>>
  <Reason>(ref: ProcessRef<never, unknown, never, never, Reason>, reason: Reason): Effect.Effect<ExitReason<Reason>>
} = (ref: AnyProcessRef, ...reason: [] | [unknown]) =>
  internal.exit(impl(ref), reason.length === 0 ? normalReason : { _tag: "Stopped", reason: reason[0] })

/**
 * Stop a process as its Scope would: reason `Shutdown` right after the message in hand, queued messages
 * dropped (their callers fail with `ProcessExited`), `terminate` runs. Waits for the exit.
 */
export const stopNow = <Reason>(
  ref: ProcessRef<never, unknown, never, never, Reason>
): Effect.Effect<ExitReason<Reason>> => typedReason<Reason>(internal.shutdownAndAwait(impl(ref)))

/** Wait for the process to exit and return why (a monitor's `'DOWN'` reason). */
const await_ = <Reason>(ref: ProcessRef<never, unknown, never, never, Reason>): Effect.Effect<ExitReason<Reason>> =>
  typedReason<Reason>(internal.awaitExit(impl(ref)))

export {
  /** Wait for the process to exit and return why (a monitor's `'DOWN'` reason). */
  await_ as await
}

/** The exit reason if the process has exited (after `terminate`), else none. */
export const exitReason = <Reason>(
  ref: ProcessRef<never, unknown, never, never, Reason>
): Option.Option<ExitReason<Reason>> => internal.exitReason(impl(ref)) as Option.Option<ExitReason<Reason>>

/** True until the process has exited (it is still alive while `terminate` runs). */
export const isAlive = (ref: AnyProcessRef): boolean => impl(ref).exitReason === undefined

// ---------------------------------------------------------------------------
// Introspection (OTP's `sys`): system messages go through the mailbox in order, so they run between two
// messages; a suspended process still answers them. They are not meant for a process's own callbacks
// (calling them on itself is a defect, as `calling_self` is in OTP).
// ---------------------------------------------------------------------------

/**
 * The process's state (`sys:get_state`), read from its Ref after the messages sent before this request.
 * Typed `unknown`: a handle does not carry its behaviour's state type (a pid does not either).
 * Fails like `call` (default timeout 5 seconds).
 */
export const getState = (
  ref: AnyProcessRef,
  options?: CallOptions
): Effect.Effect<unknown, CallTimeout | ProcessExited<unknown>> =>
  internal.notFromItself(impl(ref), "getState", () => sys.getState(impl(ref), options))

/**
 * Replace the process's state with `f(state)` between two messages (`sys:replace_state`) and return the new
 * state. If `f` throws, the process keeps its state and this fails with `ReplaceStateFailed`.
 */
export const replaceState = (
  ref: AnyProcessRef,
  f: (state: unknown) => unknown,
  options?: CallOptions
): Effect.Effect<unknown, CallTimeout | ProcessExited<unknown> | ReplaceStateFailed> =>
  internal.notFromItself(impl(ref), "replaceState", () => sys.replaceState(impl(ref), f, options))

/**
 * Suspend the process (`sys:suspend`) once the messages sent before have been handled: from then on it handles
 * only system messages; calls, casts and infos queue up (calls still time out) until `resume`.
 */
export const suspend = (
  ref: AnyProcessRef,
  options?: CallOptions
): Effect.Effect<void, CallTimeout | ProcessExited<unknown>> =>
  internal.notFromItself(impl(ref), "suspend", () => sys.suspend(impl(ref), options))

/** Resume a suspended process (`sys:resume`): the messages that queued up meanwhile are handled in order. */
export const resume = (
  ref: AnyProcessRef,
  options?: CallOptions
): Effect.Effect<void, CallTimeout | ProcessExited<unknown>> =>
  internal.notFromItself(impl(ref), "resume", () => sys.resume(impl(ref), options))

/** A snapshot of the process now (no message): status, messages waiting, messages handled so far. */
export const info = (ref: AnyProcessRef): Effect.Effect<ProcessInfo> => Effect.sync(() => sys.info(impl(ref)))

const normalReason: ExitReason<never> = { _tag: "Normal" }
