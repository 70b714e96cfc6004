import type * as Amqp from "amqplib"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Reconnect from "../Reconnect.js"
import { AmqpError } from "./amqpError.js"

/** TLS settings for `amqps://` URLs (passed to Node's `tls.connect`). */
export interface TlsOptions {
  /** Trusted CA certificate(s), PEM; default: Node's bundled CAs. */
  readonly ca?: string | Uint8Array | ReadonlyArray<string | Uint8Array>
  /** Client certificate chain, PEM (for brokers that verify peers). */
  readonly cert?: string | Uint8Array | ReadonlyArray<string | Uint8Array>
  /** Client private key, PEM. Never shown in errors. */
  readonly key?: string | Uint8Array
  /** Passphrase of `key`. Never shown in errors. */
  readonly passphrase?: string
  /** Server name for SNI and certificate checks; default: the URL's host name. */
  readonly servername?: string
  /** Reject a server certificate that does not verify (default true). */
  readonly rejectUnauthorized?: boolean
}

/** Options of `AmqpConnection.make` / `layer`. */
export interface ConnectionOptions {
  /** Broker URL(s), `amqp://` or `amqps://`; each attempt tries them in order and takes the first that works. */
  readonly urls: string | readonly [string, ...ReadonlyArray<string>]
  /** AMQP heartbeat, rounded up to whole seconds; 0 disables it. Default 10 s. Overrides a `heartbeat` URL parameter. */
  readonly heartbeat?: Duration.DurationInput
  /** Time allowed for one URL's TCP connect plus (TLS and) AMQP handshake. Default 10 s. */
  readonly connectTimeout?: Duration.DurationInput
  /** Time allowed for a clean close (connection.close / close-ok) before the socket is destroyed. Default 5 s. */
  readonly closeTimeout?: Duration.DurationInput
  /** Waits between attempts; the connection gives up (state Closed) when it ends. Default `Reconnect.defaultPolicy`. */
  readonly reconnect?: Reconnect.Policy
  /** TCP_NODELAY on the socket. Default true (with Nagle on, a request/reply round trip costs ~40 ms). */
  readonly noDelay?: boolean
  /** The `connection_name` client property (shown by the broker's management tools, used by tests to find it). */
  readonly connectionName?: string
  /** Maximum AMQP frame size in bytes (at least 4096). Default: amqplib's (128 KiB). Overrides a `frameMax` URL parameter. */
  readonly frameMax?: number
  /** Extra client properties sent in connection.start-ok. */
  readonly clientProperties?: Readonly<Record<string, unknown>>
  /** TLS settings for `amqps://` URLs: CA, client certificate and key, server name. */
  readonly tls?: TlsOptions
}

/** One URL to try. */
export interface Target {
  /** The URL given to amqplib (with heartbeat / frameMax parameters). */
  readonly connectUrl: string
  /** The URL as given, password redacted: for states, logs and errors. */
  readonly display: string
}

/** Options after validation. */
export interface Config {
  readonly targets: ReadonlyArray<Target>
  readonly connectTimeout: Duration.Duration
  readonly closeTimeout: Duration.Duration
  readonly reconnect: Reconnect.Policy
  readonly socketOptions: Amqp.SocketOptions
  readonly connectionName: string | undefined
}

const isAmqpUrl = (input: string): boolean | string => {
  try {
    const url = new URL(input)
    return url.protocol === "amqp:" || url.protocol === "amqps:" || `expected an amqp:// or amqps:// URL, got ${url.protocol}//`
  } catch {
    return "not a URL"
  }
}

const AmqpUrl = Schema.String.pipe(Schema.filter(isAmqpUrl, { identifier: "AmqpUrl" }))

const Pem = Schema.Union(Schema.String, Schema.Uint8ArrayFromSelf)
const PemList = Schema.Union(Pem, Schema.Array(Pem))

const exact = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

const Tls = Schema.Struct({
  ca: exact(PemList),
  cert: exact(PemList),
  // The message annotations keep a malformed secret out of the error text.
  key: exact(Pem.annotations({ message: () => "must be a PEM string or bytes (value not shown)" })),
  passphrase: exact(Schema.String.annotations({ message: () => "must be a string (value not shown)" })),
  servername: exact(Schema.String),
  rejectUnauthorized: exact(Schema.Boolean)
})

const StaticOptions = Schema.Struct({
  urls: Schema.Union(AmqpUrl, Schema.NonEmptyArray(AmqpUrl)),
  noDelay: Schema.optional(Schema.Boolean),
  connectionName: Schema.optional(Schema.String),
  frameMax: Schema.optional(Schema.Int.pipe(Schema.greaterThanOrEqualTo(4096))),
  clientProperties: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
  // exact: a union with undefined would print the whole TLS object (key included) as "actual" on any error
  tls: exact(Tls)
})

const configError = (message: string, cause?: unknown) =>
  new AmqpError({ reason: "Config", message: `invalid AMQP connection options: ${message}`, cause })

const duration = (name: string, input: Duration.DurationInput | undefined, fallback: Duration.DurationInput) =>
  Option.match(Duration.decodeUnknown(input ?? fallback), {
    onNone: () => Effect.fail(configError(`${name} is not a duration`)),
    onSome: (value) => Effect.succeed(value)
  })

