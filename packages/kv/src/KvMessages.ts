/**
 * Riak KV's Protocol Buffers messages (objects and listings, codes 9..18; bucket properties, 19..22 and
 * 29..30) and their codec, built with `@warren/pb`'s `PbCodec` on the
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
  readonly RpbGetBucketReq: RiakPb.RpbGetBucketReq
  readonly RpbGetBucketResp: RiakPb.RpbGetBucketResp
  readonly RpbSetBucketReq: RiakPb.RpbSetBucketReq
  readonly RpbSetBucketResp: {}
  readonly RpbResetBucketReq: RiakPb.RpbResetBucketReq
  readonly RpbResetBucketResp: {}
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
  | Message<"RpbGetBucketReq">
  | Message<"RpbSetBucketReq">
  | Message<"RpbResetBucketReq">

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
  | Message<"RpbGetBucketResp">
  | Message<"RpbSetBucketResp">
  | Message<"RpbResetBucketResp">

/**
 * Decoder and encoder of all KV messages (requests and replies, for servers, clients and tests).
 * `RpbDelResp`, `RpbSetBucketResp` and `RpbResetBucketResp` are code-only on the wire.
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
  RpbListKeysResp: RiakPb.MessageCode.RpbListKeysResp,
  RpbGetBucketReq: RiakPb.MessageCode.RpbGetBucketReq,
  RpbGetBucketResp: RiakPb.MessageCode.RpbGetBucketResp,
  RpbSetBucketReq: RiakPb.MessageCode.RpbSetBucketReq,
  RpbSetBucketResp: PbCodec.codeOnly(RiakPb.MessageCode.RpbSetBucketResp),
  RpbResetBucketReq: RiakPb.MessageCode.RpbResetBucketReq,
  RpbResetBucketResp: PbCodec.codeOnly(RiakPb.MessageCode.RpbResetBucketResp)
})

const requestCodes: ReadonlySet<number> = new Set([
  RiakPb.MessageCode.RpbGetReq,
  RiakPb.MessageCode.RpbPutReq,
  RiakPb.MessageCode.RpbDelReq,
  RiakPb.MessageCode.RpbListBucketsReq,
  RiakPb.MessageCode.RpbListKeysReq,
  RiakPb.MessageCode.RpbGetBucketReq,
  RiakPb.MessageCode.RpbSetBucketReq,
  RiakPb.MessageCode.RpbResetBucketReq
])

const isRequest = (message: PbCodec.AnyMessage<Messages>): message is KvRequest =>
  message._tag === "RpbGetReq" || message._tag === "RpbPutReq" || message._tag === "RpbDelReq" ||
  message._tag === "RpbListBucketsReq" || message._tag === "RpbListKeysReq" || message._tag === "RpbGetBucketReq" ||
  message._tag === "RpbSetBucketReq" || message._tag === "RpbResetBucketReq"

/**
 * True for the request codes of the KV ranges (9, 11, 13, 15, 17, 19, 21, 29); false for their reply codes.
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
 * The code ranges served by the KV service (requests and replies): 9..22 (objects, listings, bucket
 * properties) and 29..30 (reset bucket properties). 23..28 (MapReduce, 2i, search) are not served.
 *
 * @since 0.1.0
 * @category constants
 */
export const codeRanges: ReadonlyArray<{ readonly min: number; readonly max: number }> = [
  { min: codec.minCode, max: RiakPb.MessageCode.RpbSetBucketResp },
  { min: RiakPb.MessageCode.RpbResetBucketReq, max: codec.maxCode }
]
