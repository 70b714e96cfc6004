import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Net from "node:net"
import { describe } from "./amqpError.js"

/** Why one connect attempt to one URL failed. */
export type ConnectFailure =
  /** Nothing listens on that host and port (ECONNREFUSED). */
  | "Refused"
  /** The host name does not resolve. */
  | "HostNotFound"
  /** No route to the host or network. */
  | "Unreachable"
  /** No TCP connection within `connectTimeout`. */
  | "Timeout"
  /** TCP connected, but the (TLS and) AMQP handshake did not complete within `connectTimeout`. */
  | "HandshakeTimeout"
  /** The peer answered with something that is not AMQP 0-9-1 (wrong port or protocol). */
  | "NotAmqp"
  /** The broker refused the login (403 ACCESS_REFUSED): wrong user name or password. */
  | "AccessRefused"
  /** The broker refused the virtual host: it does not exist, or the user may not access it. */
  | "VhostNotFound"
  /** The TLS handshake failed (certificate, host name, or a peer that does not speak TLS). */
  | "Tls"
  /** The peer closed the connection during the handshake without saying why. */
  | "ClosedDuringHandshake"
  /** Anything else; the message and `cause` say what. */
  | "Other"

/**
 * One URL could not be connected to: `url` (password redacted) and a `reason` a program can act on; the message
 * says what to check. Never contains a secret.
 */
export class AmqpConnectError extends Data.TaggedError("AmqpConnectError")<{
  readonly url: string
  readonly reason: ConnectFailure
  readonly message: string
  readonly cause?: unknown
}> {}

const TLS_CODE = /^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH|ERR_OSSL_)/

const codeOf = (cause: unknown): string | undefined => {
  if (typeof cause !== "object" || cause === null || !("code" in cause)) return undefined
  return typeof cause.code === "string" ? cause.code : undefined
}

const hint: Record<ConnectFailure, string> = {
  Refused: "connection refused (is the broker running and listening on this host and port?)",
  HostNotFound: "host not found",
  Unreachable: "host or network unreachable",
  Timeout: "no TCP connection",
  HandshakeTimeout: "the port accepted a TCP connection but the handshake did not complete",
  NotAmqp: "the peer does not speak AMQP 0-9-1 (wrong port? an amqps:// port needs an amqps:// URL)",
  AccessRefused: "the broker refused the login: check the user name and password",
  VhostNotFound: "the broker refused the virtual host: it does not exist or the user has no access to it",
  Tls: "the TLS handshake failed",
  ClosedDuringHandshake: "the peer closed the connection during the handshake",
  Other: "connect failed"
}

/** Builds the error for `url` (already redacted). */
export const connectError = (url: string, reason: ConnectFailure, detail: string | undefined, cause?: unknown) =>
  new AmqpConnectError({
    url,
    reason,
    message: `AMQP connect to ${url} failed (${reason}): ${hint[reason]}${detail === undefined ? "" : ` [${detail}]`}`,
    cause
  })

/** The reason of an error amqplib's `connect` failed with (before any timeout of ours). */
export const classify = (cause: unknown): ConnectFailure => {
  const code = codeOf(cause)
  const text = describe(cause)
  if (code === "ECONNREFUSED") return "Refused"
  if (code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EAI_NONAME") return "HostNotFound"
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH" || code === "EHOSTDOWN" || code === "ENETDOWN") return "Unreachable"
  if (code !== undefined && TLS_CODE.test(code)) return "Tls"
  if (/ETIMEDOUT/.test(text) || code === "ETIMEDOUT") return "Timeout"
  if (/ACCESS.REFUSED/.test(text) || /\b403\b/.test(text)) return "AccessRefused"
  if (/Expected ConnectionOpenOk; got <ConnectionClose/.test(text)) return "VhostNotFound"
  if (
    /exceeds maxFrameSize|Unknown frame type|Invalid frame|Expected ConnectionStart|Frame on channel != 0|Expected connection\.secure/i
      .test(text)
  ) return "NotAmqp"
  if (/closed abruptly|ECONNRESET|socket hang up/i.test(text) || code === "ECONNRESET") return "ClosedDuringHandshake"
  if (/ssl|tls|certificate/i.test(text)) return "Tls"
  return "Other"
}

/** What amqplib said, plus what the reason alone cannot tell: the virtual host, a TLS/plain port mix-up. */
export const detail = (target: { readonly connectUrl: string }, cause: unknown): string => {
  const text = describe(cause).trim()
  const reason = classify(cause)
  if (reason === "VhostNotFound") {
    const path = new URL(target.connectUrl).pathname
    return `virtual host "${path.length > 1 ? decodeURIComponent(path.slice(1)) : "/"}"; ${text}`
  }
  if (reason === "Tls" && /wrong version number|packet length too long|unknown protocol/i.test(text)) {
    return `${text}; the port does not seem to speak TLS (a plain AMQP port needs amqp://)`
  }
  return text
}

/** Whether a TCP connection to the URL's host and port completes within `within` (for timeouts: which one?). */
const tcpAccepts = (url: URL, within: Duration.Duration): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    const port = Number(url.port === "" ? (url.protocol === "amqps:" ? 5671 : 5672) : url.port)
    const socket = Net.connect({ host: url.hostname.replace(/^\[|\]$/g, ""), port })
    const done = (accepted: boolean) => {
      socket.destroy()
      resume(Effect.succeed(accepted))
    }
    socket.setTimeout(Math.max(1, Math.ceil(Duration.toMillis(within))), () => done(false))
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
    return Effect.sync(() => socket.destroy())
  })

/**
 * A timed-out attempt: tells a dead host (`Timeout`) from a port that accepts TCP but never finishes the handshake
 * (`HandshakeTimeout`) with one short TCP probe.
 */
export const timedOut = (
  connectUrl: string,
  display: string,
  timeout: Duration.Duration,
  cause?: unknown
): Effect.Effect<AmqpConnectError> =>
  tcpAccepts(new URL(connectUrl), Duration.min(timeout, Duration.seconds(1))).pipe(
    Effect.map((accepted) =>
      connectError(
        display,
        accepted ? "HandshakeTimeout" : "Timeout",
        `within ${Duration.format(timeout)}`,
        cause
      )
    )
  )
