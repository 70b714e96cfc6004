/**
 * The Riak KV object service on the warren PB server: get, put, delete, list buckets and list keys
 * (codes 9..18) and bucket properties (19..22, 29..30), with Riak's semantics and error texts, served from
 * the `KvStore`.
 *
 * ```ts
 * const program = Layer.mergeAll(KvService.layer, ...).pipe(Layer.provide(KvStore.layer({ dataFile })))
 * ```
 *
 * @since 0.1.0
 */
import * as PbService from "@warren/pb/PbService"
import * as ServiceRegistry from "@warren/pb/ServiceRegistry"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Either from "effect/Either"
import * as bucketPropsWire from "./internal/bucketProps.js"
import type {
  InvalidBucketProps,
  MemoryLimitExceeded,
  PreconditionFailed,
  StorageError,
  TooManySiblings
} from "./KvError.js"
import * as KvMessages from "./KvMessages.js"
import { KvStore } from "./KvStore.js"
import * as Store from "./KvStore.js"

/** A reply code of the KV ranges (10, 12, ...) sent as a request: riak_kv has no `process` clause for it. */
interface ReplyCodeAsRequest {
  readonly _tag: "ReplyCodeAsRequest"
  readonly code: number
}
type Req = KvMessages.KvRequest | ReplyCodeAsRequest
type Resp = KvMessages.KvResponse
/** The service keeps no per-connection state. */
type State = null

type Mutable<A> = { -readonly [K in keyof A]: A[K] }

const defaultTypeName = "default"

const requests = Metric.counter("warren_kv_requests", {
  description: "KV requests served, by operation",
  incremental: true
})

/** riak_kv_pb_object's texts for zero-length names. */
const zeroLength = {
  bucket: "Bucket cannot be zero-length",
  key: "Key cannot be zero-length",
  type: "Type cannot be zero-length"
} as const

interface Names {
  readonly bucket: Uint8Array
  readonly key?: Uint8Array | undefined
  readonly type?: Uint8Array | undefined
}

const checkNames = (request: Names): string | undefined => {
  if (request.bucket.length === 0) return zeroLength.bucket
  if (request.key !== undefined && request.key.length === 0) return zeroLength.key
  if (request.type !== undefined && request.type.length === 0) return zeroLength.type
  return undefined
}

/** The security check of a request (riak_kv_pb_object / riak_kv_pb_bucket `decode/2`). */
const permissionOf = (request: KvMessages.KvRequest): PbService.PermissionCheck => {
  switch (request._tag) {
    case "RpbGetReq":
      return { permission: "riak_kv.get", target: { type: request.type ?? defaultTypeName, bucket: request.bucket } }
    case "RpbPutReq":
      return { permission: "riak_kv.put", target: { type: request.type ?? defaultTypeName, bucket: request.bucket } }
    case "RpbDelReq":
      return {
        permission: "riak_kv.delete",
        target: { type: request.type ?? defaultTypeName, bucket: request.bucket }
      }
    case "RpbListKeysReq":
      return {
        permission: "riak_kv.list_keys",
        target: { type: request.type ?? defaultTypeName, bucket: request.bucket }
      }
    case "RpbListBucketsReq":
      return { permission: "riak_kv.list_buckets", target: request.type ?? defaultTypeName }
    // riak_kv_pb_bucket's permissions for bucket properties.
    case "RpbGetBucketReq":
      return {
        permission: "riak_core.get_bucket",
        target: { type: request.type ?? defaultTypeName, bucket: request.bucket }
      }
    case "RpbSetBucketReq":
    case "RpbResetBucketReq":
      return {
        permission: "riak_core.set_bucket",
        target: { type: request.type ?? defaultTypeName, bucket: request.bucket }
      }
  }
}

