/**
 * `warren pb serve`: a Riak-compatible PB server with the services of `pbServices.ts`, until SIGINT/SIGTERM (exit
 * 0). Prints `listening on HOST:PORT` (the real port, also with `--port 0`) once it accepts connections, and
 * `stopped HOST:PORT` once it has shut down (the KV snapshot is written by then). Every server option is a flag;
 * flags win over the environment (`WARREN_HOST`, `WARREN_PORT`, `WARREN_DATA_FILE`, `WARREN_KV_MAX_BYTES`,
 * `WARREN_KV_SNAPSHOT_INTERVAL`, `WARREN_TLS_PASSPHRASE`).
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { PbServer, Security, ServiceRegistry } from "@warren/pb"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as NodeFs from "node:fs"
import {
  choice,
  CliFailure,
  type Common,
  commonOptions,
  duration,
  integer,
  positiveInt,
  runCommand,
  usageError
} from "../internal/common.js"
import { withErrno } from "../internal/describe.js"
import * as MetricsServer from "../MetricsServer.js"
import { type KvSettings, pbServices } from "./pbServices.js"

const opt = <A>(options: Options.Options<A>) => Options.optional(options)

/** The flags of `warren pb serve`. */
export const pbServeOptions = {
  ...commonOptions,
  host: Options.text("host").pipe(
    Options.withDescription("Address to listen on. Fallback: WARREN_HOST."),
    Options.withFallbackConfig(Config.string("WARREN_HOST")),
    Options.withDefault("127.0.0.1")
  ),
  port: integer("port", "Port to listen on; 0 picks a free one (printed). Fallback: WARREN_PORT.", 0, 65535).pipe(
    Options.withFallbackConfig(Config.integer("WARREN_PORT")),
    Options.withDefault(8087)
  ),
  backlog: opt(positiveInt("backlog", "Pending connections the OS queues (default 128).")),
  maxConnections: opt(positiveInt("max-connections", "Connections beyond this get an error reply and are closed.")),
  idleTimeout: opt(duration("idle-timeout", "Close a connection with no request for this long")),
  streamTimeout: opt(duration("stream-timeout", "End a stream with nothing to send for this long with an error")),
  maxFrameSize: opt(positiveInt("max-frame-size", "Largest accepted request frame in bytes (default 64 MiB).")),
  maxBufferedBytes: opt(positiveInt(
    "max-buffered-bytes",
    "Bytes all connections together may buffer (requests waiting, replies unsent); reading pauses beyond it."
  )),
  readBufferBytes: opt(
    positiveInt("read-buffer-bytes", "Unprocessed request bytes after which reading pauses (default 1 MiB).")
  ),
  flushBytes: opt(positiveInt("flush-bytes", "Replies are written once this many bytes are ready (default 64 KiB).")),
  mailboxCapacity: opt(positiveInt("mailbox-capacity", "Messages sent to a connection that may wait (default 256).")),
  closeTimeout: opt(
    duration("close-timeout", "How long a closing connection may flush its last replies (default 5 s)")
  ),
  tlsCert: opt(
    Options.file("tls-cert", { exists: "yes" }).pipe(
      Options.withDescription("PEM certificate for STARTTLS. Turns security on (with --tls-key and --users-file).")
    )
  ),
  tlsKey: opt(
    Options.file("tls-key", { exists: "yes" }).pipe(Options.withDescription("PEM private key for STARTTLS."))
  ),
  tlsCa: opt(
    Options.file("tls-ca", { exists: "yes" }).pipe(
      Options.withDescription("PEM CA bundle that client certificates are checked against.")
    )
  ),
  tlsPassphrase: opt(
    Options.redacted("tls-passphrase").pipe(
      Options.withDescription(
        "Passphrase of --tls-key. Fallback: WARREN_TLS_PASSPHRASE (prefer it: flags show in ps)."
      ),
      Options.withFallbackConfig(Config.redacted("WARREN_TLS_PASSPHRASE"))
    )
  ),
  tlsRequestCert: Options.boolean("tls-request-cert").pipe(Options.withDescription("Ask clients for a certificate.")),
  tlsRejectUnauthorized: Options.boolean("tls-reject-unauthorized").pipe(
    Options.withDescription("Refuse clients whose certificate --tls-ca does not verify.")
  ),
  tlsMinVersion: opt(
    choice("tls-min-version", ["TLSv1.2", "TLSv1.3"], "Oldest TLS version accepted (default TLSv1.2).")
  ),
  tlsCiphers: opt(Options.text("tls-ciphers").pipe(Options.withDescription("OpenSSL cipher list."))),
  usersFile: opt(
    Options.file("users-file", { exists: "yes" }).pipe(
      Options.withDescription("JSON users file (password hashes and grants) for logins; see docs/pb.md.")
    )
  ),
  authFailureDelay: opt(duration("auth-failure-delay", "Wait before answering a failed login (default 1 s)")),
  maxAuthFailures: opt(
    positiveInt("max-auth-failures", "Failed logins after which the connection is closed (default 3).")
  ),
  handshakeTimeout: opt(duration("handshake-timeout", "Time allowed for the TLS handshake (default 10 s)")),
  dataFile: opt(
    Options.text("data-file").pipe(
      Options.withDescription(
        "KV data file: loaded on start, written on stop. Fallback: WARREN_DATA_FILE."
      ),
      Options.withFallbackConfig(Config.nonEmptyString("WARREN_DATA_FILE"))
    )
  ),
  kvMaxBytes: opt(
    positiveInt("kv-max-bytes", "Memory bound of the KV store (default 256 MiB). Fallback: WARREN_KV_MAX_BYTES.").pipe(
      Options.withFallbackConfig(Config.integer("WARREN_KV_MAX_BYTES"))
    )
  ),
  sync: opt(
    choice(
      "sync",
      ["always", "interval", "none"],
      "When a KV write is durable: always (fsync before the reply), interval (fsync every --sync-interval), none (the OS decides). Fallback: WARREN_KV_SYNC."
    ).pipe(Options.withFallbackConfig(Config.literal("always", "interval", "none")("WARREN_KV_SYNC")))
  ),
  syncInterval: opt(
    duration(
      "sync-interval",
      "The fsync period of --sync interval (default 1 second). Fallback: WARREN_KV_SYNC_INTERVAL"
    ).pipe(
      Options.withFallbackConfig(Config.duration("WARREN_KV_SYNC_INTERVAL"))
    )
  ),
  snapshotInterval: opt(
    duration(
      "snapshot-interval",
      "Write the KV snapshot this often while something changed (default 5 minutes, with --data-file). Fallback: WARREN_KV_SNAPSHOT_INTERVAL"
    ).pipe(Options.withFallbackConfig(Config.duration("WARREN_KV_SNAPSHOT_INTERVAL")))
  ),
  metricsPort: opt(
    integer("metrics-port", "Serve /metrics (Prometheus) and /healthz on this port (0: a free one, printed).", 0, 65535)
  ),
  metricsHost: Options.text("metrics-host").pipe(
    Options.withDescription("Address of the metrics endpoint."),
    Options.withDefault("127.0.0.1")
  )
}

