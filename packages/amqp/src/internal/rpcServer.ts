import type * as Amqp from "amqplib"
import * as Process from "@warren/process/Process"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Reconnect from "../Reconnect.js"
import { AmqpError, describe } from "./amqpError.js"
import * as ChannelOwner from "./channelOwner.js"
import { REMOTE_ERROR_HEADER, REMOTE_ERRORS_HEADER } from "./rpcClientModel.js"
import * as Topology from "./topology.js"
import { AmqpConnection as AmqpConnectionTag, type AmqpConnectionShape, isChannelOpen } from "./connection.js"

// ---------------------------------------------------------------------------------------------------------------
// Configuration

/** An optional field that is absent or present, never `undefined` (matches amqplib's option objects). */
const opt = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

const Arguments = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/** Declaration of the request exchange: the exchange config the RPC client uses too. */
export const ExchangeConfig = Topology.ExchangeConfig

/** Declaration of the request queue (`queue.declare`); an empty name asks the broker for a fresh one. */
export const QueueConfig = Schema.Struct({
  name: Schema.String,
  options: opt(Schema.Struct({
    durable: opt(Schema.Boolean),
    exclusive: opt(Schema.Boolean),
    autoDelete: opt(Schema.Boolean),
    arguments: opt(Arguments),
    messageTtl: opt(Schema.NonNegativeInt),
    expires: opt(Schema.Int.pipe(Schema.positive())),
    deadLetterExchange: opt(Schema.String),
    deadLetterRoutingKey: opt(Schema.String),
    maxLength: opt(Schema.NonNegativeInt),
    maxPriority: opt(Schema.Int.pipe(Schema.between(0, 255)))
  }))
})

/** RPC server configuration, validated when the server starts. */
export const ServerConfig = Schema.Struct({
  /** The request exchange: a name (type direct) or a full declaration. Absent or "" = the default exchange. */
  exchange: opt(Schema.Union(Schema.String, ExchangeConfig)),
  /** The request queue: a name or a full declaration. */
  queue: Schema.Union(Schema.String, QueueConfig),
  /** Routing key(s) binding the queue to a named exchange. Default `""` (Hare's default). */
  bindings: opt(Schema.Union(Schema.String, Schema.NonEmptyArray(Schema.String))),
  /** Unacknowledged deliveries the broker may push ahead (basic.qos per consumer). Default max(20, 2 × concurrency). */
  prefetch: opt(Schema.Int.pipe(Schema.between(0, 65535))),
  /** Requests handled at once by `serve`/`layer` (stateless handler). A behaviour is always sequential. Default 1. */
  concurrency: opt(Schema.Int.pipe(Schema.between(1, 65535))),
  /** Hare's mode: the broker forgets a request once delivered (no ack, no prefetch, no redelivery). Default false. */
  noAck: opt(Schema.Boolean),
  /** Consumer tag; default: broker-generated. */
  consumerTag: opt(Schema.String),
  /** Name for logs, spans and metric tags. Default: the queue name, or "rpc-server". */
  name: opt(Schema.NonEmptyString),
  /**
   * The request queue's type (`x-queue-type`). `"quorum"` gives a replicated queue that survives the loss of a
   * cluster node; it must be named, is durable by default and cannot be exclusive or auto-delete. Default
   * `"classic"` (no argument sent, the broker's default).
   */
  queueType: opt(Schema.Literal("classic", "quorum"))
})

/** RPC server configuration (see `ServerConfig`). */
export type ServerConfig = Schema.Schema.Encoded<typeof ServerConfig>

/** Options that are not plain data. */
export interface ServerOptions {
  /** Waits between attempts to reopen the server's channel after it failed (declaration error, channel or
   *  consumer lost). Default `Reconnect.defaultPolicy`; restarted after every successful consume. When it ends,
   *  the server stops (a behaviour crashes with the last AmqpError). Connection outages do not count: the
   *  server simply waits for the connection. */
  readonly reopen?: Reconnect.Policy
  /** no-ack mode only: how long a reply waits for a channel when the request's channel is gone. Default 5 s. */
  readonly replyTimeout?: Duration.DurationInput
  /** `RpcServer.layer` only: build the layer once the server consumes (default `true`), so that a client in
   *  the same program can call it as soon as the layers are up. `false` returns at once and serves when it can
   *  (the layer then does not wait for the broker). */
  readonly awaitReady?: boolean
}

interface Resolved {
  readonly exchange: Topology.Exchange | undefined
  readonly queue: { readonly name: string; readonly options: Amqp.Options.AssertQueue }
  readonly bindings: ReadonlyArray<string>
  readonly prefetch: number
  readonly concurrency: number
  readonly noAck: boolean
  readonly consumerTag: string | undefined
  readonly name: string
  readonly reopen: Reconnect.Policy
  readonly replyTimeout: Duration.Duration
}