/**
 * The URL with its password replaced by `***`. Works on anything: a string that does not parse as a URL has any
 * `user:password@` part redacted textually; a string without one is returned as is.
 */
export const redact = (input: string): string => {
  try {
    const url = new URL(input)
    if (url.password === "") return url.toString()
    url.password = "***"
    return url.toString()
  } catch {
    // Not a URL (e.g. a bad port): redact whatever sits between "scheme://user:" and "@".
    return input.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*):[^@]*@/i, "$1:***@")
  }
}

const redactUrls = (urls: unknown): unknown =>
  typeof urls === "string" ? redact(urls) : Array.isArray(urls) ? urls.map(redactUrls) : urls

/** Validation failed: describe it from a copy of the options whose URLs are redacted, so no password shows. */
const redactedError = (options: ConnectionOptions): AmqpError => {
  const result = Schema.decodeUnknownEither(StaticOptions)(withoutUndefinedTls({ ...options, urls: redactUrls(options.urls) }))
  return Either.isLeft(result)
    // (no cause: the ParseError holds the values it rejected)
    ? configError(
      ParseResult.ArrayFormatter.formatErrorSync(result.left)
        .map((issue) => `${issue.path.length === 0 ? "options" : issue.path.join(".")}: ${issue.message}`)
        .join("; ")
    )
    : configError("urls: an invalid URL (not shown: it may hold a password)")
}

type PemInput = string | Uint8Array | ReadonlyArray<string | Uint8Array>

const pem = (input: PemInput): string | Buffer | Array<string | Buffer> =>
  typeof input === "string" ? input : input instanceof Uint8Array ? Buffer.from(input) : input.map((one) => pem(one) as string | Buffer)

/** The TLS settings as Node's tls.connect options (given only when set). */
const tlsSocketOptions = (tls: TlsOptions | undefined): Amqp.SocketOptions => {
  if (tls === undefined) return {}
  const out: Amqp.SocketOptions = {}
  if (tls.ca !== undefined) out.ca = pem(tls.ca)
  if (tls.cert !== undefined) out.cert = pem(tls.cert)
  if (tls.key !== undefined) out.key = pem(tls.key) as string | Buffer
  if (tls.passphrase !== undefined) out.passphrase = tls.passphrase
  if (tls.servername !== undefined) out.servername = tls.servername
  if (tls.rejectUnauthorized !== undefined) out.rejectUnauthorized = tls.rejectUnauthorized
  return out
}

const withoutUndefinedTls = <A extends { readonly tls?: unknown }>(options: A): A => {
  if (options.tls !== undefined || !("tls" in options)) return options
  const { tls: _, ...rest } = options
  return rest as A
}

/** Validates the options; the error never contains a URL's password or a TLS key. */
export const resolveConfig = (options: ConnectionOptions): Effect.Effect<Config, AmqpError> =>
  Effect.gen(function*() {
    const decoded = yield* Schema.decodeUnknown(StaticOptions)(withoutUndefinedTls(options)).pipe(
      Effect.mapError(() => redactedError(options))
    )
    const heartbeat = yield* duration("heartbeat", options.heartbeat, "10 seconds")
    const connectTimeout = yield* duration("connectTimeout", options.connectTimeout, "10 seconds")
    const closeTimeout = yield* duration("closeTimeout", options.closeTimeout, "5 seconds")
    if (!Duration.isFinite(heartbeat)) return yield* configError("heartbeat must be finite")
    if (Duration.toMillis(connectTimeout) <= 0) return yield* configError("connectTimeout must be positive")
    const heartbeatSeconds = Math.ceil(Duration.toSeconds(heartbeat))
    const urls: ReadonlyArray<string> = typeof decoded.urls === "string" ? [decoded.urls] : decoded.urls
    const targets = urls.map((raw): Target => {
      const url = new URL(raw)
      url.searchParams.set("heartbeat", String(heartbeatSeconds))
      if (decoded.frameMax !== undefined) url.searchParams.set("frameMax", String(decoded.frameMax))
      return { connectUrl: url.toString(), display: redact(raw) }
    })
    const clientProperties: Record<string, unknown> = { ...decoded.clientProperties }
    if (decoded.connectionName !== undefined) clientProperties["connection_name"] = decoded.connectionName
    return {
      targets,
      connectTimeout,
      closeTimeout,
      reconnect: options.reconnect ?? Reconnect.defaultPolicy,
      // amqplib's own socket timeout (real time, idle socket until the handshake completes) backs up the
      // Effect-level timeout: it destroys the socket of an attempt we gave up on while it was still pending.
      // The TLS settings go to tls.connect with the other socket options (amqps:// URLs only).
      socketOptions: {
        ...tlsSocketOptions(decoded.tls),
        noDelay: decoded.noDelay ?? true,
        clientProperties,
        ...(Duration.isFinite(connectTimeout) ? { timeout: Math.max(1, Math.ceil(Duration.toMillis(connectTimeout))) } : {})
      },
      connectionName: decoded.connectionName
    }
  })
