/**
 * The Riak PB messages this package ships: their codes (riak_pb's `riak_pb_messages.csv`), TypeScript shapes
 * matching `src/proto/riak.proto` and `src/proto/riak_kv.proto`, and the parsed schema.
 *
 * The .proto files are read from the package directory at runtime (`<package>/src/proto`), which is the same path
 * from the sources and from the compiled `dist/`.
 *
 * @since 0.1.0
 */
import type { ProtoRoot } from "./PbCodec.js"
import { loadProtoFiles } from "./PbCodec.js"

/**
 * Message codes of the Riak PB API.
 *
 * @since 0.1.0
 * @category constants
 */
export const MessageCode = {
  RpbErrorResp: 0,
  RpbPingReq: 1,
  RpbPingResp: 2,
  RpbGetClientIdReq: 3,
  RpbGetClientIdResp: 4,
  RpbSetClientIdReq: 5,
  RpbSetClientIdResp: 6,
  RpbGetServerInfoReq: 7,
  RpbGetServerInfoResp: 8,
  RpbGetReq: 9,
  RpbGetResp: 10,
  RpbPutReq: 11,
  RpbPutResp: 12,
  RpbDelReq: 13,
  RpbDelResp: 14,
  RpbListBucketsReq: 15,
  RpbListBucketsResp: 16,
  RpbListKeysReq: 17,
  RpbListKeysResp: 18,
  RpbGetBucketReq: 19,
  RpbGetBucketResp: 20,
  RpbSetBucketReq: 21,
  RpbSetBucketResp: 22,
  RpbMapRedReq: 23,
  RpbMapRedResp: 24,
  RpbIndexReq: 25,
  RpbIndexResp: 26,
  RpbSearchQueryReq: 27,
  RpbSearchQueryResp: 28,
  RpbResetBucketReq: 29,
  RpbResetBucketResp: 30,
  RpbGetBucketTypeReq: 31,
  RpbSetBucketTypeReq: 32,
  RpbAuthReq: 253,
  RpbAuthResp: 254,
  RpbStartTls: 255
} as const

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbErrorResp {
  readonly errmsg: Uint8Array
  readonly errcode: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbGetServerInfoResp {
  readonly node?: Uint8Array
  readonly server_version?: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbPair {
  readonly key: Uint8Array
  readonly value?: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbGetBucketReq {
  readonly bucket: Uint8Array
  readonly type?: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbGetBucketResp {
  readonly props: RpbBucketProps
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbSetBucketReq {
  readonly bucket: Uint8Array
  readonly props: RpbBucketProps
  readonly type?: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbResetBucketReq {
  readonly bucket: Uint8Array
  readonly type?: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbModFun {
  readonly module: Uint8Array
  readonly function: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbCommitHook {
  readonly modfun?: RpbModFun
  readonly name?: Uint8Array
}

/**
 * Bucket properties. Quorum fields (`pr`, `r`, `w`, `pw`, `dw`, `rw`) use riak_pb's special values for the
 * symbolic settings (`RiakPb.Quorum`). `repl` is riak_pb's `RpbReplMode` as its number.
 *
 * @since 0.1.0
 * @category models
 */
export interface RpbBucketProps {
  readonly n_val?: number
  readonly allow_mult?: boolean
  readonly last_write_wins?: boolean
  readonly precommit?: ReadonlyArray<RpbCommitHook>
  readonly has_precommit?: boolean
  readonly postcommit?: ReadonlyArray<RpbCommitHook>
  readonly has_postcommit?: boolean
  readonly chash_keyfun?: RpbModFun
  readonly linkfun?: RpbModFun
  readonly old_vclock?: number
  readonly young_vclock?: number
  readonly big_vclock?: number
  readonly small_vclock?: number
  readonly pr?: number
  readonly r?: number
  readonly w?: number
  readonly pw?: number
  readonly dw?: number
  readonly rw?: number
  readonly basic_quorum?: boolean
  readonly notfound_ok?: boolean
  readonly backend?: Uint8Array
  readonly search?: boolean
  readonly repl?: number
  readonly search_index?: Uint8Array
  readonly datatype?: Uint8Array
  readonly consistent?: boolean
  readonly write_once?: boolean
  readonly hll_precision?: number
}

/**
 * riak_pb's encodings of the symbolic quorum values in `uint32` quorum fields (`riak_pb_kv_codec`).
 *
 * @since 0.1.0
 * @category constants
 */
export const Quorum = {
  one: 4294967294,
  quorum: 4294967293,
  all: 4294967292,
  default: 4294967291
} as const

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbAuthReq {
  readonly user: Uint8Array
  readonly password: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbGetClientIdResp {
  readonly client_id: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbSetClientIdReq {
  readonly client_id: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbLink {
  readonly bucket?: Uint8Array
  readonly key?: Uint8Array
  readonly tag?: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbContent {
  readonly value: Uint8Array
  readonly content_type?: Uint8Array
  readonly charset?: Uint8Array
  readonly content_encoding?: Uint8Array
  readonly vtag?: Uint8Array
  readonly links?: ReadonlyArray<RpbLink>
  readonly last_mod?: number
  readonly last_mod_usecs?: number
  readonly usermeta?: ReadonlyArray<RpbPair>
  readonly indexes?: ReadonlyArray<RpbPair>
  readonly deleted?: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbGetReq {
  readonly bucket: Uint8Array
  readonly key: Uint8Array
  readonly r?: number
  readonly pr?: number
  readonly basic_quorum?: boolean
  readonly notfound_ok?: boolean
  readonly if_modified?: Uint8Array
  readonly head?: boolean
  readonly deletedvclock?: boolean
  readonly timeout?: number
  readonly sloppy_quorum?: boolean
  readonly n_val?: number
  readonly type?: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbGetResp {
  readonly content?: ReadonlyArray<RpbContent>
  readonly vclock?: Uint8Array
  readonly unchanged?: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbPutReq {
  readonly bucket: Uint8Array
  readonly key?: Uint8Array
  readonly vclock?: Uint8Array
  readonly content: RpbContent
  readonly w?: number
  readonly dw?: number
  readonly return_body?: boolean
  readonly pw?: number
  readonly if_not_modified?: boolean
  readonly if_none_match?: boolean
  readonly return_head?: boolean
  readonly timeout?: number
  readonly asis?: boolean
  readonly sloppy_quorum?: boolean
  readonly n_val?: number
  readonly type?: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbPutResp {
  readonly content?: ReadonlyArray<RpbContent>
  readonly vclock?: Uint8Array
  readonly key?: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbDelReq {
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
  readonly sloppy_quorum?: boolean
  readonly n_val?: number
  readonly type?: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbListBucketsReq {
  readonly timeout?: number
  readonly stream?: boolean
  readonly type?: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbListBucketsResp {
  readonly buckets?: ReadonlyArray<Uint8Array>
  readonly done?: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbListKeysReq {
  readonly bucket: Uint8Array
  readonly timeout?: number
  readonly type?: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RpbListKeysResp {
  readonly keys?: ReadonlyArray<Uint8Array>
  readonly done?: boolean
}

/**
 * The .proto files of this package, resolved from the package directory (works from `src/` and `dist/`).
 *
 * @since 0.1.0
 * @category constants
 */
export const protoFiles: ReadonlyArray<URL> = [
  new URL("../src/proto/riak.proto", import.meta.url),
  new URL("../src/proto/riak_kv.proto", import.meta.url)
]

let cached: ProtoRoot | undefined

/**
 * The parsed `riak.proto` and `riak_kv.proto` (parsed once, on first use).
 *
 * @since 0.1.0
 * @category constructors
 */
export const schema = (): ProtoRoot => {
  if (cached === undefined) cached = loadProtoFiles(protoFiles)
  return cached
}
