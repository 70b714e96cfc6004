/**
 * `warren rpc serve --exec CMD`: a request/reply server for scripts (like amqp-tools' `amqp-consume`, but
 * answering). Each request's body goes to CMD's stdin (run with `sh -c`), CMD's stdout is the reply. A CMD that
 * exits non-zero (or is killed) is answered with its stderr text and the header `x-warren-error` (`exit <code>: <first
 * line of stderr>`, or `signal <name>: ...`). Up to `--concurrency` commands run at once; `--prefetch` bounds the deliveries the broker
 * pushes ahead. Runs until SIGINT/SIGTERM; prints `ready QUEUE` once it consumes.
 *
 * The server is an `RpcServer` behaviour: `handleRequest` starts the command in a fiber of a `FiberSet` owned by
 * the command's scope and returns `noreply`; the fiber answers with `RpcServer.replyTo`. A request is acknowledged
 * when its command has been started, so a request in flight when the server dies is not redelivered.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { AmqpConnection, RpcServer } from "@warren/amqp"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { connect } from "../internal/amqp.js"
import { amqpUrl, choice, commonOptions, duration, integer, positiveInt, runCommand } from "../internal/common.js"
import { exec } from "../internal/exec.js"
import * as MetricsServer from "../MetricsServer.js"

/**
 * The header of an error reply (the one warren's `RpcClient` turns into `RpcRemoteError` with `remoteErrors`):
 * `exit <code>: <first line of stderr>` or `signal <name>: ...`; the body is the command's whole stderr.
 */
export const errorHeader = "x-warren-error"

/** The flags of `warren rpc serve`. */
export const rpcServeOptions = {
  ...commonOptions,
  url: amqpUrl,
  exchange: Options.text("exchange").pipe(
    Options.withDescription("Exchange to bind the queue to (declared, durable); empty: the default exchange only."),
    Options.withDefault("")
  ),
  exchangeType: choice("exchange-type", ["direct", "fanout", "topic", "headers"], "Type of the exchange declared.")
    .pipe(
      Options.withDefault("direct" as const)
    ),
  queue: Options.text("queue").pipe(Options.withDescription("The request queue (declared).")),
  bindings: Options.text("binding").pipe(
    Options.withDescription("Routing key binding the queue to --exchange (repeatable; default: the queue name)."),
    Options.repeated
  ),
  exec: Options.text("exec").pipe(
    Options.withPseudoName("CMD"),
    Options.withDescription("Shell command run per request: the body on its stdin, its stdout the reply.")
  ),
  concurrency: positiveInt("concurrency", "Commands running at once.").pipe(Options.withDefault(1)),
  prefetch: Options.optional(
    positiveInt("prefetch", "Unacknowledged deliveries the broker pushes ahead (default max(20, 2 x concurrency)).")
  ),
  connectTimeout: duration("connect-timeout", "Time allowed for each connect").pipe(
    Options.withDefault(Duration.seconds(10))
  ),
  metricsPort: Options.optional(
    integer("metrics-port", "Serve /metrics (Prometheus) and /healthz on this port (0: a free one, printed).", 0, 65535)
  ),
  metricsHost: Options.text("metrics-host").pipe(
    Options.withDescription("Address of the metrics endpoint."),
    Options.withDefault("127.0.0.1")
  )
}

/** The parsed flags. */
export type RpcServeArgs = Command.Command.ParseConfig<typeof rpcServeOptions>

const execRequests = Metric.counter("warren_cli_exec_requests_total", {
  description: "Requests handled by `warren rpc serve --exec`, by outcome",
  incremental: true
})

