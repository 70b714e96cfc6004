/**
 * riak's security phases on a connection: STARTTLS (ack, then the TLS handshake on the same socket), then
 * `RpbAuthReq` (decoded with `PbCodec` like every message, checked by the `Authenticator`).
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as NodeTls from "node:tls"
import type { Authenticator, Authorizer } from "../Security.js"
import type { Connection } from "./connection.js"
import { codec, Texts } from "./errors.js"
import type { Frame } from "./frame.js"
import type { Next } from "./state.js"

/** Security settings of a server with security on. */
export interface SecurityConfig {
  readonly secureContext: NodeTls.SecureContext
  readonly requestCert: boolean
  readonly rejectUnauthorized: boolean
  readonly handshakeTimeout: Duration.Duration
  readonly authFailureDelay: Duration.Duration
  readonly maxAuthFailures: number
  readonly authenticator: Authenticator["Type"]
  readonly authorizer: Authorizer["Type"]
}

export const CODE_START_TLS = 255
export const CODE_AUTH_REQ = 253
const CODE_AUTH_RESP = 254

const utf8 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("utf8")

/** STARTTLS: ack it, upgrade the socket, then wait for the login. */
export const startTls = (conn: Connection): Effect.Effect<Next> => {
  const security = conn.server.config.security!
  return Effect.gen(function*() {
    if (conn.hasFrames() || conn.problem !== undefined) {
      // Bytes after STARTTLS before the handshake: not a TLS client.
      conn.countError("tls")
      return "Close" as const
    }
    // Stop reading before the ack goes out: the client's ClientHello may follow it at once, and it belongs to the
    // TLS socket. Paused, whatever arrives stays in the socket's buffer, and the TLS socket reads what is buffered
    // first. The ack (after any replies still buffered) is written straight away.
    const raw = conn.socket
    raw.pause()
    conn.detach(raw)
    conn.stopReading()
    conn.out.push(Uint8Array.of(CODE_START_TLS))
    conn.writeOut()
    conn.writeBlocked = false
    if (conn.closed || raw.destroyed) return "Close" as const
    const upgraded = yield* Effect.async<NodeTls.TLSSocket, Error>((resume) => {
      const tlsSocket = new NodeTls.TLSSocket(raw, {
        isServer: true,
        secureContext: security.secureContext,
        requestCert: security.requestCert,
        rejectUnauthorized: security.rejectUnauthorized
      })
      const onSecure = () => {
        tlsSocket.off("error", onFailure)
        tlsSocket.off("close", onClose)
        resume(Effect.succeed(tlsSocket))
      }
      const onFailure = (error: Error) => {
        tlsSocket.off("secure", onSecure)
        tlsSocket.off("close", onClose)
        resume(Effect.fail(error))
      }
      const onClose = () => onFailure(new Error("closed during the TLS handshake"))
      tlsSocket.once("secure", onSecure)
      tlsSocket.once("error", onFailure)
      tlsSocket.once("close", onClose)
      // Errors after the handshake come with 'close'; this keeps them from being unhandled.
      tlsSocket.on("error", () => {})
      return Effect.sync(() => tlsSocket.destroy())
    }).pipe(
      Effect.timeoutFail({
        duration: security.handshakeTimeout,
        onTimeout: () => new Error("TLS handshake timed out")
      }),
      Effect.either
    )
    if (Either.isLeft(upgraded)) {
      yield* Effect.logDebug(`TLS handshake failed on connection ${conn.id}`, upgraded.left)
      conn.countError("tls")
      conn.closed = true
      raw.destroy()
      return "Close" as const
    }
    conn.secure = true
    yield* conn.setState({ ...conn.state, security: { _tag: "AwaitAuth", failures: 0 } })
    conn.attach(upgraded.right)
    return "Continue" as const
  })
}

/** `RpbAuthReq`: the login, acked with a code-only 254; failures wait `authFailureDelay` and may close. */
export const authenticate = (conn: Connection, frame: Frame, failures: number): Effect.Effect<Next> => {
  const security = conn.server.config.security!
  return Effect.gen(function*() {
    const decoded = codec.decode(frame.code, frame.body)
    if (decoded._tag === "DecodeFailed" || decoded.message._tag !== "RpbAuthReq") {
      conn.sendError(Texts.decodeError(decoded._tag === "DecodeFailed" ? decoded.reason : "not RpbAuthReq"), "decode")
      return "Continue" as const
    }
    const user = utf8(decoded.message.user)
    const socket = conn.socket
    const certificate = socket instanceof NodeTls.TLSSocket ? socket.getPeerCertificate() : undefined
    const ok = yield* security.authenticator.authenticate({
      user,
      password: utf8(decoded.message.password),
      peer: conn.peer,
      peerCertificate: certificate !== undefined && Object.keys(certificate).length > 0 ? certificate : undefined
    })
    if (ok) {
      yield* conn.setState({ ...conn.state, security: { _tag: "Authenticated", user } })
      conn.out.push(Uint8Array.of(CODE_AUTH_RESP))
      return "Continue" as const
    }
    yield* conn.setState({ ...conn.state, security: { _tag: "AwaitAuth", failures: failures + 1 } })
    yield* Effect.sleep(security.authFailureDelay)
    conn.sendError(Texts.authenticationFailed, "authentication")
    return failures + 1 >= security.maxAuthFailures ? "Close" as const : "Continue" as const
  })
}
