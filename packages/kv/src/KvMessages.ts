/**
 * Riak KV's Protocol Buffers messages (codes 9..18) as typed records, with a decoder and an encoder
 * that are byte-compatible with riak_pb (proto2, same field numbers; unknown fields are skipped).
 *
 * Field names are the camel-cased riak_pb names (`content_type` -> `contentType`). Optional fields
 * that were absent on the wire are absent from the record (never defaulted), so a zero-length
 * `key` and a missing `key` stay distinguishable, as Riak needs.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Either from "effect/Either"
import * as internal from "./internal/messages.js"

/**
 * Message codes of the KV object and listing messages (riak_pb `riak_pb_messages.csv`).
 *
 * @since 0.1.0
 * @category constants
 */
export const Code = {
  ErrorResp: 0,
  GetReq: 9,
  GetResp: 10,
  PutReq: 11,
  PutResp: 12,
  DelReq: 13,
  DelResp: 14,
  ListBucketsReq: 15,
  ListBucketsResp: 16,
  ListKeysReq: 17,
  ListKeysResp: 18
} as const

/**
 * The first and last code served by the KV service (requests and replies, 9..18).
 *
 * @since 0.1.0
 * @category constants
 */
export const codeRange = { min: Code.GetReq, max: Code.ListKeysResp } as const

/**
 * A key/value pair (user metadata and secondary index entries).
 *
 * @since 0.1.0
 * @category models
 */
export interface RpbPair {
  readonly key: Uint8Array
  readonly value?: Uint8Array
}

/**
 * A link to another object (stored and returned verbatim; link walking is not supported).
 *
 * @since 0.1.0
 * @category models
 */
export interface RpbLink {
  readonly bucket?: Uint8Array
  readonly key?: Uint8Array
  readonly tag?: Uint8Array
}

/**
 * One value of an object with its metadata.
 *
 * @since 0.1.0
 * @category models
 */
export interface RpbContent {
  readonly value: Uint8Array
  readonly contentType?: Uint8Array
  readonly charset?: Uint8Array
  readonly contentEncoding?: Uint8Array
  readonly vtag?: Uint8Array
  readonly links?: ReadonlyArray<RpbLink>
  readonly lastMod?: number
  readonly lastModUsecs?: number
  readonly usermeta?: ReadonlyArray<RpbPair>
  readonly indexes?: ReadonlyArray<RpbPair>
  readonly deleted?: boolean
}

/**
 * Fetch one object (code 9).
 *
 * @since 0.1.0
 * @category models
 */
export interface RpbGetReq {
  readonly _tag: "RpbGetReq"
  readonly bucket: Uint8Array
  readonly key: Uint8Array
  readonly r?: number
  readonly pr?: number
  readonly basicQuorum?: boolean
  readonly notfoundOk?: boolean
  readonly ifModified?: Uint8Array
  readonly head?: boolean
  readonly deletedvclock?: boolean
  readonly timeout?: number
  readonly sloppyQuorum?: boolean
  readonly nVal?: number
  readonly type?: Uint8Array
}

/**
 * Reply to a fetch (code 10); empty (code-only on the wire) when the object is not found.
 *
 * @since 0.1.0
 * @category models
 */
export interface RpbGetResp {
  readonly _tag: "RpbGetResp"
  readonly content?: ReadonlyArray<RpbContent>
  readonly vclock?: Uint8Array
  readonly unchanged?: boolean
}

/**
 * Store one object (code 11); without `key` the server generates one.
 *
 * @since 0.1.0
 * @category models
 */
export interface RpbPutReq {
  readonly _tag: "RpbPutReq"
  readonly bucket: Uint8Array
  readonly key?: Uint8Array
  readonly vclock?: Uint8Array
  readonly content: RpbContent
  readonly w?: number
  readonly dw?: number
  readonly returnBody?: boolean
  readonly pw?: number
  readonly ifNotModified?: boolean
  readonly ifNoneMatch?: boolean
  readonly returnHead?: boolean
  readonly timeout?: number
  readonly asis?: boolean
  readonly sloppyQuorum?: boolean
  readonly nVal?: number
  readonly type?: Uint8Array
}

