/**
 * The Riak-compatible PB server (riak_api's `riak_api_pb_listener` + `riak_api_pb_server`), on @effect/platform's
 * `SocketServer` (Node's `NodeSocketServer`).
 *
 * Every connection is a process: a fiber started by the server's `DynamicSupervisor` (from @warren/process), in
 * its own Scope (whose finalizer closes the socket), with its behaviour state (service instances, security phase,
 * stream) in a `Ref`. Closing the server's Scope stops every connection through the supervisor. Dispatch goes
 * through the `ServiceRegistry` on every request, so services registered or swapped while the server runs are
 * picked up by live connections.
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   const server = yield* PbServer.PbServer
 *   yield* Effect.log(`listening on ${server.address.host}:${server.address.port}`)
 *   return yield* Effect.never
 * }).pipe(
 *   Effect.provide(PbServer.layer({ port: 8087 })),
 *   Effect.provide(ServiceRegistry.registered(BasicService.registrations(BasicService.make()))),
 *   Effect.provide(ServiceRegistry.layer)
 * )
 * ```
 *
 * The connection reads the `Net.Socket` itself rather than through the platform's `Socket`: it pauses reads by
 * its own rule (frames waiting, the server's byte budget), and STARTTLS replaces the socket by a `TLSSocket` in
 * the middle of the connection, which the platform `Socket` cannot do (docs/decisions.md).
 *
 * @since 0.1.0
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import type * as Socket from "@effect/platform/Socket"
import * as DynamicSupervisor from "@warren/process/DynamicSupervisor"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Net from "node:net"
import * as NodeTls from "node:tls"
import { ByteBudget } from "./internal/budget.js"
import type { ConnectionInfo as InternalConnectionInfo } from "./internal/state.js"
import { Texts } from "./internal/errors.js"
import { idleSweep, makeContext, refuse, serve } from "./internal/listener.js"
import type { SecurityConfig } from "./internal/security.js"
import * as Metrics from "./internal/metrics.js"
import { Authenticator, Authorizer } from "./Security.js"
import { ServiceRegistry } from "./ServiceRegistry.js"

// ---------------------------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------------------------

const isDurationInput = (u: unknown): u is Duration.DurationInput => Option.isSome(Duration.decodeUnknown(u))

/**
 * A duration given as anything `Duration.decode` accepts (`"5 seconds"`, a number of milliseconds, a `Duration`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const DurationInput = Schema.transform(
  Schema.declare(isDurationInput, { identifier: "DurationInput" }),
  Schema.DurationFromSelf,
  { strict: true, decode: (input) => Duration.decode(input), encode: (duration) => duration }
)

const Pem = Schema.Union(Schema.String, Schema.Uint8ArrayFromSelf)
const PositiveInt = Schema.Int.pipe(Schema.positive())

/**
 * TLS settings used after STARTTLS (PEM key and certificate; a CA and `requestCert` for client certificates).
 *
 * @since 0.1.0
 * @category schemas
 */
export const TlsOptions = Schema.Struct({
  /** The server's private key (PEM). */
  key: Pem,
  /** The server's certificate chain (PEM). */
  cert: Pem,
  /** The key's passphrase, if it is encrypted. */
  passphrase: Schema.optional(Schema.String),
  /** CA certificates (PEM) that client certificates are checked against (default: Node's bundled roots). */
  ca: Schema.optional(Schema.Union(Pem, Schema.Array(Pem))),
  /** Ask clients for a certificate (given to the `Authenticator` as `peerCertificate`). */
  requestCert: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** With `requestCert`: refuse the handshake when the client's certificate does not verify against `ca`. */
  rejectUnauthorized: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** Oldest TLS version accepted. */
  minVersion: Schema.optionalWith(Schema.Literal("TLSv1.2", "TLSv1.3"), { default: () => "TLSv1.2" as const }),
  /** OpenSSL cipher list (default: Node's). */
  ciphers: Schema.optional(Schema.String)
})

/**
 * Security: STARTTLS, then login, then permission checks on every request that declares a permission.
 *
 * @since 0.1.0
 * @category schemas
 */
