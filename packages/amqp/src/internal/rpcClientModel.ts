/**
 * Data model of the RPC client: options and their Schema, callback results, errors, the client handle type.
 * Leaf module (effect, amqplib types and @warren/process types only); re-exported by `RpcClient.ts`.
 */
import type * as Amqp from "amqplib"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as SubscriptionRef from "effect/SubscriptionRef"
import type { Process } from "@warren/process"
import * as Reconnect from "../Reconnect.js"
import type { AmqpError } from "./amqpError.js"
import type { ChannelStatus } from "./channelOwner.js"
import * as Topology from "./topology.js"

// ---------------------------------------------------------------------------------------------------------------
// Options

/** The exchange config shared with the RPC server (see `Topology`). */
export type ExchangeConfig = Topology.ExchangeConfig

/** Declaration arguments of an exchange. */
export type ExchangeOptions = Topology.ExchangeOptions

/** Where replies come back: a server-named exclusive queue per channel (Hare) or RabbitMQ's direct reply-to. */
export type ReplyMode = "queue" | "direct"

/** Options of `RpcClient.start` / `make` / `layer`. Validated when the client starts. */
export interface Options {
  /** The request exchange (Hare's config). Default: the default exchange. */
  readonly exchange?: ExchangeConfig | undefined
  /** Name in errors, logs, spans and metric tags. Default `rpc-client`. */
  readonly name?: string | undefined
  /** Default timeout of `request` (one clock from the call to the reply). Default 5 s. */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * Waits between channel reopen attempts after the channel failed on a live connection (a declaration refused,
   * the reply consumer cancelled, a channel error), fed with the error. When it ends the client stops (crashed
   * with that error). Not used while the connection is down: the client then waits for the connection (whose own
   * `reconnect` paces the attempts) and reopens at once when it is back. Default `Reconnect.defaultPolicy`
   * (exponential from 100 ms, jittered, capped at 2 s, forever). Restarts after every successful setup.
   */
  readonly reconnect?: Reconnect.Policy | undefined
  /** Publisher confirms: a request the broker nacks fails at once with `RpcNacked`. Default false. */
  readonly confirm?: boolean | undefined
  /**
   * At most this many requests published and awaiting replies; further callers wait (within their timeout)
   * for a slot. Default: no limit.
   */
  readonly maxInFlight?: number | undefined
  /** `"queue"` (default, Hare's): a server-named exclusive reply queue; `"direct"`: `amq.rabbitmq.reply-to`. */
  readonly replyMode?: ReplyMode | undefined
  /** How long a graceful stop waits for the replies of requests in flight. Default 5 s. */
  readonly drainTimeout?: Duration.DurationInput | undefined
  /**
   * Ask servers for error replies (a request header): a warren `RpcServer` whose handler fails then answers at
   * once, and the request fails with `RpcRemoteError` carrying the server's message, instead of timing out.
   * Servers that do not know the header (Hare, pika, ...) ignore it. Default false.
   */
  readonly remoteErrors?: boolean | undefined
  /**
   * A tracing span per request (`RpcClient.request`, kind client). Default: on when a tracer is installed (e.g.
   * `@effect/opentelemetry`) in the context that starts the client, off with Effect's built-in tracer, which
   * exports nothing (a span costs more CPU than the rest of the client's work per request).
   */
  readonly spans?: boolean | undefined
}

const StaticOptionsSchema = Schema.Struct({
  exchange: Schema.optional(Topology.ExchangeConfig),
  name: Schema.optional(Schema.NonEmptyString),
  confirm: Schema.optional(Schema.Boolean),
  maxInFlight: Schema.optional(Schema.Int.pipe(Schema.positive())),
  replyMode: Schema.optional(Schema.Literal("queue", "direct")),
  remoteErrors: Schema.optional(Schema.Boolean),
  spans: Schema.optional(Schema.Boolean)
})

/** The request exchange once resolved (what `connected` / `handleReady` see as `meta.requestExchange`). */
export type RequestExchange = Topology.Exchange

