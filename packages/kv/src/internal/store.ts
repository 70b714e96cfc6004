/**
 * Riak's object semantics over a `KvBackend` (see `KvStore.fromBackend`): vclocks and vtags, server-set
 * metadata, conditional puts, generated keys and copying of client bytes. Every backend gets exactly
 * these rules; a backend only stores records and offers a per-key compare-and-set.
 */
import { randomBytes } from "node:crypto"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as KvBackend from "../KvBackend.js"
import { type MemoryLimitExceeded, PreconditionFailed, type StorageError } from "../KvError.js"
import type * as KvStore from "../KvStore.js"
import { equalBytes } from "./memory.js"

const defaultTypeBytes = new TextEncoder().encode("default")

const base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/** Base-62 text of a byte string (used for generated keys and vtags, like Riak's). */
const base62 = (bytes: Uint8Array): string => {
  let n = BigInt(`0x${Buffer.from(bytes).toString("hex") || "0"}`)
  let out = ""
  do {
    out = base62Alphabet[Number(n % 62n)] + out
    n /= 62n
  } while (n > 0n)
  return out
}

const copy = (bytes: Uint8Array): Uint8Array => new Uint8Array(bytes)

const copyPairs = (pairs: ReadonlyArray<KvStore.Pair>): ReadonlyArray<KvStore.Pair> =>
  pairs.map((p) => (p.value === undefined ? { key: copy(p.key) } : { key: copy(p.key), value: copy(p.value) }))

const copyLinks = (links: ReadonlyArray<KvStore.Link>): ReadonlyArray<KvStore.Link> =>
  links.map((l) => {
    const out: { bucket?: Uint8Array; key?: Uint8Array; tag?: Uint8Array } = {}
    if (l.bucket !== undefined) out.bucket = copy(l.bucket)
    if (l.key !== undefined) out.key = copy(l.key)
    if (l.tag !== undefined) out.tag = copy(l.tag)
    return out
  })

type Mutable<A> = { -readonly [K in keyof A]: A[K] }

/** Copies the client's content (detaching it from request buffers) and adds the write's own fields. */
const storedContent = (input: KvStore.ContentInput, vtag: Uint8Array, nowNanos: bigint): KvStore.Content => {
  const out: Mutable<KvStore.Content> = {
    value: copy(input.value),
    vtag,
    lastMod: Number(nowNanos / 1_000_000_000n),
    lastModUsecs: Number((nowNanos / 1000n) % 1_000_000n)
  }
  if (input.contentType !== undefined) out.contentType = copy(input.contentType)
  if (input.charset !== undefined) out.charset = copy(input.charset)
  if (input.contentEncoding !== undefined) out.contentEncoding = copy(input.contentEncoding)
  if (input.links !== undefined && input.links.length > 0) out.links = copyLinks(input.links)
  if (input.usermeta !== undefined && input.usermeta.length > 0) out.usermeta = copyPairs(input.usermeta)
  if (input.indexes !== undefined && input.indexes.length > 0) out.indexes = copyPairs(input.indexes)
  return out
}

const resolve = (ref: KvStore.BucketRef, key: Uint8Array): KvBackend.Address => ({
  type: ref.type === undefined ? defaultTypeBytes : copy(ref.type),
  bucket: copy(ref.bucket),
  key
})

const resolveLocation = (location: KvStore.Location): KvBackend.Address => ({
  type: location.type ?? defaultTypeBytes,
  bucket: location.bucket,
  key: location.key
})

type PutError = PreconditionFailed | MemoryLimitExceeded | StorageError