const configError = (message: string, cause?: unknown) =>
  new AmqpError({ reason: "Config", message: `invalid RPC server config: ${message}`, cause })

const resolve = (config: ServerConfig, options: ServerOptions | undefined): Effect.Effect<Resolved, AmqpError> =>
  Effect.gen(function*() {
    const decoded = yield* Schema.decodeUnknown(ServerConfig)(config).pipe(
      Effect.mapError((error) => configError(ParseResult.TreeFormatter.formatErrorSync(error), error))
    )
    const exchange = Topology.resolveExchange(decoded.exchange)
    const queue = typeof decoded.queue === "string" ? { name: decoded.queue } : decoded.queue
    const named = exchange.name !== ""
    if (!named && decoded.bindings !== undefined) {
      return yield* configError("bindings need a named exchange (the default exchange routes by queue name)")
    }
    const replyTimeout = Duration.decodeUnknown(options?.replyTimeout ?? "5 seconds")
    if (Option.isNone(replyTimeout)) return yield* configError("replyTimeout is not a duration")
    const concurrency = decoded.concurrency ?? 1
    const queueOptions: Amqp.Options.AssertQueue = { ...queue.options }
    if (decoded.queueType === "quorum") {
      if (queue.name === "") return yield* configError("a quorum queue needs a name (server-named queues are exclusive)")
      if (queueOptions.exclusive === true || queueOptions.autoDelete === true) {
        return yield* configError("a quorum queue cannot be exclusive or auto-delete")
      }
      if (queueOptions.durable === false) return yield* configError("a quorum queue is always durable")
      queueOptions.durable = true
      queueOptions.arguments = { ...queueOptions.arguments, "x-queue-type": "quorum" }
    }
    return {
      exchange: named ? exchange : undefined,
      queue: { name: queue.name, options: queueOptions },
      bindings: decoded.bindings === undefined ? [""] : typeof decoded.bindings === "string" ? [decoded.bindings] : decoded.bindings,
      prefetch: decoded.prefetch ?? Math.max(20, 2 * concurrency),
      concurrency,
      noAck: decoded.noAck ?? false,
      consumerTag: decoded.consumerTag,
      name: decoded.name ?? (queue.name === "" ? "rpc-server" : queue.name),
      reopen: options?.reopen ?? Reconnect.defaultPolicy,
      replyTimeout: replyTimeout.value
    }
  })

// ---------------------------------------------------------------------------------------------------------------
// Public data

/** Symbol under which a RequestMeta carries its server (so that `replyTo(meta, ...)` can answer later). */
export const ServerLinkId: unique symbol = Symbol.for("@warren/amqp/RpcServer/link")

/** What a handler knows about a request (Hare's `meta`). */
export interface RequestMeta {
  /** The request's correlation id, copied to the reply. */
  readonly correlationId: string | undefined
  /** Where the reply goes (routing key on the default exchange). */
  readonly replyTo: string
  /** The request's content type, copied to the reply unless the handler sets one. */
  readonly contentType: string | undefined
  /** The exchange the request was published to ("" = default exchange). */
  readonly exchange: string
  /** The request's routing key. */
  readonly routingKey: string
  /** The server's queue (as declared on the channel that delivered the request). */
  readonly queue: string
  /** The broker delivered this request before (it was not acknowledged then). */
  readonly redelivered: boolean
  /** The consumer that received it. */
  readonly consumerTag: string
  /** The channel generation (1 for the server's first channel, +1 per reopen). */
  readonly generation: number
  /** Every AMQP property of the request (headers, message id, ...). */
  readonly properties: Amqp.MessageProperties
  /** The server that received the request (internal; keep it when storing meta for a later `replyTo`). */
  readonly [ServerLinkId]: unknown
}

/** The server's channel has been opened and its exchange, queue and bindings declared (Hare's `connected`). */
export interface ChannelMeta {
  readonly queue: string
  readonly exchange: string
  readonly generation: number
}

/** The broker confirmed the consumer (consume-ok; Hare's `handle_ready`). */
export interface ReadyMeta extends ChannelMeta {
  readonly consumerTag: string
}

/** Reply properties a handler may set; `correlationId` is always the request's. */
export type ReplyOptions = Pick<
  Amqp.Options.Publish,
  | "contentType"
  | "contentEncoding"
  | "headers"
  | "expiration"
  | "persistent"
  | "deliveryMode"
  | "priority"
  | "messageId"
  | "timestamp"
  | "type"
  | "appId"
>

