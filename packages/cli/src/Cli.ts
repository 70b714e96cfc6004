/**
 * The `warren` command line: `pb serve`, `rpc call`, `rpc serve`, `status`, on `@effect/cli` (generated `--help`,
 * `--completions bash|zsh|fish`, `--log-level`, `--version`).
 *
 * Spans are exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
 *
 * Exit codes: 0 success, 1 failure (one line on stderr; the full cause with `--verbose`), 2 usage error (a flag
 * or argument is missing or invalid; the message names it). `--help` goes to stdout.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { pbServeCommand } from "./commands/pbServe.js"
import { rpcCallCommand } from "./commands/rpcCall.js"
import { rpcServeCommand } from "./commands/rpcServe.js"
import { statusCommand } from "./commands/status.js"
import { CliExit, ExitCode } from "./internal/common.js"
import { tracingLayer } from "./internal/tracing.js"

/**
 * The command tree.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("warren").pipe(
  Command.withDescription("Erlang-style processes on Effect: an AMQP RPC client/server and a Riak PB server."),
  Command.withSubcommands([
    Command.make("pb").pipe(
      Command.withDescription("The Riak PB server."),
      Command.withSubcommands([pbServeCommand])
    ),
    Command.make("rpc").pipe(
      Command.withDescription("RPC over AMQP (reply_to / correlation_id)."),
      Command.withSubcommands([rpcCallCommand, rpcServeCommand])
    ),
    statusCommand
  ])
)

/**
 * The version printed by `--version`.
 *
 * @since 0.1.0
 * @category constants
 */
export const version = "0.1.0"

const footer = HelpDoc.p(
  "Exit codes: 0 success; 1 failure (one line on stderr, the full cause with --verbose); 2 usage error."
)

const cli = Command.run(command, { name: "warren", version, footer })

/**
 * Runs the command line `argv` (as `process.argv`: node, script, arguments...) and returns the exit code. Usage
 * errors are printed by @effect/cli (they name the flag), failures by the command.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (argv: ReadonlyArray<string>): Effect.Effect<number> =>
  cli(argv).pipe(
    Effect.as(ExitCode.ok),
    Effect.catchAll((error) =>
      Effect.succeed(
        error instanceof CliExit
          ? error.code
          : ValidationError.isValidationError(error)
          ? ExitCode.usage
          : ExitCode.failure
      )
    ),
    Effect.provide(NodeContext.layer),
    Effect.provide(tracingLayer(process.env, version)),
    withPlainConsole
  )

// @effect/cli renders help and usage errors with ANSI styles: kept for a terminal, stripped for pipes and files.
const ansi = /\u001b\[[0-9;]*m/g
const plain = (tty: boolean | undefined) => (value: unknown) =>
  tty === true || typeof value !== "string" ? value : value.replace(ansi, "")
const withPlainConsole = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Console.consoleWith((console) =>
    Console.withConsole(effect, {
      ...console,
      log: (...args) => console.log(...args.map(plain(process.stdout.isTTY))),
      error: (...args) => console.error(...args.map(plain(process.stderr.isTTY)))
    })
  )
