/**
 * Data model of a process: callback results, exit reasons, errors and the behaviour record.
 * Leaf module (depends on effect only); re-exported by `Process.ts`.
 */
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Scheduler from "effect/Scheduler"

// ---------------------------------------------------------------------------
// Callback results
// ---------------------------------------------------------------------------

/** `init` succeeded: the process starts with `state` (`{ok, State}`). */
export interface Ok<out State> {
  readonly _tag: "Ok"
  readonly state: State
}

/** `init` declined to start: `start` fails with `InitIgnored`, no `terminate` (`ignore`). */
export interface Ignore {
  readonly _tag: "Ignore"
}

/** `init` refused to start: `start` fails with `InitStopped`, no `terminate` (`{stop, Reason}`). */
export interface StopInit<out Reason> {
  readonly _tag: "StopInit"
  readonly reason: Reason
}

/** Keep going with `state`; for a call, the reply comes later through `replyTo` (`{noreply, State}`). */
export interface NoReply<out State> {
  readonly _tag: "NoReply"
  readonly state: State
}

/** Answer the caller with `value` and keep going with `state` (`{reply, Reply, State}`). */
export interface Reply<out A, out State> {
  readonly _tag: "Reply"
  readonly value: A
  readonly state: State
}

/** Stop with `reason`; `terminate(reason, state)` runs next (`{stop, Reason, State}`). */
export interface Stop<out Reason, out State> {
  readonly _tag: "Stop"
  readonly reason: Reason
  readonly state: State
}

/** Answer the caller with `value`, then stop with `reason` (`{stop, Reason, Reply, State}`). */
export interface StopReply<out Reason, out A, out State> {
  readonly _tag: "StopReply"
  readonly reason: Reason
  readonly value: A
  readonly state: State
}

/** What `init` may return. */
export type InitResult<State, Reason> = Ok<State> | Ignore | StopInit<Reason>

/** What `handleCast`, `handleInfo` and `handleAbandoned` may return. */
export type HandleResult<State, Reason> = NoReply<State> | Stop<Reason, State>

/** What `handleCall` may return. */
export type CallResult<A, State, Reason> =
  | NoReply<State>
  | Reply<A, State>
  | Stop<Reason, State>
  | StopReply<Reason, A, State>

/** `init` succeeded with this state. */
export const ok = <State>(state: State): Ok<State> => ({ _tag: "Ok", state })

/** `init` declines to start the process. */
export const ignore: Ignore = { _tag: "Ignore" }

/** A handler keeps going with this state (and, for a call, answers later with `replyTo`). */
export const noreply = <State>(state: State): NoReply<State> => ({ _tag: "NoReply", state })

/** A call handler answers with `value` and keeps going with `state`. */
export const reply = <A, State>(value: A, state: State): Reply<A, State> => ({ _tag: "Reply", value, state })

/**
 * Stop the process. With one argument it is an `init` result (start refused, no `terminate`);
 * with two it is a handler result (`terminate(reason, state)` runs next).
 */
export function stop<Reason>(reason: Reason): StopInit<Reason>
export function stop<Reason, State>(reason: Reason, state: State): Stop<Reason, State>
export function stop<Reason, State>(
  reason: Reason,
  ...rest: [] | [State]
): StopInit<Reason> | Stop<Reason, State> {
  return rest.length === 0 ? { _tag: "StopInit", reason } : { _tag: "Stop", reason, state: rest[0] }
}

/** A call handler answers with `value`, then the process stops with `reason`. */
export const stopReply = <Reason, A, State>(reason: Reason, value: A, state: State): StopReply<Reason, A, State> => ({
  _tag: "StopReply",
  reason,
  value,
  state
})

// ---------------------------------------------------------------------------
// Exit reasons
// ---------------------------------------------------------------------------

/** Stopped with no particular reason: `Process.exit(ref)` without a reason, `init` returning `ignore`. */
export interface Normal {
  readonly _tag: "Normal"
}

/** Stopped by its owner: the Scope it was started in closed, or its supervisor shut it down. */
export interface Shutdown {
  readonly _tag: "Shutdown"
}

/** Stopped on purpose with a behaviour-defined reason (a `stop` result or `Process.exit(ref, reason)`). */
export interface Stopped<out Reason> {
  readonly _tag: "Stopped"
  readonly reason: Reason
}

/** A callback failed, died or was interrupted: the process stopped with that `Cause`. */
export interface Crashed {
  readonly _tag: "Crashed"
  readonly cause: Cause.Cause<unknown>
}

/** Why a process exited (what `terminate` receives and `Process.await` returns). */
export type ExitReason<Reason> = Normal | Shutdown | Stopped<Reason> | Crashed

/** The `Normal` exit reason. */
export const normal: Normal = { _tag: "Normal" }