/** A response body: bytes, or a string sent as UTF-8. */
export type Response = Uint8Array | string

/** `handleRequest` answers now (`{:reply, response, state}`). */
export interface Reply<out State> {
  readonly _tag: "Reply"
  readonly response: Response
  readonly state: State
  readonly options: ReplyOptions | undefined
}

/** What `handleRequest` may return: reply now, answer later (`noreply` + `replyTo`), or stop the server. */
export type RequestResult<State, Reason> = Reply<State> | Process.NoReply<State> | Process.Stop<Reason, State>

/** Answer the request with `response` (copied correlation id, request's content type unless `options` say). */
export const reply = <State>(response: Response, state: State, options?: ReplyOptions): Reply<State> => ({
  _tag: "Reply",
  response,
  state,
  options
})

/**
 * Where the server is: the channel owner's status (Connecting, Ready, Reconnecting, Stopped; the same names as the
 * client's), Ready carrying the queue, exchange, consumer tag and channel generation.
 */
export type ServerStatus = ChannelOwner.ChannelStatus<ReadyMeta>

/** The server's Ready status. */
export type Ready = Extract<ServerStatus, { readonly _tag: "Ready" }>

/** A running server of either form: its name and status. */
export interface Running {
  readonly name: string
  readonly status: SubscriptionRef.SubscriptionRef<ServerStatus>
}

/** Symbol marking behaviour servers. */
export const ServerTypeId: unique symbol = Symbol.for("@warren/amqp/RpcServer")

/** A running behaviour server: a process taking `Info` messages and stopping with `Reason`. */
export interface Server<in Info, out Reason> extends Running {
  readonly [ServerTypeId]: { readonly _Info: (_: Info) => void; readonly _Reason: () => Reason }
  /** The underlying process (for `Process.await`, supervisors, ...). */
  readonly process: Process.ProcessRef<never, unknown, never, never, Reason>
}

/** The RPC server behaviour (Hare.RPC.Server's callbacks). Callbacks may return plain results or Effects. */
export interface Behaviour<in Arg, State, Info = never, Reason = never, out R = never> {
  /** `ok(state)` starts the server; `ignore` / `stop(reason)` refuse (no channel, no terminate). */
  readonly init: (arg: Arg, server: Server<Info, Reason>) => Process.Returns<Process.InitResult<State, Reason>, R>
  /** A new channel is declared (after start and after every reopen), before consuming. */
  readonly connected?: (meta: ChannelMeta, state: State) => Process.Returns<Process.HandleResult<State, Reason>, R>
  /** The broker confirmed the consumer. */
  readonly handleReady?: (meta: ReadyMeta, state: State) => Process.Returns<Process.HandleResult<State, Reason>, R>
  /**
   * One request. A failure, defect or throw here does not crash the server: the request is counted as failed
   * and rejected without requeue (dead-lettered if the queue has a dead-letter exchange), the state is kept.
   */
  readonly handleRequest: (
    payload: Buffer,
    meta: RequestMeta,
    state: State
  ) => Process.Returns<RequestResult<State, Reason>, R>
  /** Messages sent with `RpcServer.send`. A failure here crashes the server, as in a gen_server. */
  readonly handleInfo?: (message: Info, state: State) => Process.Returns<Process.HandleResult<State, Reason>, R>
  /** Runs once when the server stops after a successful init, before its channel closes. */
  readonly terminate?: (reason: Process.ExitReason<Reason>, state: State) => void | Effect.Effect<unknown, unknown, R>
}

/** The stateless handler of `serve` / `layer`: the response bytes, or a failure (request rejected, counted). */
export type Handler<E = never, R = never> = (payload: Buffer, meta: RequestMeta) => Effect.Effect<Response, E, R>

/** Answers every request with its own payload (tests, benches). */
export const echo: Handler = (payload) => Effect.succeed(payload)

// ---------------------------------------------------------------------------------------------------------------
// Metrics

/** Counters of all RPC servers, tagged with `server` = the server's name. */
export const metrics = {
  requests: Metric.counter("warren_rpc_server_requests_total", {
    description: "Requests received (including those without reply_to and those that failed)",
    incremental: true
  }),
  replies: Metric.counter("warren_rpc_server_replies_total", { description: "Replies published", incremental: true }),
  noReplyTo: Metric.counter("warren_rpc_server_no_reply_to_total", {
    description: "Requests without reply_to (acked, not handled)",
    incremental: true
  }),
  failures: Metric.counter("warren_rpc_server_failures_total", {
    description: "Requests whose handler failed (rejected without requeue)",
    incremental: true
  }),
  replyErrors: Metric.counter("warren_rpc_server_reply_errors_total", {
    description: "Replies that could not be published",
    incremental: true
  }),
  stale: Metric.counter("warren_rpc_server_stale_total", {
    description: "Deliveries skipped because their channel closed first (the broker redelivers them)",
    incremental: true
  })
} as const

