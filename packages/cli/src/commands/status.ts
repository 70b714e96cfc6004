/**
 * `warren status --metrics-url URL`: asks a running `warren pb serve` / `warren rpc serve` (started with
 * `--metrics-port`) how it is: its `/healthz` answer, then its connection and request counters from `/metrics`.
 * Exit 0 when ready, 1 when not ready or unreachable.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import { CliExit, CliFailure, commonOptions, ExitCode, runCommand } from "../internal/common.js"
import { type Io, nodeIo } from "../internal/io.js"

/** The flags of `warren status`. */
export const statusOptions = {
  ...commonOptions,
  metricsUrl: Options.text("metrics-url").pipe(
    Options.withDescription("The server's metrics endpoint, e.g. http://127.0.0.1:9464 (its --metrics-port)."),
    Options.withDefault("http://127.0.0.1:9464")
  ),
  all: Options.boolean("all").pipe(Options.withDescription("Print every metric line, not only the summary."))
}

/** The parsed flags. */
export type StatusArgs = Command.Command.ParseConfig<typeof statusOptions>

/** Series shown by default: connections, requests, errors, RPC traffic. */
const summary =
  /^warren_(pb_connections_active|pb_connections_accepted|pb_requests|pb_errors|amqp_connection_connected|(amqp_)?rpc_server_(requests|replies|failures)_total|rpc_client_(requests|replies|timeouts)_total|cli_exec_requests_total|kv_objects|kv_requests)\b/

const get = (url: string) =>
  Effect.tryPromise({
    try: async (signal) => {
      const response = await fetch(url, { signal })
      return { status: response.status, body: await response.text() }
    },
    catch: (cause) => new CliFailure({ message: `cannot reach ${url}`, cause })
  })

/** Fetches health and metrics and prints them to `io`. */
export const statusProgram = (args: StatusArgs, io: Io) =>
  Effect.gen(function*() {
    const base = args.metricsUrl.replace(/\/+$/, "").replace(/\/metrics$/, "")
    const health = yield* get(`${base}/healthz`)
    const metrics = yield* get(`${base}/metrics`)
    const lines = metrics.body.split("\n").filter((line) =>
      line !== "" && !line.startsWith("#") && (args.all || summary.test(line))
    )
    yield* io.stdout(Buffer.from(`${health.body.trim()}\n${lines.join("\n")}\n`))
    if (health.status !== 200) return yield* new CliExit({ code: ExitCode.failure })
  })

/** `warren status`. */
export const statusCommand = Command.make(
  "status",
  statusOptions,
  (args) => runCommand("status", args, statusProgram(args, nodeIo))
).pipe(Command.withDescription("Show a running server's health and counters (from its --metrics-port endpoint)."))