/** The parsed flags. */
export type PbServeArgs = Command.Command.ParseConfig<typeof pbServeOptions>

const readPem = (flag: string, path: string) =>
  Effect.try({
    try: () => NodeFs.readFileSync(path),
    catch: (cause) => new CliFailure({ message: `--${flag}: cannot read ${path}`, cause })
  })

/** A server that cannot open its port names the address and the errno code. */
const listenError =
  (host: string, port: number) => (error: PbServer.PbServerError): PbServer.PbServerError | CliFailure =>
    error.reason === "Open"
      ? new CliFailure({ message: withErrno(`cannot listen on ${host}:${port}`, error.cause), cause: error })
      : error

/** The server's options from the flags (`maxBufferedBytes` is the byte-budget option of @warren/pb). */
export const serverOptions = (args: PbServeArgs) => {
  const some = <K extends string, A>(key: K, value: Option.Option<A>): { [P in K]?: A } =>
    Option.isSome(value) ? ({ [key]: value.value } as { [P in K]?: A }) : {}
  return {
    host: args.host,
    port: args.port,
    ...some("backlog", args.backlog),
    ...some("maxConnections", args.maxConnections),
    ...some("idleTimeout", args.idleTimeout),
    ...some("streamIdleTimeout", args.streamTimeout),
    ...some("maxFrameSize", args.maxFrameSize),
    ...some("maxBufferedBytes", args.maxBufferedBytes),
    ...some("readBufferBytes", args.readBufferBytes),
    ...some("flushBytes", args.flushBytes),
    ...some("mailboxCapacity", args.mailboxCapacity),
    ...some("closeTimeout", args.closeTimeout)
  }
}

