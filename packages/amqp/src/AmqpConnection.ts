/**
 * A reconnecting AMQP connection (a port of Hare.Core.Conn) that hands out channels to channel owners.
 *
 * - Connects to the first of `urls` that answers; on failure or loss waits per the `reconnect` Schedule
 *   (`Reconnect.defaultPolicy`: exponential from 100 ms, jittered, capped at 2 s, forever) and tries again.
 *   The schedule restarts after every successful connect; when it ends the state becomes `Closed`.
 * - Every failed attempt and every loss is logged at WARN with its reason and the delay before the next attempt.
 *   A failed attempt is an AmqpError "Connect" whose cause is an `AmqpConnectError` with a `reason` (Refused,
 *   HandshakeTimeout, NotAmqp, AccessRefused, VhostNotFound, Tls, ...). No password or key ever appears in an
 *   error or a log: URLs are shown redacted (`amqp://guest:***@host`), config errors included.
 * - `amqps://` URLs use the `tls` options (CA, client certificate and key, server name).
 * - `state` is a SubscriptionRef: channel owners watch it (or `awaitConnected`) to reopen their channels.
 * - `openChannel` waits while disconnected, bounded only by the caller (use `Effect.timeout`); a caller that
 *   gives up leaks nothing. A channel error (e.g. 404 on publish) closes that channel only, never the connection.
 * - TCP_NODELAY is on by default. amqplib's own `recovery` option is never used: the Schedule owns reconnects.
 * - Closing the scope (layer) closes the channels and then the connection cleanly; the state becomes `Closed`.
 *
 * Deviations from the written contract (all source compatible): durations accept any `Duration.DurationInput`;
 * `Connected.url` has its password redacted; extra options `closeTimeout` and `clientProperties`; an extra
 * export `channelLost(channel)` that fails when a channel closes (ChannelLost vs ConnectionLost).
 */
import type * as Amqp from "amqplib"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { AmqpError } from "./internal/amqpError.js"
import * as internal from "./internal/connection.js"

export {
  /** An AMQP connection or channel failure; `reason` says which operation failed. */
  AmqpError
}

export type {
  /** Why an AMQP operation failed. */
  AmqpErrorReason
} from "./internal/amqpError.js"

export {
  /**
   * One URL could not be connected to: `url` (password redacted) and a `reason` to act on. The `cause` of an
   * AmqpError "Connect" (the last URL's when several were tried; the message names each).
   */
  AmqpConnectError
} from "./internal/connectError.js"

export type {
  /**
   * Why a connect attempt failed: Refused, HostNotFound, Unreachable, Timeout, HandshakeTimeout, NotAmqp,
   * AccessRefused, VhostNotFound, Tls, ClosedDuringHandshake, Other.
   */
  ConnectFailure
} from "./internal/connectError.js"

export {
  /** A URL with its password replaced by `***` (also for strings that do not parse as URLs): for logs and errors. */
  redact
} from "./internal/connectionConfig.js"

export type {
  /** The service: connection state, `openChannel`, `awaitConnected`. */
  AmqpConnectionShape,
  /** Options of `make` / `layer`: urls, heartbeat, connectTimeout, reconnect, noDelay, connectionName, frameMax, tls. */
  ConnectionOptions,
  /**
   * Connection lifecycle as seen by channel owners: `Connecting { attempt }` (1 after a loss, +1 per failed
   * attempt), `Connected { generation, url }` (generation +1 per successful connect), `Disconnected { error,
   * retryIn }` (waiting before the next attempt), `Closed` (scope closed or the reconnect schedule ended; final).
   */
  ConnectionState,
  /** `openChannel`'s overloads: `{ confirm: true }` gives a ConfirmChannel. */
  OpenChannel,
  /** TLS settings for `amqps://` URLs: ca, cert, key, passphrase, servername, rejectUnauthorized. */
  TlsOptions
} from "./internal/connection.js"

export {
  /** The connection service tag (`Context.Tag("@warren/amqp/AmqpConnection")`). */
  AmqpConnection
} from "./internal/connection.js"

/**
 * Starts a reconnecting connection that lives as long as the current scope. Fails only with AmqpError "Config"
 * (invalid options): it does not wait for the first connect (use `awaitConnected` for that).
 */
export const make: (
  options: internal.ConnectionOptions
) => Effect.Effect<internal.AmqpConnectionShape, AmqpError, Scope.Scope> = internal.make

/** The connection as a Layer: built when the layer is, closed when its scope closes. */
export const layer = (options: internal.ConnectionOptions): Layer.Layer<internal.AmqpConnection, AmqpError> =>
  Layer.scoped(internal.AmqpConnection, internal.make(options))

/**
 * Fails (never succeeds) once the channel closes: AmqpError "ChannelLost" for a channel-level close (the broker's
 * error as cause, e.g. 404 NOT_FOUND), "ConnectionLost" when the whole connection went away. Race a channel
 * owner's work against it to notice a lost channel.
 */
export const channelLost: (channel: Amqp.Channel) => Effect.Effect<never, AmqpError> = internal.channelLost