type Counter = Metric.Metric.Counter<number>

interface Counters {
  readonly requests: Counter
  readonly replies: Counter
  readonly noReplyTo: Counter
  readonly failures: Counter
  readonly replyErrors: Counter
  readonly stale: Counter
}

const countersFor = (name: string): Counters => ({
  requests: Metric.tagged(metrics.requests, "server", name),
  replies: Metric.tagged(metrics.replies, "server", name),
  noReplyTo: Metric.tagged(metrics.noReplyTo, "server", name),
  failures: Metric.tagged(metrics.failures, "server", name),
  replyErrors: Metric.tagged(metrics.replyErrors, "server", name),
  stale: Metric.tagged(metrics.stale, "server", name)
})

// ---------------------------------------------------------------------------------------------------------------
// Channel session: open, declare, consume; reopen per schedule

interface Active {
  readonly channel: Amqp.Channel
  readonly generation: number
  readonly queue: string
  readonly exchange: string
  consumerTag: string
}

interface Delivery {
  readonly message: Amqp.ConsumeMessage
  readonly active: Active
}

interface Sink {
  readonly delivery: (delivery: Delivery) => void
  readonly connected: (meta: ChannelMeta) => void
  readonly ready: (meta: ReadyMeta) => void
  /** The channel owner gave up (connection closed for good, reopen policy ended). */
  readonly gaveUp: (error: AmqpError) => void
}

/** What the server's parts share: config, status, the current channel, counters. */
class Link {
  current: Active | undefined = undefined
  generation = 0
  constructor(
    readonly config: Resolved,
    readonly status: SubscriptionRef.SubscriptionRef<ServerStatus>,
    readonly counters: Counters
  ) {}

  /** The current serving channel; waits while there is none; fails once the server stopped. */
  get awaitChannel(): Effect.Effect<Amqp.Channel, AmqpError> {
    return this.status.changes.pipe(
      Stream.filterMap((status): Option.Option<Either.Either<Amqp.Channel, AmqpError>> => {
        if (status._tag === "Stopped") {
          return Option.some(Either.left(new AmqpError({ reason: "Closed", message: `RPC server ${this.config.name} stopped` })))
        }
        const current = this.current
        if (status._tag === "Ready" && current !== undefined && isChannelOpen(current.channel)) {
          return Option.some(Either.right(current.channel))
        }
        return Option.none()
      }),
      Stream.runHead,
      Effect.flatMap(Option.match({
        onNone: () => Effect.fail(new AmqpError({ reason: "Closed", message: `RPC server ${this.config.name} stopped` })),
        onSome: (result) => result
      }))
    )
  }
}

/**
 * Keeps a consuming channel with the channel owner: declare (qos, exchange, queue, bindings), consume, reopen
 * per the `reopen` policy. Deliveries and the connected / ready / gave-up events go to `sink`.
 */
const session = (
  link: Link,
  connection: AmqpConnectionShape,
  sink: Sink
): Effect.Effect<void> => {
  const config = link.config
  const spec: ChannelOwner.Spec<ChannelMeta, ReadyMeta> = {
    name: `RPC server ${config.name}`,
    confirm: false,
    policy: config.reopen,
    declare: (channel) =>
      Effect.gen(function*() {
        link.generation += 1
        const generation = link.generation
        // One synchronous AMQP method at a time per channel: every declaration is awaited before the next.
        if (!config.noAck && config.prefetch > 0) {
          yield* ChannelOwner.setupStep("basic.qos", () => channel.prefetch(config.prefetch))
        }
        const exchange = config.exchange
        if (exchange !== undefined) yield* Topology.declareExchange(channel, exchange)
        const queue = yield* Topology.declareQueue(channel, config.queue.name, config.queue.options)
        if (exchange !== undefined) {
          for (const key of config.bindings) yield* Topology.bindQueue(channel, queue, exchange.name, key)
        }
        return { queue, exchange: exchange?.name ?? "", generation }
      }),
    consume: (channel, meta, cancelled) =>
      Effect.gen(function*() {
        const active: Active = { channel, generation: meta.generation, queue: meta.queue, exchange: meta.exchange, consumerTag: "" }
        const consumeOptions: Amqp.Options.Consume = { noAck: config.noAck }
        if (config.consumerTag !== undefined) consumeOptions.consumerTag = config.consumerTag
        const consumer = yield* ChannelOwner.setupStep(`basic.consume ${meta.queue}`, () =>
          channel.consume(meta.queue, (message) => {
            if (message === null) {
              cancelled(new AmqpError({ reason: "ChannelLost", message: `the broker cancelled the consumer on ${meta.queue}` }))
            } else {
              sink.delivery({ message, active })
            }
          }, consumeOptions))
        active.consumerTag = consumer.consumerTag
        link.current = active
        yield* Effect.logDebug(`RPC server ${config.name} consuming ${meta.queue}`)
        return { ...meta, consumerTag: consumer.consumerTag }
      }),
    status: link.status,
    events: {
      connected: (_channel, meta) => sink.connected(meta),
      ready: (_channel, _meta, ready) => sink.ready(ready),
      lost: () => {
        link.current = undefined
      },
      gaveUp: (error) => {
        link.current = undefined
        sink.gaveUp(error)
      }
    }
  }
  return ChannelOwner.run(connection, spec).pipe(
    Effect.ensuring(Effect.sync(() => {
      link.current = undefined
    })),
    Effect.annotateLogs("rpc.server", config.name)
  )
}

