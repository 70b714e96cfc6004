/** RPC server configuration: the `ServerConfig` schema, non-data `ServerOptions`, and their resolution. */
import type * as Amqp from "amqplib"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Reconnect from "../Reconnect.js"
import { AmqpError } from "./amqpError.js"
import * as Topology from "./topology.js"

/** An optional field that is absent or present, never `undefined` (matches amqplib's option objects). */
export const opt = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

export const Arguments = Schema.Record({ key: Schema.String, value: Schema.Unknown })

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

export interface Resolved {
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

export const configError = (message: string, cause?: unknown) =>
  new AmqpError({ reason: "Config", message: `invalid RPC server config: ${message}`, cause })

export const resolve = (config: ServerConfig, options: ServerOptions | undefined): Effect.Effect<Resolved, AmqpError> =>
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