/** The `Shutdown` exit reason. */
export const shutdown: Shutdown = { _tag: "Shutdown" }

/** A `Stopped` exit reason carrying a behaviour-defined reason. */
export const stopped = <Reason>(reason: Reason): Stopped<Reason> => ({ _tag: "Stopped", reason })

/** A `Crashed` exit reason carrying the failure. */
export const crashed = (cause: Cause.Cause<unknown>): Crashed => ({ _tag: "Crashed", cause })

/** True for the reasons OTP calls normal: `Normal` and `Shutdown` (a transient child is not restarted). */
export const isNormalExit = <Reason>(reason: ExitReason<Reason>): reason is Normal | Shutdown =>
  reason._tag === "Normal" || reason._tag === "Shutdown"

const formatReason = (reason: ExitReason<unknown>): string => {
  switch (reason._tag) {
    case "Normal":
    case "Shutdown":
      return reason._tag
    case "Stopped":
      return `Stopped(${String(reason.reason)})`
    case "Crashed":
      return `Crashed(${Cause.pretty(reason.cause)})`
  }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/**
 * The process is gone: it had already exited when it was called, or it exited while the caller waited.
 * Carries the exit reason (`{noproc, ...}` / the caller's `'EXIT'` in OTP).
 */
export class ProcessExited<out Reason = unknown> extends Data.TaggedError("ProcessExited")<{
  readonly process: string
  readonly reason: ExitReason<Reason>
}> {
  override get message(): string {
    return `process ${this.process} exited: ${formatReason(this.reason)}`
  }
}

/** A call got no reply within its timeout; the request is forgotten (a late reply is dropped). */
export class CallTimeout extends Data.TaggedError("CallTimeout")<{
  readonly process: string
  readonly timeout: Duration.Duration
}> {
  override get message(): string {
    return `call to process ${this.process} timed out`
  }
}

/** `init` returned `stop(reason)` or failed: the process never started and `terminate` did not run. */
export class InitStopped<out Reason = unknown> extends Data.TaggedError("InitStopped")<{
  readonly process: string
  readonly reason: Stopped<Reason> | Crashed
}> {
  override get message(): string {
    return `process ${this.process} did not start: ${formatReason(this.reason)}`
  }
}

/** `init` returned `ignore`: the process did not start and `terminate` did not run. */
export class InitIgnored extends Data.TaggedError("InitIgnored")<{
  readonly process: string
}> {
  override get message(): string {
    return `process ${this.process} ignored its start`
  }
}

/** A callback returned something that is not one of its allowed results (OTP's `bad_return_value`). */
export class BadReturn extends Data.TaggedError("BadReturn")<{
  readonly callback: string
  readonly value: unknown
}> {}

/** A call or cast reached a behaviour that has no handler for it. */
export class NoHandler extends Data.TaggedError("NoHandler")<{
  readonly callback: "handleCall" | "handleCast"
}> {}

// ---------------------------------------------------------------------------
// Handles
// ---------------------------------------------------------------------------

/** Symbol marking process handles. */
export const ProcessRefTypeId: unique symbol = Symbol.for("@warren/process/ProcessRef")

/** Symbol under which a request type carries its reply type (see `Request`). */
export const ReplyTypeId: unique symbol = Symbol.for("@warren/process/Reply")

/**
 * A handle on a running (or exited) process, like an Erlang pid. The type parameters say what it accepts:
 * `Call` requests answered with `Reply`, `Cast` and `Info` messages, and the behaviour's stop `Reason`.
 */
export interface ProcessRef<in Call, out Reply, in Cast, in Info, out Reason = unknown> {
  readonly [ProcessRefTypeId]: {
    readonly _Call: (_: Call) => void
    readonly _Reply: () => Reply
    readonly _Cast: (_: Cast) => void
    readonly _Info: (_: Info) => void
    readonly _Reason: () => Reason
  }
  /** Unique per process in this JS realm. */
  readonly id: number
  /** Name given at start, or `#id`; used in errors and spans. */
  readonly name: string
}

/** Any process handle at all (the top type of `ProcessRef`). */
export type AnyProcessRef = ProcessRef<never, unknown, never, never, unknown>

/**
 * The caller of a call, given to `handleCall`; pass it to `replyTo` to answer later (`From` in OTP).
 * A `From` is answered at most once; answers after the caller gave up are dropped.
 */
export interface From<in A> {
  readonly _A: (_: A) => void
  /** Unique per process; handy as a correlation id. */
  readonly id: number
}

/**
 * Optional marker for request types whose reply type depends on the request:
 * `interface Get extends Process.Request<number> { readonly _tag: "Get" }` makes
 * `Process.call(ref, get)` return `number` rather than the behaviour's whole reply union.
 */
export interface Request<out A> {
  readonly [ReplyTypeId]?: () => A
}

/**
 * The reply type of request `Q` sent to a process that takes `Call` and replies `Reply`: the `A` of the
 * `Request<A>` members of `Call` that `Q` matches, else `Reply`.
 */
export type ReplyFor<Q, Call, Reply> = [ReplyMatches<Q, Call, Reply>] extends [never] ? Reply
  : ReplyMatches<Q, Call, Reply>

type ReplyMatches<Q, Call, Reply> = Call extends unknown
  ? Q extends Call ? Call extends { readonly [ReplyTypeId]?: () => infer A } ? unknown extends A ? Reply : A
    : Reply
  : never
  : never

/** A callback result, either plain or effectful. Failures and defects of the effect crash the process. */
export type Returns<A, R> = A | Effect.Effect<A, unknown, R>

/**
 * A behaviour: the callbacks of a `gen_server`. Any handler may return its result directly (fast path,
 * no Effect) or as an Effect. Every callback also receives `self`, the process's own handle.
 *
 * A missing `handleCall`/`handleCast` crashes the process when such a message arrives (as in OTP);
 * a missing `handleInfo` drops info messages; a missing `terminate` does nothing.
 */
export interface Behaviour<in Arg, State, Call, Reply, Cast, Info, Reason, out R> {
  readonly init: (
    arg: Arg,
    self: ProcessRef<Call, Reply, Cast, Info, Reason>
  ) => Returns<InitResult<State, Reason>, R>
  readonly handleCall?: (
    request: Call,
    from: From<Reply>,
    state: State,
    self: ProcessRef<Call, Reply, Cast, Info, Reason>
  ) => Returns<CallResult<Reply, State, Reason>, R>
  readonly handleCast?: (
    message: Cast,
    state: State,
    self: ProcessRef<Call, Reply, Cast, Info, Reason>
  ) => Returns<HandleResult<State, Reason>, R>
  readonly handleInfo?: (
    message: Info,
    state: State,
    self: ProcessRef<Call, Reply, Cast, Info, Reason>
  ) => Returns<HandleResult<State, Reason>, R>
  /**
   * Runs when a caller whose call is still unanswered (the handler returned `noreply`) gives up: its
   * timeout passed or it was interrupted. Lets a process forget bookkeeping such as correlation ids.
   */
  readonly handleAbandoned?: (
    from: From<Reply>,
    state: State,
    self: ProcessRef<Call, Reply, Cast, Info, Reason>
  ) => Returns<HandleResult<State, Reason>, R>
  /** Runs exactly once when the process stops after a successful `init`. Unanswered callers can still be answered here. */
  readonly terminate?: (
    reason: ExitReason<Reason>,
    state: State,
    self: ProcessRef<Call, Reply, Cast, Info, Reason>
  ) => void | Effect.Effect<unknown, unknown, R>
}

/** Options of `start`. */
export interface StartOptions {
  /** Name used in errors and spans; defaults to `#<id>`. */
  readonly name?: string | undefined
  /**
   * The scheduler the process fiber runs on (default: the one of the caller of `start`). With an
   * `EagerScheduler`, a message sent from a Node callback is handled before that callback returns (or right
   * after it, coalescing), callers answered by the process resume on the same scheduler run instead of a
   * microtask later, and what they send next is handled before the process suspends (fewer hops per round
   * trip; see `EagerScheduler`).
   */
  readonly scheduler?: Scheduler.Scheduler | undefined
}

/** Options of `call`. */
export interface CallOptions {
  /** How long to wait for the reply; default 5 seconds. `Duration.infinity` waits for ever. */
  readonly timeout?: Duration.DurationInput | undefined
}

// ---------------------------------------------------------------------------
// Introspection (OTP's `sys`)
// ---------------------------------------------------------------------------

/** `replaceState`'s function threw: the process keeps its state (OTP's `callback_failed`). */
export class ReplaceStateFailed extends Data.TaggedError("ReplaceStateFailed")<{
  readonly process: string
  /** What the function threw. */
  readonly error: unknown
}> {
  override get message(): string {
    return `replaceState on process ${this.process} failed: ${String(this.error)}`
  }
}

/**
 * What a process is doing: `waiting` for messages, `running` a callback (or about to), `suspended` (handles only
 * system messages), `exited`.
 */
export type ProcessStatus = "waiting" | "running" | "suspended" | "exited"

/** A snapshot of a process (`erlang:process_info` plus `sys` status). */
export interface ProcessInfo {
  readonly id: number
  readonly name: string
  readonly status: ProcessStatus
  /** Messages waiting: queued, and put aside while suspended. */
  readonly mailbox: number
  /** Messages handed to a callback so far (calls, casts, infos, abandoned notices; not system messages). */
  readonly handled: number
}