// ---------------------------------------------------------------------------------------------------------------
// Requests

const toBuffer = (data: Response): Buffer =>
  typeof data === "string"
    ? Buffer.from(data, "utf8")
    : Buffer.isBuffer(data)
    ? data
    : Buffer.from(data.buffer, data.byteOffset, data.byteLength)

const stringProp = (value: unknown): string | undefined => typeof value === "string" ? value : undefined

const awaitDrain = (channel: Amqp.Channel): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const done = () => {
      channel.removeListener("drain", done)
      channel.removeListener("close", done)
      resume(Effect.void)
    }
    channel.once("drain", done)
    channel.once("close", done)
    return Effect.sync(() => {
      channel.removeListener("drain", done)
      channel.removeListener("close", done)
    })
  })

/** Publishes to the default exchange; waits for 'drain' when amqplib's write buffer is full. */
const publish = (
  channel: Amqp.Channel,
  routingKey: string,
  content: Buffer,
  properties: Amqp.Options.Publish
): Effect.Effect<void, AmqpError> =>
  Effect.suspend(() => {
    let written: boolean
    try {
      written = channel.publish("", routingKey, content, properties)
    } catch (cause) {
      return Effect.fail(new AmqpError({ reason: "ChannelLost", message: `reply not sent: ${describe(cause)}`, cause }))
    }
    return written ? Effect.void : awaitDrain(channel)
  })

const replyProperties = (meta: RequestMeta, options: ReplyOptions | undefined): Amqp.Options.Publish => {
  const properties: Amqp.Options.Publish = {}
  if (meta.contentType !== undefined) properties.contentType = meta.contentType
  const encoding = stringProp(meta.properties.contentEncoding)
  if (encoding !== undefined) properties.contentEncoding = encoding
  Object.assign(properties, options)
  if (meta.correlationId !== undefined) properties.correlationId = meta.correlationId
  else delete properties.correlationId
  return properties
}

const sendReply = (
  link: Link,
  channel: Amqp.Channel,
  meta: RequestMeta,
  response: Response,
  options: ReplyOptions | undefined
): Effect.Effect<void, AmqpError> =>
  publish(channel, meta.replyTo, toBuffer(response), replyProperties(meta, options)).pipe(
    Effect.zipRight(Metric.increment(link.counters.replies)),
    Effect.tapError(() => Metric.increment(link.counters.replyErrors))
  )

const settle = (delivery: Delivery, noAck: boolean, how: "ack" | "reject") => {
  const channel = delivery.active.channel
  if (noAck || !isChannelOpen(channel)) return
  try {
    if (how === "ack") channel.ack(delivery.message)
    else channel.nack(delivery.message, false, false)
  } catch {
    // The channel closed under us: the broker requeues the request.
  }
}

const EMPTY = Buffer.alloc(0)

/** The first failure or defect of a handler's cause, as one line for an error reply. */
const failureMessage = (cause: Cause.Cause<unknown>): string => {
  const error = Option.getOrUndefined(Cause.failureOption(cause)) ?? Option.getOrUndefined(Cause.dieOption(cause))
  if (error === undefined) return "the handler was interrupted"
  if (error instanceof Error) return error.message === "" ? error.name : error.message
  if (typeof error === "object" && error !== null && "_tag" in error) return String(error._tag)
  return String(error)
}

const isRequestResult = (value: unknown): value is RequestResult<unknown, unknown> =>
  typeof value === "object" && value !== null && "_tag" in value &&
  (value._tag === "Reply" || value._tag === "NoReply" || value._tag === "Stop")

