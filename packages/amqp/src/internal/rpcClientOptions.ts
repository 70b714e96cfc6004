/** RPC client options: their Schema, defaults and validation (`AmqpError`). */
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Reconnect from "../Reconnect.js"
import { AmqpError } from "./amqpError.js"
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

/** The client's options are invalid: the one config error of the package (`AmqpError` with reason "Config"). */
const configError = (message: string, cause?: unknown): AmqpError =>
  new AmqpError({ reason: "Config", message: `invalid RPC client options: ${message}`, cause })

const duration = (
  field: string,
  input: unknown,
  fallback: Duration.DurationInput
): Either.Either<Duration.Duration, AmqpError> =>
  Option.match(Duration.decodeUnknown(input === undefined ? fallback : input), {
    onNone: () => Either.left(configError(`${field} is not a duration`)),
    onSome: (value) =>
      Duration.toMillis(value) > 0
        ? Either.right(value)
        : Either.left(configError(`${field} must be positive`))
  })

/**
 * Validates options given as anything (e.g. parsed from a file): a malformed option (an exchange that is not an
 * object, a non-positive limit, an unknown reply mode, ...) gives an `AmqpError` saying which.
 */
export const resolveOptions = (input: unknown): Either.Either<ResolvedOptions, AmqpError> => {
  const raw = input === undefined ? {} : input
  const decoded = Schema.decodeUnknownEither(StaticOptionsSchema)(raw, { onExcessProperty: "ignore" })
  if (Either.isLeft(decoded)) {
    return Either.left(configError(ParseResult.TreeFormatter.formatErrorSync(decoded.left), decoded.left))
  }
  const record = raw as Readonly<Record<string, unknown>>
  const timeout = duration("timeout", record["timeout"], "5 seconds")
  if (Either.isLeft(timeout)) return Either.left(timeout.left)
  const drainTimeout = duration("drainTimeout", record["drainTimeout"], "5 seconds")
  if (Either.isLeft(drainTimeout)) return Either.left(drainTimeout.left)
  const reconnect = record["reconnect"]
  if (reconnect !== undefined && !Schedule.isSchedule(reconnect)) {
    return Either.left(configError("reconnect is not a Schedule"))
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
