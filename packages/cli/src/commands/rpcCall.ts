/**
 * `warren rpc call --url URL --exchange NAME [--exchange-type direct] --routing-key KEY [--timeout MS] PAYLOAD`:
 * one RPC request the reply_to / correlation_id way (any such server answers it); the response body goes to
 * stdout as is, exit 0. On a timeout, an unroutable request, a missing exchange or a connection failure: one line
 * on stderr and a non-zero exit (1; 2 for a usage error).
 *
 * The exchange is only checked (passive declare), never declared: a server may have declared it with any
 * arguments (durable or not, auto-delete or not). An empty `--exchange` (or none) is the default exchange, where
 * the routing key is the server's queue name. Requests are `mandatory`, so an unroutable one fails at once.
 */
import { AmqpConnection, Reconnect, RpcClient } from "@warren/amqp"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as NodeUtil from "node:util"

/** Options of `warren rpc call`. */
export interface RpcCallOptions {
  readonly url: string
  /** `""`: the default exchange. */
  readonly exchange: string
  readonly exchangeType: string
  readonly routingKey: string
  /** Milliseconds, for the whole call (connect included). */
  readonly timeout: number
  readonly payload: string
}

/** The usage text of the command. */
export const rpcCallUsage =
  "usage: warren rpc call --url URL --exchange NAME [--exchange-type direct] --routing-key KEY [--timeout MS] PAYLOAD"