const makeMeta = (link: Link, delivery: Delivery, replyTo: string): RequestMeta => {
  const { fields, properties } = delivery.message
  return {
    correlationId: stringProp(properties.correlationId),
    replyTo,
    contentType: stringProp(properties.contentType),
    exchange: fields.exchange,
    routingKey: fields.routingKey,
    queue: delivery.active.queue,
    redelivered: fields.redelivered,
    consumerTag: fields.consumerTag,
    generation: delivery.active.generation,
    properties,
    [ServerLinkId]: link
  }
}

/**
 * One delivery, start to end: skip it if its channel is gone (ack mode: the broker redelivers it), ack and count
 * it without reply_to, run the handler, publish its reply on the request's channel, then ack (or reject without
 * requeue when the handler failed). Returns the handler's result, or None when it did not run or failed.
 */
const processDelivery = <State, Reason, R>(
  link: Link,
  delivery: Delivery,
  run: (payload: Buffer, meta: RequestMeta) => Effect.Effect<RequestResult<State, Reason>, unknown, R>
): Effect.Effect<Option.Option<RequestResult<State, Reason>>, never, R> =>
  Effect.suspend(() => {
    const config = link.config
    const counters = link.counters
    const { fields, properties } = delivery.message
    if (!config.noAck && !isChannelOpen(delivery.active.channel)) {
      return Effect.as(Metric.increment(counters.stale), Option.none())
    }
    const replyTo = stringProp(properties.replyTo)
    if (replyTo === undefined || replyTo === "") {
      settle(delivery, config.noAck, "ack")
      return Metric.increment(counters.requests).pipe(
        Effect.zipRight(Metric.increment(counters.noReplyTo)),
        Effect.zipRight(Effect.logWarning(`RPC server ${config.name}: request without reply_to dropped`)),
        Effect.as(Option.none())
      )
    }
    const meta = makeMeta(link, delivery, replyTo)
    return Effect.gen(function*() {
      yield* Metric.increment(counters.requests)
      const exit = yield* Effect.exit(
        Effect.suspend(() => run(delivery.message.content, meta)).pipe(
          Effect.filterOrFail(isRequestResult, (value) => new Process.BadReturn({ callback: "handleRequest", value }))
        )
      )
      if (Exit.isFailure(exit)) {
        const headers = properties.headers
        if (headers !== undefined && headers[REMOTE_ERRORS_HEADER] !== undefined && isChannelOpen(delivery.active.channel)) {
          // The client asked for error replies: answer at once with the failure's message (Hare- and pika-style
          // clients never send the header, so they keep the plain behaviour: no reply).
          yield* sendReply(link, delivery.active.channel, meta, EMPTY, {
            headers: { [REMOTE_ERROR_HEADER]: failureMessage(exit.cause) }
          }).pipe(Effect.catchAll((error) => Effect.logWarning(`RPC server ${config.name}: error reply not sent`, error.message)))
        }
        settle(delivery, config.noAck, "reject")
        yield* Metric.increment(counters.failures)
        yield* Effect.logError(`RPC server ${config.name}: handler failed; request rejected`, exit.cause)
        return Option.none()
      }
      const result = exit.value
      if (result._tag === "Reply") {
        const channel = delivery.active.channel
        if (isChannelOpen(channel)) {
          yield* sendReply(link, channel, meta, result.response, result.options).pipe(
            Effect.catchAll((error) => Effect.logWarning(`RPC server ${config.name}: reply not sent`, error.message))
          )
        } else if (config.noAck) {
          // The broker forgot this request already: answer it on whatever channel the server has now.
          yield* link.awaitChannel.pipe(
            Effect.timeoutFail({
              duration: config.replyTimeout,
              onTimeout: () => new AmqpError({ reason: "Timeout", message: "no channel to send the reply on" })
            }),
            Effect.flatMap((current) => sendReply(link, current, meta, result.response, result.options)),
            Effect.catchAll((error) => Effect.logWarning(`RPC server ${config.name}: reply not sent`, error.message))
          )
        }
        // (ack mode, channel gone: the broker redelivers the request, which will be answered then)
      }
      settle(delivery, config.noAck, "ack")
      return Option.some(result)
    }).pipe(
      Effect.withSpan("RpcServer.request", {
        kind: "server",
        attributes: {
          "messaging.system": "rabbitmq",
          "messaging.destination.name": delivery.active.queue,
          "messaging.rabbitmq.destination.routing_key": fields.routingKey,
          "messaging.message.conversation_id": meta.correlationId ?? "",
          "rpc.server": config.name
        }
      })
    )
  })

/**
 * Answers a request later (Hare's `reply(meta, response)`), typically after `handleRequest` returned `noreply`.
 * Publishes on the server's current channel, waiting for one while it reopens (bound it with a timeout); fails
 * with AmqpError "Closed" once the server stopped.
 */
