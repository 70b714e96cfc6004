/**
 * Riak KV's Protocol Buffers messages (codes 9..18) and their codec, built with `@warren/pb`'s `PbCodec` on the
 * shared riak_pb schema (`RiakPb`), so the message shapes are the same as everywhere else in warren: riak_pb's
 * field names as written in the .proto files (`content_type`, `return_body`), tagged with the message name.
 *
 * Optional fields that were absent on the wire are absent from the decoded record (never defaulted), so a
 * zero-length `key` and a missing `key` stay distinguishable, as Riak needs. Unknown fields are skipped.
 *
 * @since 0.1.0
 */
import { PbCodec, PbService, RiakPb } from "@warren/pb"

/**
 * The KV messages by name.
 *
 * @since 0.1.0
 * @category models
 */
export interface Messages {
  readonly RpbGetReq: RiakPb.RpbGetReq
  readonly RpbGetResp: RiakPb.RpbGetResp
  readonly RpbPutReq: RiakPb.RpbPutReq
  readonly RpbPutResp: RiakPb.RpbPutResp
  readonly RpbDelReq: RiakPb.RpbDelReq
  readonly RpbDelResp: {}
  readonly RpbListBucketsReq: RiakPb.RpbListBucketsReq
  readonly RpbListBucketsResp: RiakPb.RpbListBucketsResp
  readonly RpbListKeysReq: RiakPb.RpbListKeysReq
  readonly RpbListKeysResp: RiakPb.RpbListKeysResp
}

/**
 * A KV message, tagged with its name.
 *
 * @since 0.1.0
 * @category models
 */
export type Message<K extends keyof Messages> = PbCodec.Message<Messages, K>

/**
 * Every request the KV service accepts.
 *
 * @since 0.1.0
 * @category models
 */
export type KvRequest =
  | Message<"RpbGetReq">
  | Message<"RpbPutReq">
  | Message<"RpbDelReq">
  | Message<"RpbListBucketsReq">
  | Message<"RpbListKeysReq">

/**
 * Every reply the KV service sends.
 *
 * @since 0.1.0
 * @category models
 */
export type KvResponse =
  | Message<"RpbGetResp">
  | Message<"RpbPutResp">
  | Message<"RpbDelResp">
  | Message<"RpbListBucketsResp">
  | Message<"RpbListKeysResp">

/**
 * Decoder and encoder of all KV messages (requests and replies, for servers, clients and tests).
 * `RpbDelResp` is code-only on the wire.
 *
 * @since 0.1.0
 * @category codec
 */
export const codec: PbCodec.Codec<Messages> = PbCodec.make<Messages>(RiakPb.schema(), {
  RpbGetReq: RiakPb.MessageCode.RpbGetReq,
  RpbGetResp: RiakPb.MessageCode.RpbGetResp,
  RpbPutReq: RiakPb.MessageCode.RpbPutReq,
  RpbPutResp: RiakPb.MessageCode.RpbPutResp,
  RpbDelReq: RiakPb.MessageCode.RpbDelReq,
  RpbDelResp: PbCodec.codeOnly(RiakPb.MessageCode.RpbDelResp),
  RpbListBucketsReq: RiakPb.MessageCode.RpbListBucketsReq,
  RpbListBucketsResp: RiakPb.MessageCode.RpbListBucketsResp,
  RpbListKeysReq: RiakPb.MessageCode.RpbListKeysReq,
  RpbListKeysResp: RiakPb.MessageCode.RpbListKeysResp
})

const requestCodes: ReadonlySet<number> = new Set([
  RiakPb.MessageCode.RpbGetReq,
  RiakPb.MessageCode.RpbPutReq,
  RiakPb.MessageCode.RpbDelReq,
  RiakPb.MessageCode.RpbListBucketsReq,
  RiakPb.MessageCode.RpbListKeysReq
])

const isRequest = (message: PbCodec.AnyMessage<Messages>): message is KvRequest =>
  message._tag === "RpbGetReq" || message._tag === "RpbPutReq" || message._tag === "RpbDelReq" ||
  message._tag === "RpbListBucketsReq" || message._tag === "RpbListKeysReq"

/**
 * True for the request codes of the KV range (9, 11, 13, 15, 17); false for its reply codes.
 *
 * @since 0.1.0
 * @category codec
 */
export const isRequestCode = (code: number): boolean => requestCodes.has(code)

/**
 * Decodes a request body for the server: reply codes of the range (10, 12, ...) are refused, so a client that
 * sends one gets `Message decoding error: ...` instead of a confused service.
 *
 * @since 0.1.0
 * @category codec
 */
export const decodeRequest = (code: number, body: Uint8Array): PbService.DecodeResult<KvRequest> => {
  if (!requestCodes.has(code)) return PbService.decodeFailed(`code ${code} is not a KV request`)
  const result = codec.decode(code, body)
  if (result._tag === "DecodeFailed") return result
  return isRequest(result.message)
    ? PbService.decoded(result.message)
    : PbService.decodeFailed(`code ${code} is not a KV request`)
}

/**
 * The first and last code served by the KV service (requests and replies, 9..18).
 *
 * @since 0.1.0
 * @category constants
 */
export const codeRange = { min: codec.minCode, max: codec.maxCode } as const