/** Parses the command line (after `rpc call`); `Left("help")` for --help, `Left(message)` for a usage error. */
export const parseRpcCallArgs = (args: ReadonlyArray<string>): Either.Either<RpcCallOptions, string> => {
  let parsed: {
    values: {
      url?: string | undefined
      exchange?: string | undefined
      "exchange-type"?: string | undefined
      "routing-key"?: string | undefined
      timeout?: string | undefined
      help?: boolean | undefined
    }
    positionals: Array<string>
  }
  try {
    parsed = NodeUtil.parseArgs({
      args: [...args],
      options: {
        url: { type: "string" },
        exchange: { type: "string" },
        "exchange-type": { type: "string" },
        "routing-key": { type: "string" },
        timeout: { type: "string" },
        help: { type: "boolean", short: "h" }
      },
      allowPositionals: true,
      strict: true
    })
  } catch (error) {
    return Either.left(error instanceof Error ? error.message : String(error))
  }
  const values = parsed.values
  if (values.help === true) return Either.left("help")
  if (values.url === undefined || values.url === "") return Either.left("--url is required")
  if (!/^amqps?:\/\//.test(values.url)) return Either.left(`--url must be an amqp:// or amqps:// URL, got ${values.url}`)
  if (values["routing-key"] === undefined) return Either.left("--routing-key is required")
  if (parsed.positionals.length !== 1) {
    return Either.left(parsed.positionals.length === 0 ? "PAYLOAD is required" : "exactly one PAYLOAD is expected")
  }
  const timeoutText = values.timeout ?? "5000"
  const timeout = Number(timeoutText)
  if (!/^\d+$/.test(timeoutText) || timeout <= 0) return Either.left(`invalid --timeout (milliseconds): ${timeoutText}`)
  const exchangeType = values["exchange-type"] ?? "direct"
  if (exchangeType === "") return Either.left("invalid --exchange-type: (empty)")
  // `--exchange ""` and `--exchange ''` written literally also mean the default exchange.
  const exchange = values.exchange === undefined || values.exchange === "\"\"" || values.exchange === "''"
    ? ""
    : values.exchange
  return Either.right({
    url: values.url,
    exchange,
    exchangeType,
    routingKey: values["routing-key"],
    timeout,
    payload: parsed.positionals[0]!
  })
}

/** Why a call failed, as one line for stderr. */
export class RpcCallError extends Data.TaggedError("RpcCallError")<{
  readonly reason: "Connect" | "Exchange" | "Timeout" | "Unroutable" | "Failed"
  readonly message: string
}> {}

/**
 * The command as an Effect: connects, checks the exchange, sends one request and returns the response body.
 * Everything (connect included) is bounded by `timeout`; no reconnects.
 */
export const rpcCall = (options: RpcCallOptions): Effect.Effect<Buffer, RpcCallError> => {
  const timeout = Duration.millis(options.timeout)
  const target = options.exchange === "" ? "the default exchange" : `exchange "${options.exchange}"`
  const timedOut = () =>
    new RpcCallError({
      reason: "Timeout",
      message: `no reply within ${options.timeout} ms (routing key "${options.routingKey}" on ${target})`
    })
  return Effect.gen(function*() {
    const connection = yield* AmqpConnection.make({
      urls: options.url,
      // The connection's own timeout fires first, so that a connect that stalls is reported with its reason
      // (e.g. HandshakeTimeout: the port accepts TCP but never speaks AMQP) rather than as "no reply".
      connectTimeout: Duration.millis(Math.max(1, Math.floor(options.timeout * 0.8))),
      reconnect: Reconnect.limit(Reconnect.defaultPolicy, 0),
      connectionName: "warren rpc call"
    }).pipe(Effect.mapError((error) => new RpcCallError({ reason: "Connect", message: error.message })))
    yield* connection.awaitConnected.pipe(
      Effect.mapError((error) =>
        new RpcCallError({
          reason: "Connect",
          // The attempt's own message names the (redacted) URL and the reason ("AMQP connect to … failed (Refused): …").
          message: error.cause instanceof Error ? error.cause.message : `cannot connect: ${error.message}`
        })
      )
    )
    const client = yield* RpcClient.make({
      name: "warren rpc call",
      exchange: { name: options.exchange, type: options.exchangeType, passive: true },
      timeout,
      // One attempt: a missing exchange or a lost connection ends the call.
      reconnect: Reconnect.limit(Reconnect.defaultPolicy, 0),
      spans: false
    }).pipe(
      Effect.provideService(AmqpConnection.AmqpConnection, connection),
      Effect.mapError((error) => new RpcCallError({ reason: "Failed", message: error.message }))
    )
    return yield* client.request(options.payload, options.routingKey, { mandatory: true }, timeout).pipe(
      Effect.mapError((error): RpcCallError => {
        switch (error._tag) {
          case "RpcTimeout":
            return timedOut()
          case "RpcUnroutable":
            return new RpcCallError({
              reason: "Unroutable",
              message: `unroutable: no queue is bound to ${target} with routing key "${options.routingKey}"`
            })
          case "RpcChannelSetupFailed":
            return error.reason === "ExchangeNotFound"
              ? new RpcCallError({ reason: "Exchange", message: `${target} does not exist` })
              : new RpcCallError({ reason: "Failed", message: error.message })
          default:
            return new RpcCallError({ reason: "Failed", message: error.message })
        }
      })
    )
  }).pipe(
    Effect.scoped,
    Effect.timeoutFail({ duration: timeout, onTimeout: timedOut }),
    // stdout carries the response only, stderr one line: the library's logs stay out of both.
    Logger.withMinimumLogLevel(LogLevel.None)
  )
}

/**
 * Runs the command with `args`: the response on `stdout`, a failure as one line on `stderr`. Returns the exit
 * code (0 ok, 1 failed, 2 usage).
 */
export const rpcCallMain = (
  args: ReadonlyArray<string>,
  io: { readonly stdout: (bytes: Buffer) => void; readonly stderr: (line: string) => void }
): Effect.Effect<number> => {
  const parsed = parseRpcCallArgs(args)
  if (Either.isLeft(parsed)) {
    if (parsed.left === "help") {
      io.stderr(`${rpcCallUsage}\n`)
      return Effect.succeed(0)
    }
    io.stderr(`warren rpc call: ${parsed.left}\n${rpcCallUsage}\n`)
    return Effect.succeed(2)
  }
  return rpcCall(parsed.right).pipe(
    Effect.match({
      onSuccess: (body) => {
        io.stdout(body)
        return 0
      },
      onFailure: (error) => {
        io.stderr(`warren rpc call: ${error.message}\n`)
        return 1
      }
    })
  )
}

/** `warren rpc call` with the process's arguments; exits when done (stdout flushed first). */
export const runRpcCall = (args: ReadonlyArray<string>): void => {
  const io = {
    stdout: (bytes: Buffer) => {
      process.stdout.write(bytes)
    },
    stderr: (line: string) => {
      process.stderr.write(line)
    }
  }
  Effect.runPromise(rpcCallMain(args, io)).then((code) => {
    // Exit once stdout is drained (a pipe may still hold the response).
    process.stdout.write("", () => process.exit(code))
  })
}