export const replyTo = (meta: RequestMeta, response: Response, options?: ReplyOptions): Effect.Effect<void, AmqpError> =>
  Effect.suspend(() => {
    const link = meta[ServerLinkId]
    if (!(link instanceof Link)) {
      return Effect.fail(configError("replyTo needs the meta object given to handleRequest"))
    }
    return link.awaitChannel.pipe(Effect.flatMap((channel) => sendReply(link, channel, meta, response, options)))
  })

// ---------------------------------------------------------------------------------------------------------------
// Servers

/** Waits until the server consumes on a channel and returns that status; fails once the server stopped. */
export const awaitReady = (server: Running): Effect.Effect<Ready, AmqpError> =>
  server.status.changes.pipe(
    Stream.filter((status) => status._tag === "Ready" || status._tag === "Stopped"),
    Stream.runHead,
    Effect.flatMap((status) =>
      Option.isSome(status) && status.value._tag === "Ready"
        ? Effect.succeed(status.value)
        : Effect.fail(new AmqpError({ reason: "Closed", message: `RPC server ${server.name} stopped` }))
    )
  )

const makeLink = (config: Resolved) =>
  Effect.map(
    SubscriptionRef.make<ServerStatus>({ _tag: "Connecting", attempt: 1 }),
    (status) => new Link(config, status, countersFor(config.name))
  )

type Message<Info> =
  | { readonly _tag: "Delivery"; readonly delivery: Delivery }
  | { readonly _tag: "Connected"; readonly meta: ChannelMeta }
  | { readonly _tag: "Ready"; readonly meta: ReadyMeta }
  | { readonly _tag: "SessionEnded"; readonly error: AmqpError }
  | { readonly _tag: "Info"; readonly message: Info }

class ServerImpl<in Info, out Reason> implements Server<Info, Reason> {
  declare readonly [ServerTypeId]: { readonly _Info: (_: Info) => void; readonly _Reason: () => Reason }
  readonly name: string
  readonly status: SubscriptionRef.SubscriptionRef<ServerStatus>
  constructor(
    readonly process: Process.ProcessRef<never, unknown, never, never, Reason>,
    link: Link,
    readonly sendInfo: (message: Info) => boolean
  ) {
    this.name = link.config.name
    this.status = link.status
  }
}

const toEffect = <A, R>(result: Process.Returns<A, R>): Effect.Effect<A, unknown, R> =>
  Effect.isEffect(result) ? (result as Effect.Effect<A, unknown, R>) : Effect.succeed(result as A)

/** Sends `message` to the server's `handleInfo` (dropped if the server has stopped). */
export const send = <Info>(server: Server<Info, unknown>, message: Info): Effect.Effect<void> =>
  Effect.sync(() => {
    if (server instanceof ServerImpl) server.sendInfo(message)
  })

/**
 * Starts a behaviour server (Hare's `start_link`): validates the config, runs `init`, then opens its channel,
 * declares, consumes, and keeps doing so after every channel or connection loss. Returns after `init`; use
 * `awaitReady` to wait for the consumer. Requests are handled one at a time, in order, with the state threaded
 * through. The server stops when the scope closes (after the request in hand; unacked requests are requeued by
 * the broker), when a handler returns `stop`, or when it crashes (`handleInfo` / `connected` failure).
 */
export const start = <Arg, State, Info = never, Reason = never, R = never>(
  behaviour: Behaviour<Arg, State, Info, Reason, R>,
  config: ServerConfig,
  arg: Arg,
  options?: ServerOptions
): Effect.Effect<
  Server<Info, Reason>,
  AmqpError | Process.InitStopped<Reason> | Process.InitIgnored,
  AmqpConnectionTag | R | Scope.Scope