/** The server program: serves until interrupted; `onReady` runs once it consumes. */
export const rpcServeProgram = (
  args: RpcServeArgs,
  onReady: (queue: string) => Effect.Effect<void> = (queue) =>
    Effect.sync(() => process.stdout.write(`ready ${queue}\n`)),
  onMetrics: (address: MetricsServer.MetricsServer["address"]) => Effect.Effect<void> = (address) =>
    Effect.sync(() => process.stdout.write(`metrics on http://${address.host}:${address.port}/metrics\n`))
) =>
  Effect.gen(function*() {
    const connection = yield* connect({
      url: args.url,
      timeout: args.connectTimeout,
      name: "warren rpc serve",
      reconnect: true
    })
    // Owned by this scope: closing it (SIGINT/SIGTERM) interrupts the commands still running.
    const running = yield* FiberSet.make<void, never>()
    const slots = yield* Effect.makeSemaphore(args.concurrency)
    const handle = (payload: Buffer, meta: RpcServer.RequestMeta) =>
      exec(args.exec, payload).pipe(
        Effect.flatMap((result) => {
          if (result.code === 0) {
            return Effect.zipRight(
              Metric.increment(Metric.tagged(execRequests, "outcome", "ok")),
              RpcServer.replyTo(meta, result.stdout)
            )
          }
          const how = result.signal !== null ? `signal ${result.signal}` : `exit ${result.code}`
          const said = result.stderr.toString("utf8").trim().split("\n")[0]?.slice(0, 200) ?? ""
          return Effect.zipRight(
            Metric.increment(Metric.tagged(execRequests, "outcome", "error")),
            RpcServer.replyTo(meta, result.stderr, {
              headers: { [errorHeader]: said === "" ? how : `${how}: ${said}` }
            })
          )
        }),
        Effect.catchAll((error) =>
          Effect.zipRight(
            Effect.logError("rpc serve: request not answered", error.message),
            RpcServer.replyTo(meta, error.message, { headers: { [errorHeader]: error.message } }).pipe(Effect.ignore)
          )
        ),
        Effect.ensuring(slots.release(1))
      )
    const behaviour: RpcServer.Behaviour<void, void> = {
      init: () => RpcServer.ok(undefined),
      handleRequest: (payload, meta, state) =>
        // Waiting for a slot here holds the next delivery back: at most `concurrency` commands run.
        Effect.zipRight(
          Effect.zipRight(slots.take(1), FiberSet.run(running, handle(payload, meta))),
          Effect.succeed(RpcServer.noreply(state))
        )
    }
    const [first = args.queue, ...rest] = args.bindings
    const config: RpcServer.ServerConfig = {
      name: `exec:${args.queue}`,
      queue: args.queue,
      ...(args.exchange === "" ? {} : {
        exchange: { name: args.exchange, type: args.exchangeType, options: { durable: true } },
        bindings: [first, ...rest]
      }),
      ...(Option.isSome(args.prefetch) ? { prefetch: args.prefetch.value } : {})
    }
    const server = yield* RpcServer.start(behaviour, config, undefined).pipe(
      Effect.provideService(AmqpConnection.AmqpConnection, connection)
    )
    if (Option.isSome(args.metricsPort)) {
      const metrics = yield* MetricsServer.make({
        host: args.metricsHost,
        port: args.metricsPort.value,
        health: Effect.map(
          Effect.zip(SubscriptionRef.get(connection.state), SubscriptionRef.get(server.status)),
          ([connectionState, status]): MetricsServer.Health =>
            connectionState._tag !== "Connected"
              ? { _tag: "NotReady", reason: `AMQP connection ${connectionState._tag}` }
              : status._tag !== "Ready"
              ? { _tag: "NotReady", reason: `RPC server ${status._tag}` }
              : { _tag: "Ready" }
        )
      })
      yield* onMetrics(metrics.address)
    }
    const ready = yield* RpcServer.awaitReady(server)
    yield* onReady(ready.queue)
    return yield* Effect.never
  }).pipe(Effect.scoped)

/** `warren rpc serve`. */
export const rpcServeCommand = Command.make(
  "serve",
  rpcServeOptions,
  (args) => runCommand("rpc serve", args, rpcServeProgram(args))
).pipe(Command.withDescription(
  "Answer RPC requests with a shell command: the body on its stdin, its stdout the reply (stderr and an x-warren-error header when it fails)."
))
