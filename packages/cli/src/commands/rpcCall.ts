/**
 * `warren rpc call`: one RPC request the reply_to / correlation_id way (any such server answers it); the reply body
 * goes to stdout as is (or pretty-printed with `--json`), exit 0. With `--count N --concurrency C` it is a quick
 * load test instead: N requests, C at a time, then the latency percentiles (a progress bar on a TTY).
 *
 * The exchange is checked (passive declare), never created. An empty `--exchange` (or none) is the default
 * exchange, where the routing key is the server's queue name. Requests are `mandatory`, so an unroutable one fails
 * at once.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { AmqpConnection, Reconnect, RpcClient } from "@warren/amqp"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { checkExchange, connect } from "../internal/amqp.js"
import { amqpUrl, choice, CliFailure, commonOptions, duration, positiveInt, runCommand } from "../internal/common.js"
import { type Io, nodeIo } from "../internal/io.js"

/** The flags and argument of `warren rpc call`. */
export const rpcCallOptions = {
  ...commonOptions,
  url: amqpUrl,
  exchange: Options.text("exchange").pipe(
    Options.withDescription(
      "The request exchange; empty (the default) is the default exchange, where the routing key is a queue."
    ),
    Options.withDefault("")
  ),
  exchangeType: Options.optional(choice(
    "exchange-type",
    ["direct", "fanout", "topic", "headers"],
    "Check that the exchange has this type (and is durable); without it only its existence is checked."
  )),
  routingKey: Options.text("routing-key").pipe(
    Options.withAlias("k"),
    Options.withDescription("The request's routing key.")
  ),
  timeout: duration("timeout", "Time allowed for the whole call, connect included (default 5 s)").pipe(
    Options.withDefault(Duration.seconds(5))
  ),
  header: Options.keyValueMap("header").pipe(
    Options.withAlias("H"),
    Options.withDescription("A request header, key=value (repeat the flag for more)."),
    Options.optional
  ),
  contentType: Options.optional(
    Options.text("content-type").pipe(Options.withDescription("The request's content type."))
  ),
  json: Options.boolean("json").pipe(
    Options.withDescription("Pretty-print the reply as JSON (fails if it is not JSON).")
  ),
  count: positiveInt("count", "Send N requests and print latency percentiles instead of the reply.").pipe(
    Options.withDefault(1)
  ),
  concurrency: positiveInt("concurrency", "Requests in flight at once with --count.").pipe(Options.withDefault(1)),
  payload: Args.text({ name: "PAYLOAD" }).pipe(
    Args.withDescription("The request body; - reads it from stdin (any size).")
  )
}

/** The parsed flags and argument. */
export type RpcCallArgs = Command.Command.ParseConfig<typeof rpcCallOptions>

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!

const ms = (value: number) => value.toFixed(2)