> =>
  Effect.gen(function*() {
    const resolved = yield* resolve(config, options)
    const connection = yield* AmqpConnectionTag
    const scope = yield* Effect.scope
    // Created before the process, so closed after it: the request in hand is answered and acked on an open channel.
    const sessionScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
    const link = yield* makeLink(resolved)
    let server: ServerImpl<Info, Reason> | undefined

    const processBehaviour: Process.Behaviour<Arg, State, never, never, never, Message<Info>, Reason, R> = {
      init: (initArg, self) => {
        const created = new ServerImpl<Info, Reason>(self, link, (message) => Process.unsafeSend(self, { _tag: "Info", message }))
        server = created
        return behaviour.init(initArg, created)
      },
      handleInfo: (message, state) => {
        switch (message._tag) {
          case "Delivery":
            return processDelivery(
              link,
              message.delivery,
              (payload, meta) => toEffect(behaviour.handleRequest(payload, meta, state))
            ).pipe(
              Effect.map(Option.match({
                onNone: () => Process.noreply(state),
                onSome: (result) =>
                  result._tag === "Stop" ? Process.stop(result.reason, result.state) : Process.noreply(result.state)
              }))
            )
          case "Connected":
            return behaviour.connected === undefined ? Process.noreply(state) : behaviour.connected(message.meta, state)
          case "Ready":
            return behaviour.handleReady === undefined ? Process.noreply(state) : behaviour.handleReady(message.meta, state)
          case "SessionEnded":
            return Effect.fail(message.error)
          case "Info":
            return behaviour.handleInfo === undefined ? Process.noreply(state) : behaviour.handleInfo(message.message, state)
        }
      },
      ...(behaviour.terminate === undefined ? {} : {
        terminate: (reason: Process.ExitReason<Reason>, state: State) => behaviour.terminate!(reason, state)
      })
    }

    const ref = yield* Process.start(processBehaviour, arg, { name: `RpcServer(${resolved.name})` }).pipe(
      Effect.onError(() => Scope.close(sessionScope, Exit.void))
    )
    const sink: Sink = {
      delivery: (delivery) => {
        Process.unsafeSend(ref, { _tag: "Delivery", delivery })
      },
      connected: (meta) => {
        Process.unsafeSend(ref, { _tag: "Connected", meta })
      },
      ready: (meta) => {
        Process.unsafeSend(ref, { _tag: "Ready", meta })
      },
      gaveUp: (error) => {
        Process.unsafeSend(ref, { _tag: "SessionEnded", error })
      }
    }
    yield* session(link, connection, sink).pipe(
      (running) => Effect.raceFirst(running, Effect.asVoid(Process.await(ref))),
      Effect.ensuring(SubscriptionRef.set(link.status, { _tag: "Stopped" })),
      Effect.interruptible,
      Effect.forkIn(sessionScope)
    )
    return server!
  })

/** Waits until the server's status is Stopped (its channel closed). */
const awaitStopped = (server: Running): Effect.Effect<void> =>
  server.status.changes.pipe(Stream.takeUntil((status) => status._tag === "Stopped"), Stream.runDrain)

/**
 * Stops a behaviour server like `gen_server:stop` and waits until it has exited and closed its channel (requests
 * it had not acknowledged are requeued by the broker). Returns the exit reason.
 */
export const exit = <Reason>(server: Server<never, Reason>, ...reason: [] | [Reason]): Effect.Effect<Process.ExitReason<Reason>> =>
  (reason.length === 0 ? Process.exit(server.process) : Process.exit(server.process, reason[0])).pipe(
    Effect.zipLeft(awaitStopped(server))
  )

/** Waits for a behaviour server to stop (exited, channel closed) and returns why. */
export const awaitExit = <Reason>(server: Server<never, Reason>): Effect.Effect<Process.ExitReason<Reason>> =>
  Process.await(server.process).pipe(Effect.zipLeft(awaitStopped(server)))

/**
 * Serves a stateless handler: up to `concurrency` requests at once (default 1), each answered with the
 * handler's bytes. Lives until the scope closes (in-flight requests are interrupted and requeued by the broker).
 */
export const serve = <E, R>(
  config: ServerConfig,
  handler: Handler<E, R>,
  options?: ServerOptions
): Effect.Effect<Running, AmqpError, AmqpConnectionTag | R | Scope.Scope> =>
  Effect.gen(function*() {
    const resolved = yield* resolve(config, options)
    const connection = yield* AmqpConnectionTag
    const link = yield* makeLink(resolved)
    const deliveries = yield* Queue.unbounded<Delivery>()
    yield* Effect.addFinalizer(() => Queue.shutdown(deliveries))
    // The session first, so that on close the workers stop before the channel closes.
    yield* session(link, connection, {
      delivery: (delivery) => {
        Queue.unsafeOffer(deliveries, delivery)
      },
      connected: () => {},
      ready: () => {},
      gaveUp: () => {}
    }).pipe(
      Effect.ensuring(SubscriptionRef.set(link.status, { _tag: "Stopped" })),
      Effect.interruptible,
      Effect.forkScoped
    )
    const run = (payload: Buffer, meta: RequestMeta) => Effect.map(handler(payload, meta), (response) => reply(response, undefined))
    const worker = Effect.forever(Effect.flatMap(Queue.take(deliveries), (delivery) => processDelivery(link, delivery, run)))
    for (let i = 0; i < resolved.concurrency; i++) yield* Effect.forkScoped(Effect.interruptible(worker))
    return { name: resolved.name, status: link.status }
  })