/** The `KvStore` service over `backend`. */
export const fromBackend = (backend: KvBackend.Backend): Effect.Effect<Context.Tag.Service<typeof KvStore.KvStore>> =>
  Effect.sync(() => {
    // vclock: 'w', format 1, this store instance's random id, its write counter. A fresh random id per
    // instance keeps vclocks unique across restarts, servers sharing one database, and delete/re-create,
    // without a counter the backend would have to persist.
    const instance = randomBytes(8)
    let counter = 0n

    const stamp = (): { vclock: Uint8Array; vtag: Uint8Array } => {
      counter++
      const bytes = Buffer.alloc(16)
      bytes.set(instance, 0)
      bytes.writeBigUInt64BE(counter, 8)
      const vclock = new Uint8Array(18)
      vclock[0] = 0x77
      vclock[1] = 1
      vclock.set(bytes, 2)
      return { vclock, vtag: new TextEncoder().encode(base62(bytes)) }
    }

    const get = (location: KvStore.Location): Effect.Effect<Option.Option<KvStore.KvObject>, StorageError> =>
      backend.get(resolveLocation(location))

    const build = (input: KvStore.ContentInput, now: bigint): KvBackend.StoredObject => {
      const { vclock, vtag } = stamp()
      return { vclock, content: storedContent(input, vtag, now) }
    }

    /** A put under a fresh random key: create-only, retried with another key on the (improbable) collision. */
    const putGenerated = (
      ref: KvStore.BucketRef,
      input: KvStore.ContentInput,
      now: bigint
    ): Effect.Effect<KvStore.PutResult, PutError> =>
      Effect.suspend(() => {
        const key = new TextEncoder().encode(base62(randomBytes(16)))
        const object = build(input, now)
        return Effect.flatMap(
          backend.compareAndSet(resolve(ref, key), Option.none(), Option.some(object)),
          (stored) => stored ? Effect.succeed({ key, generatedKey: true, object }) : putGenerated(ref, input, now)
        )
      })

    /** Read, check the condition, compare-and-set; a lost race re-reads and re-checks. */
    const putKeyed = (
      address: KvBackend.Address,
      input: KvStore.ContentInput,
      condition: KvStore.PutCondition,
      now: bigint
    ): Effect.Effect<KvStore.PutResult, PutError> =>
      Effect.flatMap(backend.get(address), (existing): Effect.Effect<KvStore.PutResult, PutError> => {
        switch (condition._tag) {
          case "IfNoneMatch":
            if (Option.isSome(existing)) return Effect.fail(new PreconditionFailed({ reason: "MatchFound" }))
            break
          case "IfNotModified":
            if (Option.isNone(existing)) return Effect.fail(new PreconditionFailed({ reason: "NotFound" }))
            if (condition.vclock === undefined || !equalBytes(condition.vclock, existing.value.vclock)) {
              return Effect.fail(new PreconditionFailed({ reason: "Modified" }))
            }
            break
        }
        const object = build(input, now)
        return Effect.flatMap(
          backend.compareAndSet(address, Option.map(existing, (o) => o.vclock), Option.some(object)),
          (stored) =>
            stored
              ? Effect.succeed({ key: address.key, generatedKey: false, object })
              : putKeyed(address, input, condition, now)
        )
      })

    const put = (
      ref: KvStore.BucketRef,
      key: Uint8Array | undefined,
      input: KvStore.ContentInput,
      condition: KvStore.PutCondition = { _tag: "Always" }
    ): Effect.Effect<KvStore.PutResult, PutError> =>
      Effect.flatMap(Clock.currentTimeNanos, (now) =>
        key === undefined
          ? putGenerated(ref, input, now)
          : putKeyed(resolve(ref, copy(key)), input, condition, now))

    const listBuckets = (type: Uint8Array | undefined) => backend.listBuckets(type ?? defaultTypeBytes)
    const listKeys = (ref: KvStore.BucketRef) => backend.listKeys(ref.type ?? defaultTypeBytes, ref.bucket)

    return {
      get,
      put,
      delete: (location) => backend.delete(resolveLocation(location)),
      listBuckets,
      listKeys,
      usage: backend.usage,
      snapshot: backend.checkpoint
    }
  })
