/**
 * `warren pb serve [--host 127.0.0.1] [--port 8087] [--data-file PATH]`: a Riak-compatible PB server with the
 * services of `pbServices.ts`, until SIGINT/SIGTERM (exit 0). Prints `listening on HOST:PORT` (the real port, also
 * with `--port 0`) once it accepts connections, and `stopped HOST:PORT` once it has shut down (the KV snapshot is
 * written by then). Flags win over the environment (`WARREN_HOST`, `WARREN_PORT`, `WARREN_DATA_FILE`).
 */
import { NodeRuntime } from "@effect/platform-node"
import { PbServer, ServiceRegistry } from "@warren/pb"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as NodeUtil from "node:util"
import { pbServices } from "./pbServices.js"

/** Options of `warren pb serve`. */
export interface PbServeOptions {
  readonly host: string
  readonly port: number
  /** The KV snapshot file; when absent, `WARREN_DATA_FILE` (or none: memory only). */
  readonly dataFile?: string
}

/** The usage line of the command. */
export const pbServeUsage = "usage: warren pb serve [--host 127.0.0.1] [--port 8087] [--data-file PATH]"

/** Parses the command line (after `pb serve`); flags win over `WARREN_HOST` / `WARREN_PORT` from `env`. */
export const parsePbServeArgs = (
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>> = {}
): Either.Either<PbServeOptions, string> => {
  let parsed: {
    values: {
      host?: string | undefined
      port?: string | undefined
      "data-file"?: string | undefined
      help?: boolean | undefined
    }
  }
  try {
    parsed = NodeUtil.parseArgs({
      args: [...args],
      options: {
        host: { type: "string" },
        port: { type: "string" },
        "data-file": { type: "string" },
        help: { type: "boolean", short: "h" }
      },
      allowPositionals: false,
      strict: true
    })
  } catch (error) {
    return Either.left(error instanceof Error ? error.message : String(error))
  }
  if (parsed.values.help === true) return Either.left("help")
  const host = parsed.values.host ?? env["WARREN_HOST"] ?? "127.0.0.1"
  const portText = parsed.values.port ?? env["WARREN_PORT"] ?? "8087"
  const port = Number(portText)
  if (!/^\d+$/.test(portText) || port > 65535) return Either.left(`invalid port: ${portText}`)
  if (host === "") return Either.left("invalid host: (empty)")
  const dataFile = parsed.values["data-file"]
  if (dataFile === "") return Either.left("invalid data file: (empty)")
  return Either.right(dataFile === undefined ? { host, port } : { host, port, dataFile })
}

/**
 * The server program: registers the services, starts the server, calls `onListening` with its real address, then
 * runs until interrupted (which stops the server and closes its connections).
 */
export const pbServeProgram = <E = never>(
  options: PbServeOptions,
  onListening: (address: PbServer.Server["address"]) => Effect.Effect<void, E> = (address) =>
    Effect.sync(() => process.stdout.write(`listening on ${address.host}:${address.port}\n`))
) => {
  const stopped: { address?: PbServer.Server["address"] } = {}
  return Effect.gen(function*() {
    const registry = yield* ServiceRegistry.make
    yield* registry.registerAll(yield* pbServices(options.dataFile === undefined ? {} : { dataFile: options.dataFile }))
    const server = yield* PbServer.make({ host: options.host, port: options.port }).pipe(
      Effect.provideService(ServiceRegistry.ServiceRegistry, registry)
    )
    yield* onListening(server.address)
    return yield* Effect.never.pipe(
      // Runs after the scope below has closed: connections are closed and the snapshot is written.
      Effect.onInterrupt(() => Effect.sync(() => stopped.address = server.address))
    )
  }).pipe(
    Effect.scoped,
    Effect.onInterrupt(() =>
      Effect.sync(() => {
        if (stopped.address !== undefined) {
          process.stdout.write(`stopped ${stopped.address.host}:${stopped.address.port}\n`)
        }
      })
    )
  )
}

/** Runs `warren pb serve` with the process's arguments. */
export const runPbServe = (args: ReadonlyArray<string>): void => {
  const options = parsePbServeArgs(args, process.env)
  if (Either.isLeft(options)) {
    const help = options.left === "help"
    process.stderr.write(help ? `${pbServeUsage}\n` : `warren pb serve: ${options.left}\n${pbServeUsage}\n`)
    process.exitCode = help ? 0 : 2
    return
  }
  NodeRuntime.runMain(pbServeProgram(options.right))
}