export const SecurityOptions = Schema.Struct({
  /** The certificate and key used after STARTTLS. */
  tls: TlsOptions,
  /** How long a failed login waits before its error reply. */
  authFailureDelay: Schema.optionalWith(DurationInput, { default: () => Duration.seconds(1) }),
  /** Consecutive failed logins after which the connection is closed (riak: 3). */
  maxAuthFailures: Schema.optionalWith(PositiveInt, { default: () => 3 }),
  /** A TLS handshake not done within this closes the connection. */
  handshakeTimeout: Schema.optionalWith(DurationInput, { default: () => Duration.seconds(10) })
})

/**
 * Server settings. Defaults follow riak (127.0.0.1:8087, backlog 128, nodelay and keepalive on); the limits are
 * this server's own.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Options = Schema.Struct({
  /** Address to listen on (riak: 127.0.0.1). */
  host: Schema.optionalWith(Schema.String, { default: () => "127.0.0.1" }),
  /** 0 listens on any free port; the real one is in `PbServer.address`. */
  port: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 65535)), { default: () => 8087 }),
  /** Pending connections the kernel queues before `accept` (riak: 128). */
  backlog: Schema.optionalWith(PositiveInt, { default: () => 128 }),
  /** TCP_NODELAY (riak: on). */
  nodelay: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /** SO_KEEPALIVE (riak: on). */
  keepalive: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /** Largest accepted frame (code + body), checked from the length header: error reply, then close. */
  maxFrameSize: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 0x7ffffffb)), {
    default: () => 64 * 1024 * 1024
  }),
  /** Connections beyond this get `Too many connections` and are closed (ranch's default, 1024). */
  maxConnections: Schema.optionalWith(PositiveInt, { default: () => 1024 }),
  /**
   * A connection with no request, no drained reply and no stream for this long is closed (a client holding a
   * partial frame, or not reading its replies, is idle too). Checked by a sweep: closed within 1.25x of it.
   */
  idleTimeout: Schema.optionalWith(DurationInput, { default: () => Duration.minutes(10) }),
  /** A stream with nothing to send for this long is ended with `Stream timed out`. */
  streamIdleTimeout: Schema.optionalWith(DurationInput, { default: () => Duration.minutes(10) }),
  /** Messages sent to a connection (`ctx.send`) that may wait; senders suspend beyond it. */
  mailboxCapacity: Schema.optionalWith(PositiveInt, { default: () => 256 }),
  /** Replies are written when this many bytes are ready, or as soon as the connection has nothing else to do. */
  flushBytes: Schema.optionalWith(PositiveInt, { default: () => 64 * 1024 }),
  /** Complete request frames waiting unprocessed (per connection) after which reading pauses. */
  readBufferBytes: Schema.optionalWith(PositiveInt, { default: () => 1024 * 1024 }),
  /**
   * Bytes all connections together may hold in buffered input (frames waiting, partial frames) and output
   * (replies not yet taken by the kernel). Past it every connection stops reading until some is released; nothing
   * is dropped. Keep it at least twice `maxFrameSize`, so a frame of the largest size can always arrive.
   */
  maxBufferedBytes: Schema.optionalWith(PositiveInt, { default: () => 256 * 1024 * 1024 }),
  /** How long a closing connection may take to flush its last replies before it is destroyed. */
  closeTimeout: Schema.optionalWith(DurationInput, { default: () => Duration.seconds(5) }),
  /** STARTTLS, login and permissions (only with `layerSecure`/`makeSecure`). */
  security: Schema.optional(SecurityOptions)
})

/**
 * What `make`/`layer` accept (before defaults).
 *
 * @since 0.1.0
 * @category models
 */
export type Options = typeof Options.Encoded

/**
 * @since 0.1.0
 * @category models
 */
export type SecurityOptions = typeof SecurityOptions.Encoded

// ---------------------------------------------------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------------------------------------------------

/**
 * A snapshot of one connection.
 *
 * @since 0.1.0
 * @category models
 */
export type ConnectionInfo = InternalConnectionInfo