/** The command as an Effect: connects, checks the exchange, sends the request(s) and writes the result to `io`. */
export const rpcCallProgram = (args: RpcCallArgs, io: Io) =>
  Effect.gen(function*() {
    const payload = args.payload === "-" ? yield* io.stdin : Buffer.from(args.payload)
    const target = args.exchange === "" ? "the default exchange" : `exchange "${args.exchange}"`
    // The connection's own timeout fires first, so that a connect that stalls is reported with its reason (the port
    // accepts TCP but never speaks AMQP) rather than as "no reply".
    const connectTimeout = Duration.millis(Math.max(1, Math.floor(Duration.toMillis(args.timeout) * 0.8)))
    const connection = yield* connect({ url: args.url, timeout: connectTimeout, name: "warren rpc call" })
    if (args.exchange !== "") {
      yield* checkExchange(connection, args.exchange, Option.getOrUndefined(args.exchangeType)).pipe(
        Effect.timeoutFail({
          duration: args.timeout,
          onTimeout: () =>
            new CliFailure({
              message: `the broker did not answer the exchange check within ${Duration.format(args.timeout)}`
            })
        })
      )
    }
    const clientOptions = {
      name: "warren rpc call",
      exchange: { name: args.exchange, type: Option.getOrElse(args.exchangeType, () => "direct"), passive: true },
      timeout: args.timeout,
      // One attempt: a missing exchange or a lost connection ends the call.
      reconnect: Reconnect.limit(Reconnect.defaultPolicy, 0),
      spans: false,
      // An error reply (header x-warren-error, e.g. from `warren rpc serve --exec`) fails the call with
      // RpcRemoteError instead of printing the error text as a reply (RpcClient's `remoteErrors` option).
      remoteErrors: true
    }
    const client = yield* RpcClient.make(clientOptions).pipe(
      Effect.provideService(AmqpConnection.AmqpConnection, connection)
    )
    const publish = {
      mandatory: true,
      ...(Option.isSome(args.header) ? { headers: Object.fromEntries(HashMap.toEntries(args.header.value)) } : {}),
      ...(Option.isSome(args.contentType) ? { contentType: args.contentType.value } : {})
    }
    const send = client.request(payload, args.routingKey, publish, args.timeout)
    const request = send.pipe(
      Effect.mapError((error) => {
        switch (error._tag) {
          case "RpcTimeout":
            return new CliFailure({
              message: `no reply within ${
                Duration.format(args.timeout)
              } (routing key "${args.routingKey}" on ${target})`,
              cause: error
            })
          case "RpcUnroutable":
            return new CliFailure({
              message: `unroutable: no queue is bound to ${target} with routing key "${args.routingKey}"`,
              cause: error
            })
          default:
            return error
        }
      })
    )
    if (args.count === 1) {
      const reply = yield* request
      if (!args.json) return yield* io.stdout(reply)
      const parsed = yield* Effect.try({
        try: () => JSON.parse(reply.toString("utf8")) as unknown,
        catch: (cause) => new CliFailure({ message: "--json: the reply is not JSON", cause })
      })
      return yield* io.stdout(Buffer.from(`${JSON.stringify(parsed, null, 2)}\n`))
    }
    // A load test: latencies in milliseconds, failures counted by tag.
    const latencies: Array<number> = []
    const failures = new Map<string, number>()
    let done = 0
    const started = performance.now()
    const one = Effect.suspend(() => {
      const t0 = performance.now()
      return send.pipe(
        Effect.match({
          onSuccess: () => void latencies.push(performance.now() - t0),
          onFailure: (error) => void failures.set(error._tag, (failures.get(error._tag) ?? 0) + 1)
        }),
        Effect.ensuring(Effect.sync(() => done++))
      )
    })
    const bar = () => {
      const width = 30
      const filled = Math.round((done / args.count) * width)
      return `\r[${"#".repeat(filled)}${" ".repeat(width - filled)}] ${done}/${args.count}`
    }
    const progress = io.isTTY
      ? Effect.repeat(Effect.sync(() => io.stderr(bar())), Schedule.spaced("100 millis")).pipe(Effect.forkScoped)
      : Effect.void
    yield* progress
    yield* Effect.forEach(Array.from({ length: args.count }), () => one, {
      concurrency: args.concurrency,
      discard: true
    })
    if (io.isTTY) io.stderr(`${bar()}\n`)
    const seconds = (performance.now() - started) / 1000
    const sorted = latencies.sort((a, b) => a - b)
    const failed = Array.from(failures.values()).reduce((a, b) => a + b, 0)
    const lines = [
      `requests: ${latencies.length} ok, ${failed} failed in ${seconds.toFixed(2)} s (${
        Math.round(args.count / seconds)
      } req/s, concurrency ${args.concurrency})`,
      `latency ms: p50 ${ms(percentile(sorted, 50))}  p90 ${ms(percentile(sorted, 90))}  p99 ${
        ms(percentile(sorted, 99))
      }  max ${ms(sorted.at(-1) ?? 0)}`,
      ...Array.from(failures, ([tag, count]) => `failed: ${count} ${tag}`)
    ]
    yield* io.stdout(Buffer.from(`${lines.join("\n")}\n`))
    if (failed > 0) {
      const why = Array.from(failures, ([tag, count]) => `${count} ${tag}`).join(", ")
      return yield* new CliFailure({ message: `${failed} of ${args.count} requests failed (${why})` })
    }
  }).pipe(Effect.scoped)

/** `warren rpc call`. */
export const rpcCallCommand = Command.make(
  "call",
  rpcCallOptions,
  (args) =>
    runCommand(
      "rpc call",
      args,
      // stdout carries the reply only, stderr one line: the library's logs (reconnect warnings) only with --verbose.
      args.verbose
        ? rpcCallProgram(args, nodeIo)
        : Logger.withMinimumLogLevel(rpcCallProgram(args, nodeIo), LogLevel.None)
    )
).pipe(Command.withDescription(
  "Send one RPC request and print the reply body; or, with --count, a quick load test with latency percentiles."
))
