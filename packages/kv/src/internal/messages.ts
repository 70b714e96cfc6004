import * as Either from "effect/Either"
import protobuf from "protobufjs"
import type * as KvMessages from "../KvMessages.js"
import { kvProto } from "./schema.js"

/** The parsed schema (Riak KV messages plus snapshot records), shared by the codec and the snapshot file. */
export const root: protobuf.Root = protobuf.parse(kvProto).root

const type = (name: string): protobuf.Type => root.lookupType(`warren.kv.${name}`)

const types = {
  RpbGetReq: type("RpbGetReq"),
  RpbGetResp: type("RpbGetResp"),
  RpbPutReq: type("RpbPutReq"),
  RpbPutResp: type("RpbPutResp"),
  RpbDelReq: type("RpbDelReq"),
  RpbListBucketsReq: type("RpbListBucketsReq"),
  RpbListBucketsResp: type("RpbListBucketsResp"),
  RpbListKeysReq: type("RpbListKeysReq"),
  RpbListKeysResp: type("RpbListKeysResp"),
  RpbErrorResp: type("RpbErrorResp"),
  SnapshotHeader: type("SnapshotHeader"),
  SnapshotEntry: type("SnapshotEntry")
} as const

/** The protobufjs types used by the snapshot file. */
export const snapshotTypes = {
  header: types.SnapshotHeader,
  entry: types.SnapshotEntry
} as const

const conversion: protobuf.IConversionOptions = { defaults: false, arrays: false }

/**
 * Decodes `body` with `t` and returns only the fields present on the wire.
 *
 * protobufjs checks wire types and required fields against the schema, so the plain object it
 * returns has exactly the shape of the schema (bytes as Uint8Array, uint32 as number, bool as
 * boolean, repeated as arrays); the casts below name that shape.
 */
const decodeWith = (t: protobuf.Type, body: Uint8Array): Either.Either<Record<string, unknown>, string> => {
  try {
    return Either.right(t.toObject(t.decode(body), conversion))
  } catch (e) {
    return Either.left(e instanceof Error ? e.message : String(e))
  }
}

const tagged = <A extends { readonly _tag: string }>(
  tag: A["_tag"],
  t: protobuf.Type,
  body: Uint8Array
): Either.Either<A, string> => Either.map(decodeWith(t, body), (fields) => ({ ...fields, _tag: tag }) as unknown as A)

/** Request codes and their decoders. */
export const decodeRequest = (code: number, body: Uint8Array): Either.Either<KvMessages.KvRequest, string> => {
  switch (code) {
    case 9:
      return tagged<KvMessages.RpbGetReq>("RpbGetReq", types.RpbGetReq, body)
    case 11:
      return tagged<KvMessages.RpbPutReq>("RpbPutReq", types.RpbPutReq, body)
    case 13:
      return tagged<KvMessages.RpbDelReq>("RpbDelReq", types.RpbDelReq, body)
    case 15:
      return tagged<KvMessages.RpbListBucketsReq>("RpbListBucketsReq", types.RpbListBucketsReq, body)
    case 17:
      return tagged<KvMessages.RpbListKeysReq>("RpbListKeysReq", types.RpbListKeysReq, body)
    default:
      return Either.left(`not a KV request code: ${code}`)
  }
}

/** Reply codes and their decoders (for clients and tests). */
export const decodeResponse = (code: number, body: Uint8Array): Either.Either<KvMessages.KvResponse, string> => {
  switch (code) {
    case 10:
      return tagged<KvMessages.RpbGetResp>("RpbGetResp", types.RpbGetResp, body)
    case 12:
      return tagged<KvMessages.RpbPutResp>("RpbPutResp", types.RpbPutResp, body)
    case 14:
      return body.length === 0 ? Either.right({ _tag: "RpbDelResp" }) : Either.left("RpbDelResp has no body")
    case 16:
      return tagged<KvMessages.RpbListBucketsResp>("RpbListBucketsResp", types.RpbListBucketsResp, body)
    case 18:
      return tagged<KvMessages.RpbListKeysResp>("RpbListKeysResp", types.RpbListKeysResp, body)
    default:
      return Either.left(`not a KV reply code: ${code}`)
  }
}

const withCode = (code: number, t: protobuf.Type | undefined, message: object): Uint8Array => {
  if (t === undefined) return Uint8Array.of(code)
  const writer = protobuf.Writer.create()
  writer.uint32(code)
  // The code is one byte (< 128, so its varint is one byte too), then the body without a length.
  t.encode(message, writer)
  return writer.finish()
}

const strip = <A extends { readonly _tag: string }>(message: A): Omit<A, "_tag"> => {
  const { _tag: _, ...rest } = message
  return rest
}

const responseTable = {
  RpbGetResp: [10, types.RpbGetResp],
  RpbPutResp: [12, types.RpbPutResp],
  RpbDelResp: [14, undefined],
  RpbListBucketsResp: [16, types.RpbListBucketsResp],
  RpbListKeysResp: [18, types.RpbListKeysResp]
} as const

const requestTable = {
  RpbGetReq: [9, types.RpbGetReq],
  RpbPutReq: [11, types.RpbPutReq],
  RpbDelReq: [13, types.RpbDelReq],
  RpbListBucketsReq: [15, types.RpbListBucketsReq],
  RpbListKeysReq: [17, types.RpbListKeysReq]
} as const

/** Code byte + protobuf body of a reply. */
export const encodeResponse = (message: KvMessages.KvResponse): Uint8Array => {
  const [code, t] = responseTable[message._tag]
  return withCode(code, t, strip(message))
}

/** Code byte + protobuf body of a request. */
export const encodeRequest = (message: KvMessages.KvRequest): Uint8Array => {
  const [code, t] = requestTable[message._tag]
  return withCode(code, t, strip(message))
}

/** Decodes an RpbErrorResp body (the code byte removed), for tests that read error frames. */
export const decodeErrorResp = (body: Uint8Array): Either.Either<{ errmsg: Uint8Array; errcode: number }, string> =>
  Either.map(decodeWith(types.RpbErrorResp, body), (f) => f as unknown as { errmsg: Uint8Array; errcode: number })