/**
 * A running server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Server {
  /** Where it listens (the real port when configured with port 0). */
  readonly address: { readonly host: string; readonly port: number }
  /** The live connections. */
  readonly connections: Effect.Effect<ReadonlyArray<ConnectionInfo>>
  /** Bytes all connections hold in buffered input and output (what `maxBufferedBytes` limits). */
  readonly bufferedBytes: Effect.Effect<number>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class PbServer extends Context.Tag("@warren/pb/PbServer")<PbServer, Server>() {}

/**
 * The server could not start: invalid options (`Config`), TLS material rejected (`Tls`), or the port could not be
 * opened (`Open`).
 *
 * @since 0.1.0
 * @category errors
 */
export class PbServerError extends Data.TaggedError("PbServerError")<{
  readonly reason: "Config" | "Tls" | "Open"
  readonly cause: unknown
}> {
  override get message(): string {
    return `PB server ${this.reason} error: ${String(this.cause)}`
  }
}

/**
 * The exact error texts sent to clients (riak's, plus this server's own for its limits).
 *
 * @since 0.1.0
 * @category constants
 */
export const ErrorTexts = Texts

/**
 * The server's metrics: `warren_pb_connections_accepted`, `warren_pb_connections_active`, `warren_pb_requests` (tag `code`),
 * `warren_pb_errors` (tag `kind`), `warren_pb_request_duration` (milliseconds).
 *
 * @since 0.1.0
 * @category metrics
 */
export const metrics = {
  connectionsAccepted: Metrics.connectionsAccepted,
  connectionsActive: Metrics.connectionsActive,
  requests: Metrics.requests,
  errors: Metrics.errors,
  requestDuration: Metrics.requestDuration
} as const

interface SecurityServices {
  readonly authenticator: Authenticator["Type"]
  readonly authorizer: Authorizer["Type"]
}