/** Options after validation and defaults. */
export interface ResolvedOptions {
  readonly exchange: RequestExchange
  readonly name: string
  readonly timeout: Duration.Duration
  readonly reconnect: Reconnect.Policy
  readonly confirm: boolean
  readonly maxInFlight: number
  readonly replyMode: ReplyMode
  readonly drainTimeout: Duration.Duration
  readonly remoteErrors: boolean
  /** `undefined`: decided at start from the installed tracer. */
  readonly spans: boolean | undefined
}

/** The client's options are invalid; `start` fails with this before anything runs. */
export class RpcConfigError extends Data.TaggedError("RpcConfigError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

const duration = (
  field: string,
  input: unknown,
  fallback: Duration.DurationInput
): Either.Either<Duration.Duration, RpcConfigError> =>
  Option.match(Duration.decodeUnknown(input === undefined ? fallback : input), {
    onNone: () => Either.left(new RpcConfigError({ message: `invalid RPC client options: ${field} is not a duration` })),
    onSome: (value) =>
      Duration.toMillis(value) > 0
        ? Either.right(value)
        : Either.left(new RpcConfigError({ message: `invalid RPC client options: ${field} must be positive` }))
  })

/**
 * Validates options given as anything (e.g. parsed from a file): a malformed option (an exchange that is not an
 * object, a non-positive limit, an unknown reply mode, ...) gives an `RpcConfigError` saying which.
 */
export const resolveOptions = (input: unknown): Either.Either<ResolvedOptions, RpcConfigError> => {
  const raw = input === undefined ? {} : input
  const decoded = Schema.decodeUnknownEither(StaticOptionsSchema)(raw, { onExcessProperty: "ignore" })
  if (Either.isLeft(decoded)) {
    return Either.left(
      new RpcConfigError({
        message: `invalid RPC client options: ${ParseResult.TreeFormatter.formatErrorSync(decoded.left)}`,
        cause: decoded.left
      })
    )
  }
  const record = raw as Readonly<Record<string, unknown>>
  const timeout = duration("timeout", record["timeout"], "5 seconds")
  if (Either.isLeft(timeout)) return Either.left(timeout.left)
  const drainTimeout = duration("drainTimeout", record["drainTimeout"], "5 seconds")
  if (Either.isLeft(drainTimeout)) return Either.left(drainTimeout.left)
  const reconnect = record["reconnect"]
  if (reconnect !== undefined && !Schedule.isSchedule(reconnect)) {
    return Either.left(new RpcConfigError({ message: "invalid RPC client options: reconnect is not a Schedule" }))
  }
  const options = decoded.right
  return Either.right({
    exchange: Topology.resolveExchange(options.exchange),
    name: options.name ?? "rpc-client",
    timeout: timeout.right,
    reconnect: (reconnect as Reconnect.Policy | undefined) ?? Reconnect.defaultPolicy,
    confirm: options.confirm ?? false,
    maxInFlight: options.maxInFlight ?? Number.POSITIVE_INFINITY,
    replyMode: options.replyMode ?? "queue",
    drainTimeout: drainTimeout.right,
    remoteErrors: options.remoteErrors ?? false,
    spans: options.spans
  })
}

// ---------------------------------------------------------------------------------------------------------------
// Requests

/** A request body: bytes or a string (sent as UTF-8). */
export type Payload = Uint8Array | string

/**
 * Publish options passed through to the request (headers, expiration, persistent, priority, contentType,
 * mandatory, messageId, ...). `replyTo` and `correlationId` are always set by the client.
 */
export type PublishOptions = Omit<Amqp.Options.Publish, "replyTo" | "correlationId">

/** What `connected` and `handleReady` receive (Hare's `%{req_exchange, resp_queue}`). */
export interface Meta {
  /** The exchange requests are published to. */
  readonly requestExchange: RequestExchange
  /** The reply queue of this channel (server-named, or `amq.rabbitmq.reply-to` in direct mode). */
  readonly replyQueue: string
}

// ---------------------------------------------------------------------------------------------------------------
// Callback results

/** `handleRequest`: publish the request as it is (Hare's `{:ok, state}`). */
export interface Proceed<out State> {
  readonly _tag: "Proceed"
  readonly state: State
}

/** `handleRequest`: publish this request instead (Hare's `{:ok, payload, routing_key, opts, state}`). */
export interface ProceedWith<out State> {
  readonly _tag: "ProceedWith"
  readonly payload: Payload
  readonly routingKey: string
  readonly options: PublishOptions
  readonly state: State
}

/**
 * What `handleRequest` may return: `proceed`, `proceedWith`, `Process.reply(response, state)` (answer at
 * once, publish nothing), `Process.stopReply(reason, response, state)` (answer, then stop) or
 * `Process.stop(reason, state)` (stop; the caller fails with `RpcClientStopped`).
 */
export type RequestResult<State, Reason> =
  | Proceed<State>
  | ProceedWith<State>
  | Process.Reply<Payload, State>
  | Process.StopReply<Reason, Payload, State>
  | Process.Stop<Reason, State>

/** `handleRequest` result: publish the request unchanged. */
export const proceed = <State>(state: State): Proceed<State> => ({ _tag: "Proceed", state })

/** `handleRequest` result: publish this payload, routing key and options instead. */
export const proceedWith = <State>(
  payload: Payload,
  routingKey: string,
  options: PublishOptions,
  state: State
): ProceedWith<State> => ({ _tag: "ProceedWith", payload, routingKey, options, state })

/**
 * The callbacks of an RPC client process (Hare.RPC.Client's behaviour). Only `init` is required; a callback
 * may return its result directly or as an Effect (a failure crashes the client, like an Erlang exception).
 */
export interface Callbacks<in Arg, State, Info = never, Reason = never, R = never> {
  /** Runs in `start`, which waits for it: `Process.ok(state)`, `Process.ignore` or `Process.stop(reason)`. */
  readonly init: (arg: Arg) => Process.Returns<Process.InitResult<State, Reason>, R>
  /** After every channel open + declarations + consume: `Process.noreply(state)` or `Process.stop(reason, state)`. */
  readonly connected?: ((meta: Meta, state: State) => Process.Returns<Process.HandleResult<State, Reason>, R>) | undefined
  /** When the broker confirmed the reply consumer (consume-ok). */
  readonly handleReady?:
    | ((meta: Meta, state: State) => Process.Returns<Process.HandleResult<State, Reason>, R>)
    | undefined
  /** Any message sent with `client.send` (or `Process.send(client.ref, ...)`). */
  readonly handleInfo?:
    | ((message: Info, state: State) => Process.Returns<Process.HandleResult<State, Reason>, R>)
    | undefined
  /** Before a request is published; may pass, rewrite, answer or stop. See `RequestResult`. */
  readonly handleRequest?:
    | ((
      payload: Buffer,
      routingKey: string,
      options: PublishOptions,
      state: State
    ) => Process.Returns<RequestResult<State, Reason>, R>)
    | undefined
  /** When the client stops (after `init` succeeded), before its channel is closed. */
  readonly terminate?:
    | ((reason: Process.ExitReason<Reason>, state: State) => void | Effect.Effect<unknown, unknown, R>)
    | undefined
}

// ---------------------------------------------------------------------------------------------------------------
// Errors of a request

/**
 * No reply within the request's timeout (one clock, from the call to the reply). `published` says whether the
 * request had gone out to the broker: when false, no server can have seen it and a retry is safe.
 */
export class RpcTimeout extends Data.TaggedError("RpcTimeout")<{
  readonly client: string
  readonly routingKey: string
  readonly timeout: Duration.Duration
  readonly published: boolean
}> {
  override get message(): string {
    return `RPC request to "${this.routingKey}" got no reply within ${Duration.format(this.timeout)}${
      this.published ? "" : " (never published)"
    }`
  }
}

/** Why the client's channel could not be set up, from the broker's reply to a declaration. */
export type SetupFailedReason =
  /** The request exchange does not exist (passive check) — 404. */
  | "ExchangeNotFound"
  /** The exchange or reply queue exists with other arguments — 406. */
  | "PreconditionFailed"
  /** The user may not declare or use it — 403. */
  | "AccessRefused"
  /** An exclusive resource held by another connection — 405. */
  | "ResourceLocked"
  /** Anything else (see `cause`). */
  | "Other"

/**
 * The client's channel setup was refused by the broker (a missing request exchange, one declared with other
 * arguments, no permission): requests waiting for the channel, and those made until a setup succeeds, fail with
 * it at once. The client keeps retrying per its `reconnect` policy.
 */
export class RpcChannelSetupFailed extends Data.TaggedError("RpcChannelSetupFailed")<{
  readonly client: string
  readonly reason: SetupFailedReason
  /** The AMQP method that was refused, e.g. `exchange.declare orders`. */
  readonly step: string
  readonly cause: AmqpError
}> {
  override get message(): string {
    return `RPC client ${this.client} cannot set up its channel (${this.reason}): ${this.cause.message}`
  }
}

/**
 * The server's handler failed and the server said so (a warren `RpcServer` answering a client with
 * `remoteErrors: true`): `message` is the server's.
 */
export class RpcRemoteError extends Data.TaggedError("RpcRemoteError")<{
  readonly client: string
  readonly routingKey: string
  readonly message: string
}> {}

/** Request header by which a client asks for error replies (servers that do not know it ignore it). */
export const REMOTE_ERRORS_HEADER = "x-warren-remote-errors"

/** Reply header carrying a failed handler's message (only sent to requests with `REMOTE_ERRORS_HEADER`). */
export const REMOTE_ERROR_HEADER = "x-warren-error"

/**
 * The channel (or the whole connection) the request was published on died before the reply came: the reply can
 * no longer arrive, so the request fails at once. It may or may not have been processed by the server.
 */
export class RpcChannelLost extends Data.TaggedError("RpcChannelLost")<{
  readonly client: string
  readonly routingKey: string
  readonly cause: AmqpError
}> {
  override get message(): string {
    return `RPC request to "${this.routingKey}" lost its channel: ${this.cause.message}`
  }
}

/** A `mandatory` request that no queue was bound for came back (basic.return): nobody will answer it. */
export class RpcUnroutable extends Data.TaggedError("RpcUnroutable")<{
  readonly client: string
  readonly exchange: string
  readonly routingKey: string
  readonly replyCode: number
  readonly replyText: string
}> {
  override get message(): string {
    const exchange = this.exchange === "" ? "the default exchange" : `exchange "${this.exchange}"`
    return `RPC request to "${this.routingKey}" on ${exchange} is unroutable (${this.replyCode} ${this.replyText})`
  }
}

/** With publisher confirms on, the broker refused the request (basic.nack). */
export class RpcNacked extends Data.TaggedError("RpcNacked")<{
  readonly client: string
  readonly routingKey: string
}> {
  override get message(): string {
    return `RPC request to "${this.routingKey}" was nacked by the broker`
  }
}

/**
 * The client is stopping or has stopped (graceful stop, a `stop` result, a crash, its scope closed, or its
 * reconnect schedule ended): the request was not sent, or its reply will never be awaited.
 */
export class RpcClientStopped extends Data.TaggedError("RpcClientStopped")<{
  readonly client: string
  readonly reason: Process.ExitReason<unknown> | "Stopping"
}> {
  override get message(): string {
    const reason = this.reason
    const text = reason === "Stopping"
      ? "it is stopping"
      : reason._tag === "Crashed"
      ? `it crashed: ${describeCause(reason)}`
      : reason._tag === "Stopped"
      ? `it stopped: ${String(reason.reason)}`
      : `it stopped (${reason._tag})`
    return `RPC client ${this.client} cannot answer: ${text}`
  }
}

const describeCause = (reason: Process.Crashed): string => {
  // The first failure or defect, as a one-line message.
  const failures: Array<string> = []
  const visit = (cause: unknown): void => {
    if (typeof cause !== "object" || cause === null || !("_tag" in cause)) return
    const node = cause as { readonly _tag: string; readonly error?: unknown; readonly defect?: unknown; readonly left?: unknown; readonly right?: unknown }
    if (node._tag === "Fail") failures.push(messageOf(node.error))
    else if (node._tag === "Die") failures.push(messageOf(node.defect))
    else if (node._tag === "Sequential" || node._tag === "Parallel") {
      visit(node.left)
      visit(node.right)
    }
  }
  visit(reason.cause)
  return failures[0] ?? "interrupted"
}

const messageOf = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : String(error)

/** Every way a request can fail. */
export type RequestError =
  | RpcTimeout
  | RpcChannelLost
  | RpcUnroutable
  | RpcNacked
  | RpcClientStopped
  | RpcChannelSetupFailed
  | RpcRemoteError

// ---------------------------------------------------------------------------------------------------------------
// Client state and handle

/**
 * The client's channel as seen from outside (for monitoring and tests): the channel owner's status (Connecting,
 * Ready, Reconnecting, Stopped; the same names as the server's), Ready carrying the `meta`.
 */
export type ClientState = ChannelStatus<{ readonly meta: Meta }>

/** Counters of one client since it started (also exported as metrics, tagged with the client name). */
export interface Stats {
  /** Requests accepted by the client (including those answered by `handleRequest`). */
  readonly requests: number
  /** Requests published to the broker. */
  readonly published: number
  /** Replies matched to a waiting caller. */
  readonly replies: number
  readonly timeouts: number
  /** Mandatory requests returned unroutable. */
  readonly returned: number
  /** Requests nacked by the broker (publisher confirms). */
  readonly nacked: number
  /** Replies with an unknown correlation id (late, for a caller that gave up, or foreign): dropped. */
  readonly lateReplies: number
  /** Requests failed because their channel died. */
  readonly channelLost: number
  /** Published and awaiting a reply now. */
  readonly inFlight: number
  /** Accepted but not yet published (waiting for a channel or for an in-flight slot) now. */
  readonly waiting: number
  /** Channels set up so far (1 + reconnects). */
  readonly sessions: number
}

/** A running RPC client. */
export interface Client<in Info = never, Reason = never> {
  /** The client's name (options.name). */
  readonly name: string
  /** The client's process, for `Process.await`, `Process.send`, supervision. */
  readonly ref: Process.ProcessRef<never, unknown, never, Info, Reason>
  /**
   * Publishes `payload` to the request exchange with `routingKey` (default `""`), `reply_to` = this client's
   * reply queue and a fresh `correlation_id`, and waits for the reply body: at most `timeout` (default the
   * client's, 5 s) from the call to the reply, including any wait for a channel or an in-flight slot.
   */
  readonly request: (
    payload: Payload,
    routingKey?: string,
    options?: PublishOptions,
    timeout?: Duration.DurationInput
  ) => Effect.Effect<Buffer, RequestError>
  /** Sends a message to `handleInfo`. */
  readonly send: (message: Info) => Effect.Effect<void>
  /**
   * Graceful stop: refuses new requests (and fails those still waiting for a channel), waits up to
   * `drainTimeout` for the replies in flight (then fails the rest), runs `terminate`, closes the channel.
   * Without a reason the exit reason is `Normal`. Returns the exit reason.
   */
  readonly stop: {
    (): Effect.Effect<Process.ExitReason<Reason>>
    (reason: Reason): Effect.Effect<Process.ExitReason<Reason>>
  }
  /** Waits for the client to exit and returns why. */
  readonly await: Effect.Effect<Process.ExitReason<Reason>>
  /** The channel's state; read-only by convention. */
  readonly state: SubscriptionRef.SubscriptionRef<ClientState>
  /** Counters since start. */
  readonly stats: Effect.Effect<Stats>
}