/** The KV store's settings from the flags. */
export const kvSettings = (args: PbServeArgs): KvSettings => {
  const dataFile = Option.getOrUndefined(args.dataFile)
  return {
    dataFile,
    maxBytes: Option.getOrUndefined(args.kvMaxBytes),
    sync: Option.getOrUndefined(args.sync),
    syncInterval: Option.getOrUndefined(args.syncInterval),
    snapshotInterval: dataFile === undefined
      ? undefined
      : Option.getOrElse(args.snapshotInterval, () => Duration.minutes(5))
  }
}

/**
 * The server program: registers the services, starts the server (and the metrics endpoint), calls `onListening`
 * with its address, then runs until interrupted (which stops the server and closes its connections).
 */
export const pbServeProgram = (
  args: PbServeArgs,
  onListening: (address: PbServer.Server["address"]) => Effect.Effect<void> = (address) =>
    Effect.sync(() => process.stdout.write(`listening on ${address.host}:${address.port}\n`)),
  onMetrics: (address: MetricsServer.MetricsServer["address"]) => Effect.Effect<void> = (address) =>
    Effect.sync(() => process.stdout.write(`metrics on http://${address.host}:${address.port}/metrics\n`))
) => {
  const stopped: { address?: PbServer.Server["address"] } = {}
  return Effect.gen(function*() {
    const secure = Option.isSome(args.tlsCert) || Option.isSome(args.tlsKey) || Option.isSome(args.usersFile)
    if (secure && (Option.isNone(args.tlsCert) || Option.isNone(args.tlsKey) || Option.isNone(args.usersFile))) {
      return yield* usageError("security needs --tls-cert, --tls-key and --users-file together")
    }
    const registry = yield* ServiceRegistry.make
    yield* registry.registerAll(yield* pbServices(kvSettings(args)))
    const options = serverOptions(args)
    let server: PbServer.Server
    if (secure) {
      const tls = {
        key: yield* readPem("tls-key", Option.getOrThrow(args.tlsKey)),
        cert: yield* readPem("tls-cert", Option.getOrThrow(args.tlsCert)),
        ...(Option.isSome(args.tlsCa) ? { ca: yield* readPem("tls-ca", args.tlsCa.value) } : {}),
        ...(Option.isSome(args.tlsPassphrase) ? { passphrase: Redacted.value(args.tlsPassphrase.value) } : {}),
        requestCert: args.tlsRequestCert,
        rejectUnauthorized: args.tlsRejectUnauthorized,
        ...(Option.isSome(args.tlsMinVersion) ? { minVersion: args.tlsMinVersion.value } : {}),
        ...(Option.isSome(args.tlsCiphers) ? { ciphers: args.tlsCiphers.value } : {})
      }
      const security = {
        tls,
        ...(Option.isSome(args.authFailureDelay) ? { authFailureDelay: args.authFailureDelay.value } : {}),
        ...(Option.isSome(args.maxAuthFailures) ? { maxAuthFailures: args.maxAuthFailures.value } : {}),
        ...(Option.isSome(args.handshakeTimeout) ? { handshakeTimeout: args.handshakeTimeout.value } : {})
      }
      const users = yield* Security.loadUsersFile(Option.getOrThrow(args.usersFile))
      server = yield* PbServer.makeSecure({ ...options, security }).pipe(
        Effect.provideService(ServiceRegistry.ServiceRegistry, registry),
        Effect.provide(Security.layerUsers(users)),
        Effect.mapError(listenError(args.host, args.port))
      )
    } else {
      server = yield* PbServer.make(options).pipe(
        Effect.provideService(ServiceRegistry.ServiceRegistry, registry),
        Effect.mapError(listenError(args.host, args.port))
      )
    }
    if (Option.isSome(args.metricsPort)) {
      const metricsPort = args.metricsPort.value
      const metrics = yield* MetricsServer.make({
        host: args.metricsHost,
        port: metricsPort,
        // The listener is up for as long as this scope is open: the server is ready until it stops.
        health: Effect.succeed({ _tag: "Ready" })
      }).pipe(
        Effect.mapError((error) =>
          new CliFailure({
            message: withErrno(`cannot open the metrics port ${args.metricsHost}:${metricsPort}`, error.cause),
            cause: error
          })
        )
      )
      yield* onMetrics(metrics.address)
    }
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

/** `warren pb serve`. */
export const pbServeCommand = Command.make(
  "serve",
  pbServeOptions,
  (args) => runCommand("pb serve", args satisfies Common, pbServeProgram(args))
).pipe(Command.withDescription(
  "Serve Riak PB (ping, server info, KV) until SIGINT/SIGTERM. Prints `listening on HOST:PORT` when ready."
))
