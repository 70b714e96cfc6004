/**
 * Error replies: riak's texts (and this server's own for its limits) and their `RpbErrorResp` encoding.
 */
import * as Either from "effect/Either"
import * as NodeUtil from "node:util"
import * as PbCodec from "../PbCodec.js"
import type { Target } from "../PbService.js"
import { renderErrorMessage, renderReason } from "./errorMessage.js"
import * as RiakPb from "../RiakPb.js"

const bytesText = (value: string | Uint8Array): string =>
  typeof value === "string" ? value : Buffer.from(value).toString("utf8")

const renderTarget = (target: Target | undefined): string => {
  if (target === undefined) return "ANY"
  if (typeof target === "string" || target instanceof Uint8Array) return bytesText(target)
  return `${bytesText(target.type)}/${bytesText(target.bucket)}`
}

/** Exact texts of riak_api_pb_server, then this server's own. */
export const Texts = {
  unknownCode: (code: number) => `Unknown message code: ${code}`,
  startTlsWhileOff: "Security not enabled; STARTTLS not allowed.",
  decodeError: (reason: unknown) => `Message decoding error: ${renderReason(reason)}`,
  noEncoding: "Internal service error: no encoding for response message",
  unknownResponse: (result: unknown) =>
    `Unknown PB service response: ${NodeUtil.inspect(result, { depth: 4, breakLength: Infinity })}`,
  requestDuringStream: "Cannot send another request while one is in progress",
  /** A defect in a service, or a request its `process` has no clause for (e.g. a reply code sent as a request). */
  defect: "Error processing incoming message",
  streamDefect: "Error processing stream message",
  startTlsFirst: "Security is enabled, please STARTTLS first",
  authenticateFirst: "Security is enabled, please authenticate first",
  authenticationFailed: "Authentication failed",
  permissionDenied: (user: string, permission: string, target: Target | undefined) =>
    `Permission denied: User '${user}' does not have '${permission}' on ${renderTarget(target)}`,
  // Beyond riak:
  frameTooLarge: (length: number, limit: number) => `Message too large: ${length} bytes (limit ${limit})`,
  tooManyConnections: "Too many connections",
  streamTimeout: "Stream timed out"
} as const

interface Messages {
  readonly RpbErrorResp: RiakPb.RpbErrorResp
  readonly RpbAuthReq: RiakPb.RpbAuthReq
}

/** The server's own messages, through `PbCodec` like every service's. */
export const codec = PbCodec.make<Messages>(RiakPb.schema(), {
  RpbErrorResp: RiakPb.MessageCode.RpbErrorResp,
  RpbAuthReq: RiakPb.MessageCode.RpbAuthReq
})

const textEncoder = new TextEncoder()

/** An `RpbErrorResp` payload (code byte + body) with `errcode` 0, always written (riak does). */
export const errorPayload = (message: Uint8Array): Uint8Array => {
  const encoded = codec.encode(codec.message("RpbErrorResp", { errmsg: message, errcode: 0 }))
  // Bytes and a number always encode; were the schema broken, the client would still get an RpbErrorResp.
  return Either.getOrElse(encoded, () => Uint8Array.of(RiakPb.MessageCode.RpbErrorResp))
}

export const errorText = (text: string): Uint8Array => errorPayload(textEncoder.encode(text))

export const renderText = (error: Parameters<typeof renderErrorMessage>[0]): string =>
  Buffer.from(renderErrorMessage(error)).toString("utf8")