/** Client content (riak_pb field names) to store content. `vtag`, `last_mod*` and `deleted` are the server's. */
const toContentInput = (content: KvMessages.Message<"RpbPutReq">["content"]): Store.ContentInput => {
  const out: Mutable<Store.ContentInput> = { value: content.value }
  if (content.content_type !== undefined) out.contentType = content.content_type
  if (content.charset !== undefined) out.charset = content.charset
  if (content.content_encoding !== undefined) out.contentEncoding = content.content_encoding
  if (content.links !== undefined) out.links = content.links
  if (content.usermeta !== undefined) out.usermeta = content.usermeta
  if (content.indexes !== undefined) out.indexes = content.indexes
  return out
}

const empty = new Uint8Array(0)

type RpbContent = NonNullable<KvMessages.Message<"RpbGetResp">["content"]>[number]

/** Store content to the wire; `head` blanks the value (Riak's HEAD-like get and `return_head`). */
const toRpbContent = (content: Store.Content, head: boolean): RpbContent => {
  const out: Mutable<RpbContent> = {
    value: head ? empty : content.value,
    vtag: content.vtag,
    last_mod: content.lastMod,
    last_mod_usecs: content.lastModUsecs
  }
  if (content.contentType !== undefined) out.content_type = content.contentType
  if (content.charset !== undefined) out.charset = content.charset
  if (content.contentEncoding !== undefined) out.content_encoding = content.contentEncoding
  if (content.links !== undefined) out.links = content.links
  if (content.usermeta !== undefined) out.usermeta = content.usermeta
  if (content.indexes !== undefined) out.indexes = content.indexes
  return out
}

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)

/** Frames listing batches: no empty batch is sent, the last frame carries `done`, an empty listing is one `done`. */
const framed = <R extends Resp>(
  batches: Stream.Stream<ReadonlyArray<Uint8Array>, StorageError>,
  frame: (names: ReadonlyArray<Uint8Array> | undefined, done: boolean) => R
): Stream.Stream<R, PbService.PbServiceError> =>
  batches.pipe(
    Stream.mapError((e) => new PbService.PbServiceError({ error: e.message })),
    Stream.filter((batch) => batch.length > 0),
    Stream.zipWithNext,
    Stream.map(([batch, next]) => frame(batch, Option.isNone(next))),
    Stream.orElseIfEmpty(() => frame(undefined, true))
  )

const storeErrorText = (
  e: PreconditionFailed | MemoryLimitExceeded | StorageError | InvalidBucketProps | TooManySiblings
): string => e.message

/** A storage failure becomes the request's `RpbErrorResp`; the connection and the server stay up. */
const orErrorReply = <A>(
  effect: Effect.Effect<A | PbService.Failure<State>, StorageError>
): Effect.Effect<A | PbService.Failure<State>> =>
  Effect.catchTag(effect, "StorageError", (e) => Effect.succeed(PbService.error(e.message, null)))