const start = (
  input: Options,
  services: SecurityServices | undefined
): Effect.Effect<Server, PbServerError, Scope.Scope | ServiceRegistry> =>
  Effect.gen(function*() {
    const options = yield* Schema.decodeUnknown(Options)(input).pipe(
      Effect.mapError((cause) => new PbServerError({ reason: "Config", cause }))
    )
    let security: SecurityConfig | undefined
    if (options.security !== undefined) {
      if (services === undefined) {
        return yield* new PbServerError({ reason: "Config", cause: "security options need layerSecure/makeSecure" })
      }
      const tls = options.security.tls
      const secureContext = yield* Effect.try({
        try: () =>
          NodeTls.createSecureContext({
            key: toPem(tls.key),
            cert: toPem(tls.cert),
            minVersion: tls.minVersion,
            ...(tls.passphrase === undefined ? {} : { passphrase: tls.passphrase }),
            ...(tls.ca === undefined
              ? {}
              : { ca: typeof tls.ca === "string" || tls.ca instanceof Uint8Array ? toPem(tls.ca) : tls.ca.map(toPem) }),
            ...(tls.ciphers === undefined ? {} : { ciphers: tls.ciphers })
          }),
        catch: (cause) => new PbServerError({ reason: "Tls", cause })
      })
      security = {
        secureContext,
        requestCert: tls.requestCert,
        rejectUnauthorized: tls.rejectUnauthorized,
        handshakeTimeout: options.security.handshakeTimeout,
        authFailureDelay: options.security.authFailureDelay,
        maxAuthFailures: options.security.maxAuthFailures,
        authenticator: services.authenticator,
        authorizer: services.authorizer
      }
    }
    const registry = yield* ServiceRegistry
    const server = makeContext(
      {
        nodelay: options.nodelay,
        keepalive: options.keepalive,
        maxFrameSize: options.maxFrameSize,
        maxConnections: options.maxConnections,
        idleTimeout: options.idleTimeout,
        streamIdleTimeout: options.streamIdleTimeout,
        mailboxCapacity: options.mailboxCapacity,
        flushBytes: options.flushBytes,
        readBufferBytes: options.readBufferBytes,
        closeTimeout: options.closeTimeout,
        security
      },
      registry,
      new ByteBudget(options.maxBufferedBytes),
      yield* Effect.clock
    )
    const listener = yield* NodeSocketServer.make({
      host: options.host,
      port: options.port,
      backlog: options.backlog,
      noDelay: options.nodelay,
      keepAlive: options.keepalive,
      allowHalfOpen: true
    }).pipe(Effect.mapError((cause) => new PbServerError({ reason: "Open", cause })))
    // Made after the listener, so closed before it: the listener's own finalizer waits for every socket to close,
    // and closing the supervisor stops every connection (each child's Scope closes its socket).
    let nextId = 0
    // The children inherit the supervisor's context, so its scheduler is set once here (the listener's EagerScheduler),
    // not per connection (each fiber-local change copies the fiber's refs).
    const supervisor = yield* DynamicSupervisor.make(
      { run: ({ id, raw }: { readonly id: number; readonly raw: Net.Socket }) => serve(server, id, raw) },
      { maxChildren: options.maxConnections, name: "pb-connections" }
    ).pipe(Effect.withScheduler(server.scheduler))
    // Runs before the supervisor stops: sockets accepted from then on are destroyed, not started.
    let stopping = false
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        stopping = true
      })
    )
    // The platform's handler starts the connection's process and returns: the handler's fiber and the platform's
    // `Socket` wrapper do not stay for the connection's life (they were most of an idle connection's memory).
    const handle = (_: Socket.Socket) =>
      Effect.flatMap(Effect.serviceOption(NodeSocket.NetSocket), (found) => {
        if (Option.isNone(found)) return Effect.logError("PB server: connection without a Net.Socket")
        const raw = found.value
        if (stopping) return Effect.sync(() => raw.destroy())
        Metrics.connectionsAccepted.unsafeUpdate(1, [])
        if (!raw.destroyed) {
          raw.setNoDelay(options.nodelay)
          raw.setKeepAlive(options.keepalive)
        }
        return DynamicSupervisor.startChild(supervisor, { id: ++nextId, raw }).pipe(
          Effect.asVoid,
          Effect.catchTag("MaxChildrenReached", () => refuse(raw, server.config)),
          // A supervisor already stopped (the server shutting down) refuses with a defect: the socket goes.
          Effect.catchAllDefect(() => Effect.sync(() => raw.destroy()))
        )
      })
    yield* listener.run(handle).pipe(
      Effect.catchAllCause((cause) => Effect.logError("PB server stopped accepting connections", cause)),
      Effect.withSpan("PbServer.run"),
      Effect.forkScoped
    )
    yield* Effect.forkScoped(idleSweep(server, options.idleTimeout))
    const address = listener.address._tag === "TcpAddress"
      ? { host: listener.address.hostname, port: listener.address.port }
      : { host: listener.address.path, port: 0 }
    yield* Effect.annotateCurrentSpan("pb.port", address.port)
    return {
      address,
      connections: Effect.suspend(() =>
        Effect.forEach(Array.from(server.connections.values()), (connection) => connection.info)
      ),
      bufferedBytes: Effect.sync(() => server.budget.bytes)
    }
  }).pipe(Effect.withSpan("PbServer.start"))

const toPem = (value: string | Uint8Array): string | Buffer => typeof value === "string" ? value : Buffer.from(value)

/**
 * Starts a server without security (`options.security` must be absent); it stops when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options & { readonly security?: undefined }
): Effect.Effect<Server, PbServerError, Scope.Scope | ServiceRegistry> => start(options, undefined)

/**
 * Starts a server with security: STARTTLS, login checked by the `Authenticator`, permissions by the `Authorizer`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeSecure = (
  options: Options & { readonly security: SecurityOptions }
): Effect.Effect<Server, PbServerError, Scope.Scope | ServiceRegistry | Authenticator | Authorizer> =>
  Effect.gen(function*() {
    const authenticator = yield* Authenticator
    const authorizer = yield* Authorizer
    return yield* start(options, { authenticator, authorizer })
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options & { readonly security?: undefined }
): Layer.Layer<PbServer, PbServerError, ServiceRegistry> => Layer.scoped(PbServer, make(options))

/**
 * @since 0.1.0
 * @category layers
 */
export const layerSecure = (
  options: Options & { readonly security: SecurityOptions }
): Layer.Layer<PbServer, PbServerError, ServiceRegistry | Authenticator | Authorizer> =>
  Layer.scoped(PbServer, makeSecure(options))