/**
 * Reply to a store (code 12); empty unless a body, head or generated key is returned.
 *
 * @since 0.1.0
 * @category models
 */
export interface RpbPutResp {
  readonly _tag: "RpbPutResp"
  readonly content?: ReadonlyArray<RpbContent>
  readonly vclock?: Uint8Array
  readonly key?: Uint8Array
}

/**
 * Delete one object (code 13).
 *
 * @since 0.1.0
 * @category models
 */
export interface RpbDelReq {
  readonly _tag: "RpbDelReq"
  readonly bucket: Uint8Array
  readonly key: Uint8Array
  readonly rw?: number
  readonly vclock?: Uint8Array
  readonly r?: number
  readonly w?: number
  readonly pr?: number
  readonly pw?: number
  readonly dw?: number
  readonly timeout?: number
  readonly sloppyQuorum?: boolean
  readonly nVal?: number
  readonly type?: Uint8Array
}

/**
 * Reply to a delete (code 14, always code-only on the wire).
 *
 * @since 0.1.0
 * @category models
 */
export interface RpbDelResp {
  readonly _tag: "RpbDelResp"
}

/**
 * List the buckets of a bucket type (code 15); streamed only when `stream` is true.
 *
 * @since 0.1.0
 * @category models
 */
export interface RpbListBucketsReq {
  readonly _tag: "RpbListBucketsReq"
  readonly timeout?: number
  readonly stream?: boolean
  readonly type?: Uint8Array
}

/**
 * One batch of bucket names (code 16).
 *
 * @since 0.1.0
 * @category models
 */
export interface RpbListBucketsResp {
  readonly _tag: "RpbListBucketsResp"
  readonly buckets?: ReadonlyArray<Uint8Array>
  readonly done?: boolean
}

/**
 * List the keys of a bucket (code 17); always streamed.
 *
 * @since 0.1.0
 * @category models
 */
export interface RpbListKeysReq {
  readonly _tag: "RpbListKeysReq"
  readonly bucket: Uint8Array
  readonly timeout?: number
  readonly type?: Uint8Array
}

/**
 * One batch of keys (code 18).
 *
 * @since 0.1.0
 * @category models
 */
export interface RpbListKeysResp {
  readonly _tag: "RpbListKeysResp"
  readonly keys?: ReadonlyArray<Uint8Array>
  readonly done?: boolean
}

/**
 * Every request the KV service accepts.
 *
 * @since 0.1.0
 * @category models
 */
export type KvRequest = RpbGetReq | RpbPutReq | RpbDelReq | RpbListBucketsReq | RpbListKeysReq

/**
 * Every reply the KV service sends.
 *
 * @since 0.1.0
 * @category models
 */
export type KvResponse = RpbGetResp | RpbPutResp | RpbDelResp | RpbListBucketsResp | RpbListKeysResp

/**
 * A body that could not be decoded, or a code that is not a KV request.
 *
 * @since 0.1.0
 * @category errors
 */
export class KvDecodeError extends Data.TaggedError("KvDecodeError")<{
  readonly code: number
  readonly reason: string
}> {
  /** @since 0.1.0 */
  override get message(): string {
    return this.reason
  }
}

/**
 * Decodes the body of a request frame (the code byte already removed).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeRequest = (code: number, body: Uint8Array): Either.Either<KvRequest, KvDecodeError> =>
  Either.mapLeft(internal.decodeRequest(code, body), (reason) => new KvDecodeError({ code, reason }))

/**
 * Encodes a reply as a frame payload: the code byte followed by the protobuf body.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeResponse: (message: KvResponse) => Uint8Array = internal.encodeResponse

/**
 * Encodes a request as a frame payload (code byte first); for clients and tests.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeRequest: (message: KvRequest) => Uint8Array = internal.encodeRequest

/**
 * Decodes the body of a reply frame of the given code; for clients and tests.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeResponse = (code: number, body: Uint8Array): Either.Either<KvResponse, KvDecodeError> =>
  Either.mapLeft(internal.decodeResponse(code, body), (reason) => new KvDecodeError({ code, reason }))