/**
 * Builds the KV service over the `KvStore` in context.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<PbService.PbService, never, KvStore> = Effect.gen(function*() {
  const store = yield* KvStore

  const counted = (op: string) => Metric.increment(Metric.tagged(requests, "op", op))

  const get = (request: KvMessages.Message<"RpbGetReq">, state: State) =>
    Effect.gen(function*() {
      const invalid = checkNames(request)
      if (invalid !== undefined) return PbService.error(invalid, state)
      const found = yield* store.get(request)
      if (Option.isNone(found)) return PbService.reply<Resp, State>({ _tag: "RpbGetResp" }, state)
      const object = found.value
      if (request.if_modified !== undefined && equalBytes(request.if_modified, object.vclock)) {
        return PbService.reply<Resp, State>({ _tag: "RpbGetResp", unchanged: true }, state)
      }
      // Siblings: one `content` entry each (newest first), under the one vclock that resolves them all.
      return PbService.reply<Resp, State>({
        _tag: "RpbGetResp",
        content: Store.contents(object).map((c) => toRpbContent(c, request.head === true)),
        vclock: object.vclock
      }, state)
    }).pipe(orErrorReply, Effect.tap(counted("get")), Effect.withSpan("KvService.get"))

  const put = (request: KvMessages.Message<"RpbPutReq">, state: State) =>
    Effect.gen(function*() {
      const invalid = checkNames(request)
      if (invalid !== undefined) return PbService.error(invalid, state)
      const condition: Store.PutCondition = request.if_none_match === true
        ? { _tag: "IfNoneMatch" }
        : request.if_not_modified === true
        ? { _tag: "IfNotModified", vclock: request.vclock }
        : { _tag: "Always" }
      const content = toContentInput(request.content)
      const result = yield* Effect.either(store.put(request, request.key, content, condition, request.vclock))
      if (result._tag === "Left") return PbService.error(storeErrorText(result.left), state)
      const { generatedKey, key, object } = result.right
      const withBody = request.return_body === true || request.return_head === true
      const reply: Mutable<KvMessages.Message<"RpbPutResp">> = { _tag: "RpbPutResp" }
      if (withBody) {
        // Riak: return_head wins over return_body (the content comes back without its value).
        reply.content = Store.contents(object).map((c) => toRpbContent(c, request.return_head === true))
        reply.vclock = object.vclock
      }
      if (generatedKey) reply.key = key
      return PbService.reply<Resp, State>(reply, state)
    }).pipe(Effect.tap(counted("put")), Effect.withSpan("KvService.put"))

  const del = (request: KvMessages.Message<"RpbDelReq">, state: State) =>
    store.delete(request, request.vclock).pipe(
      Effect.as(PbService.reply<Resp, State>({ _tag: "RpbDelResp" }, state)),
      Effect.catchTag("MemoryLimitExceeded", (e) => Effect.succeed(PbService.error(e.message, state))),
      orErrorReply,
      Effect.tap(counted("delete")),
      Effect.withSpan("KvService.delete")
    )

  const listBuckets = (request: KvMessages.Message<"RpbListBucketsReq">, state: State) => {
    if (request.type !== undefined && request.type.length === 0) {
      return Effect.succeed(PbService.error(zeroLength.type, state))
    }
    const batches = store.listBuckets(request.type)
    if (request.stream === true) {
      const replies = framed(batches, (names, done): Resp => {
        const frame: Mutable<KvMessages.Message<"RpbListBucketsResp">> = { _tag: "RpbListBucketsResp", done }
        if (names !== undefined) frame.buckets = names
        return frame
      })
      return Effect.as(counted("list_buckets"), PbService.streamOf(replies, state))
    }
    // Not streamed: Riak's protocol has one reply holding every bucket name.
    return Stream.runFold(batches, [] as Array<Uint8Array>, (all, batch) => {
      for (const name of batch) all.push(name)
      return all
    }).pipe(
      Effect.map((buckets) =>
        PbService.reply<Resp, State>(
          buckets.length === 0 ? { _tag: "RpbListBucketsResp" } : { _tag: "RpbListBucketsResp", buckets },
          state
        )
      ),
      orErrorReply,
      Effect.tap(counted("list_buckets")),
      Effect.withSpan("KvService.listBuckets")
    )
  }

  const listKeys = (request: KvMessages.Message<"RpbListKeysReq">, state: State) => {
    if (request.type !== undefined && request.type.length === 0) {
      return Effect.succeed(PbService.error(zeroLength.type, state))
    }
    const replies = framed(store.listKeys(request), (keys, done): Resp => {
      const frame: Mutable<KvMessages.Message<"RpbListKeysResp">> = { _tag: "RpbListKeysResp", done }
      if (keys !== undefined) frame.keys = keys
      return frame
    })
    return Effect.as(counted("list_keys"), PbService.streamOf(replies, state))
  }

  const getBucket = (request: KvMessages.Message<"RpbGetBucketReq">, state: State) => {
    const invalid = checkNames(request)
    if (invalid !== undefined) return Effect.succeed(PbService.error(invalid, state))
    return store.getBucketProps(request).pipe(
      Effect.map((props) =>
        PbService.reply<Resp, State>({ _tag: "RpbGetBucketResp", props: bucketPropsWire.toPb(props) }, state)
      ),
      orErrorReply,
      Effect.tap(counted("get_bucket")),
      Effect.withSpan("KvService.getBucket")
    )
  }

  const setBucket = (request: KvMessages.Message<"RpbSetBucketReq">, state: State) => {
    const invalid = checkNames(request)
    if (invalid !== undefined) return Effect.succeed(PbService.error(invalid, state))
    const props = bucketPropsWire.fromPb(request.props)
    if (Either.isLeft(props)) return Effect.succeed(PbService.error(props.left.message, state))
    return store.setBucketProps(request, props.right).pipe(
      Effect.as(PbService.reply<Resp, State>({ _tag: "RpbSetBucketResp" }, state)),
      Effect.catchTag("InvalidBucketProps", (e) => Effect.succeed(PbService.error(storeErrorText(e), state))),
      orErrorReply,
      Effect.tap(counted("set_bucket")),
      Effect.withSpan("KvService.setBucket")
    )
  }

  const resetBucket = (request: KvMessages.Message<"RpbResetBucketReq">, state: State) => {
    const invalid = checkNames(request)
    if (invalid !== undefined) return Effect.succeed(PbService.error(invalid, state))
    return store.resetBucketProps(request).pipe(
      Effect.as(PbService.reply<Resp, State>({ _tag: "RpbResetBucketResp" }, state)),
      orErrorReply,
      Effect.tap(counted("reset_bucket")),
      Effect.withSpan("KvService.resetBucket")
    )
  }

  return PbService.make<Req, Resp, State>({
    name: "riak_kv",
    init: () => null,
    decode: (code, body) => {
      if (!KvMessages.isRequestCode(code)) return PbService.decoded<Req>({ _tag: "ReplyCodeAsRequest", code })
      const result = KvMessages.decodeRequest(code, body)
      return result._tag === "Decoded" ? PbService.decoded(result.message, permissionOf(result.message)) : result
    },
    encode: (reply) => KvMessages.codec.encode(reply),
    process: (request, state): Effect.Effect<PbService.ProcessResult<Resp, State>> => {
      switch (request._tag) {
        case "RpbGetReq":
          return get(request, state)
        case "RpbPutReq":
          return put(request, state)
        case "RpbDelReq":
          return del(request, state)
        case "RpbListBucketsReq":
          return listBuckets(request, state)
        case "RpbListKeysReq":
          return listKeys(request, state)
        case "RpbGetBucketReq":
          return getBucket(request, state)
        case "RpbSetBucketReq":
          return setBucket(request, state)
        case "RpbResetBucketReq":
          return resetBucket(request, state)
        case "ReplyCodeAsRequest":
          // riak's process/2 has no clause for a reply: its crash text, then the connection closes.
          return Effect.succeed(PbService.unexpected(state))
      }
    }
  })
})

/**
 * The registry entries of a KV service built with `make`: codes 9..22 and 29..30 (like
 * `BasicService.registrations`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const registrations = (service: PbService.PbService): ReadonlyArray<ServiceRegistry.Registration> =>
  KvMessages.codeRanges.map((range) => ServiceRegistry.registration(service, range.min, range.max))

/**
 * Registers the KV service for codes 9..22 and 29..30 in the `ServiceRegistry` for the lifetime of the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<
  never,
  ServiceRegistry.AlreadyRegistered | ServiceRegistry.InvalidCodeRange,
  KvStore | ServiceRegistry.ServiceRegistry
> = Layer.unwrapEffect(
  Effect.map(make, (service) => ServiceRegistry.registered(registrations(service)))
)
