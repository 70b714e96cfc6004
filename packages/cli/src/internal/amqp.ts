/**
 * The CLI's AMQP helpers: a one-shot connection (no reconnects: a command fails instead of waiting) and the
 * exchange checks of `warren rpc call`.
 */
import { AmqpConnection, Reconnect } from "@warren/amqp"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import { CliFailure, redact } from "./common.js"

/** AMQP reply code of a failed channel operation (`404` NOT_FOUND, `406` PRECONDITION_FAILED), if any. */
const replyCode = (error: unknown): number | undefined =>
  Predicate.isObject(error) && "code" in error && typeof error.code === "number" ? error.code : undefined

/**
 * Connects once, bounded by `timeout`; failures are one line naming the redacted URL. With `reconnect`, the
 * connection is reopened after a loss (servers); without, a lost connection stays lost (one-shot commands).
 */
export const connect = (options: {
  readonly url: string
  readonly timeout: Duration.DurationInput
  readonly name: string
  readonly reconnect?: boolean
}) =>
  Effect.gen(function*() {
    const connection = yield* AmqpConnection.make({
      urls: options.url,
      // The connection's own timeout fires first (80% of the command's), so a connect that stalls is reported with
      // its reason (e.g. HandshakeTimeout: the port accepts TCP but never speaks AMQP), not as a timeout of the call.
      connectTimeout: Duration.millis(Math.max(1, Math.floor(Duration.toMillis(options.timeout) * 0.8))),
      ...(options.reconnect === true ? {} : { reconnect: Reconnect.limit(Reconnect.defaultPolicy, 0) }),
      connectionName: options.name
    })
    yield* connection.awaitConnected.pipe(
      Effect.mapError((error) =>
        new CliFailure({
          // The attempt's own message names the (redacted) URL and the reason ("AMQP connect to … failed (Refused): …").
          message: redact(error.cause instanceof Error ? error.cause.message : `cannot connect: ${error.message}`),
          cause: error
        })
      )
    )
    return connection
  })

/**
 * Checks that `exchange` exists (a passive declare: nothing is created) and, when `type` is given, that it has
 * that type: a non-passive declare of an existing exchange is a no-op when type and flags match and fails with
 * PRECONDITION_FAILED (406) when they differ. Each check uses a channel of its own (a failed one is closed by the
 * broker). Durable is assumed, as servers declare request exchanges (docs/decisions.md).
 */
export const checkExchange = (
  connection: AmqpConnection.AmqpConnectionShape,
  exchange: string,
  type: string | undefined
) =>
  Effect.gen(function*() {
    yield* Effect.scoped(Effect.flatMap(connection.openChannel(), (channel) =>
      Effect.tryPromise({
        try: () => channel.checkExchange(exchange),
        catch: (error) =>
          new CliFailure({
            message: replyCode(error) === 404
              ? `exchange "${exchange}" does not exist`
              : `cannot check exchange "${exchange}": ${error instanceof Error ? error.message : String(error)}`,
            cause: error
          })
      })))
    if (type === undefined) return
    yield* Effect.scoped(Effect.flatMap(connection.openChannel(), (channel) =>
      Effect.tryPromise({
        try: () => channel.assertExchange(exchange, type, { durable: true }),
        catch: (error) =>
          new CliFailure({
            message: replyCode(error) === 406
              ? `exchange "${exchange}" is not a durable ${type} exchange (--exchange-type ${type})`
              : `cannot check exchange "${exchange}": ${error instanceof Error ? error.message : String(error)}`,
            cause: error
          })
      })))
  })
