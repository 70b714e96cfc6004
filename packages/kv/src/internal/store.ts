/**
 * Riak's object semantics over a `KvBackend` (see `KvStore.fromBackend`): causal clocks and siblings
 * (causal.ts), bucket properties, vtags, server-set metadata, conditional puts, generated keys and copying
 * of client bytes. Every backend gets exactly these rules; a backend only stores records and offers a
 * per-key compare-and-set.
 */
import { randomBytes } from "node:crypto"
import * as Clock from "effect/Clock"
import * as Either from "effect/Either"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as BucketProps from "../BucketProps.js"
import type * as KvBackend from "../KvBackend.js"
import {
  type InvalidBucketProps,
  type MemoryLimitExceeded,
  PreconditionFailed,
  type StorageError,
  TooManySiblings
} from "../KvError.js"
import type * as KvStore from "../KvStore.js"
import * as bucketPropsRecord from "./bucketProps.js"
import * as causal from "./causal.js"
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

type PutError = PreconditionFailed | MemoryLimitExceeded | StorageError | TooManySiblings

/** The most values a key keeps (Riak's default `max_siblings`). */
const maxSiblings = 100

/** The contents of a stored object, newest first. */
const contentsOf = (object: KvBackend.StoredObject): ReadonlyArray<KvStore.Content> =>
  object.siblings === undefined || object.siblings.length === 0
    ? [object.content]
    : [object.content, ...object.siblings]

/**
 * A stored object of `contents` (newest first, at least one) and their `dots`; `event` is a further event of the
 * write that made it (a delete that left siblings), so its clock differs from every earlier one.
 */
const stored = (
  contents: ReadonlyArray<KvStore.Content>,
  dots: ReadonlyArray<causal.Dot>,
  event?: causal.Dot
): KvBackend.StoredObject => {
  const vclock = event === undefined && dots.length === 1
    ? causal.encodeSingle(dots[0]!)
    : causal.encode({ clock: causal.clockOf(event === undefined ? dots : [...dots, event]), dots })
  return contents.length === 1
    ? { vclock, content: contents[0]! }
    : { vclock, content: contents[0]!, siblings: contents.slice(1) }
}

/** The `KvStore` service over `backend`. */
export const fromBackend = (backend: KvBackend.Backend): Effect.Effect<Context.Tag.Service<typeof KvStore.KvStore>> =>
  Effect.sync(() => {
    // This store instance's actor in causal clocks: a fresh random id per instance, so clocks and vclocks
    // stay unique across restarts, servers sharing one database, and delete/re-create, without a counter
    // the backend would have to persist. `counter` numbers this instance's writes (all keys).
    const instance = randomBytes(8)
    const actor = causal.actorOf(instance)
    let counter = 0

    /** A new write event: its dot, and the vtag derived from it. */
    const nextEvent = (): { dot: causal.Dot; vtag: Uint8Array } => {
      counter++
      const bytes = Buffer.alloc(16)
      bytes.set(instance, 0)
      bytes.writeBigUInt64BE(BigInt(counter), 8)
      return { dot: { actor, counter }, vtag: new TextEncoder().encode(base62(bytes)) }
    }

    const effective = (type: Uint8Array, overrides: Option.Option<BucketProps.Overrides>): BucketProps.BucketProps =>
      Option.isNone(overrides) ? BucketProps.defaults(type) : BucketProps.resolve(type, overrides.value)

    const bucketProps = (type: Uint8Array, bucket: Uint8Array): Effect.Effect<BucketProps.BucketProps, StorageError> =>
      Effect.map(backend.getBucketProps(type, bucket), (overrides) => effective(type, overrides))

    // A stored object is served as it is (it has the `KvObject` shape): no copy on the read path.
    const get = (location: KvStore.Location): Effect.Effect<Option.Option<KvStore.KvObject>, StorageError> =>
      backend.get(resolveLocation(location))

    /**
     * The object a put leaves: with `allowMult`, the stored siblings the client's `context` has not seen
     * stay beside the new value; otherwise (also with `lastWriteWins`) the new value replaces them.
     */
    const build = (
      existing: Option.Option<KvBackend.StoredObject>,
      context: Uint8Array | undefined,
      props: BucketProps.BucketProps,
      input: KvStore.ContentInput,
      now: bigint
    ): KvBackend.StoredObject => {
      const { dot, vtag } = nextEvent()
      const content = storedContent(input, vtag, now)
      if (!props.allowMult || props.lastWriteWins || Option.isNone(existing)) return stored([content], [dot])
      const seen = context === undefined ? causal.empty : causal.decodeContext(context)
      const contents = contentsOf(existing.value)
      const before = causal.decodeStored(existing.value.vclock, contents.length)
      const kept: Array<KvStore.Content> = [content]
      const dots: Array<causal.Dot> = [dot]
      contents.forEach((c, i) => {
        const d = before.dots[i]!
        if (!causal.covers(seen, d)) {
          kept.push(c)
          dots.push(d)
        }
      })
      return stored(kept, dots)
    }

    /** A put under a fresh random key: create-only, retried with another key on the (improbable) collision. */
    const putGenerated = (
      ref: KvStore.BucketRef,
      input: KvStore.ContentInput,
      now: bigint
    ): Effect.Effect<KvStore.PutResult, PutError> =>
      Effect.suspend(() => {
        const key = new TextEncoder().encode(base62(randomBytes(16)))
        const object = build(Option.none(), undefined, BucketProps.defaults(undefined), input, now)
        return Effect.flatMap(
          backend.compareAndSet(resolve(ref, key), Option.none(), Option.some(object)),
          (done) =>
            done
              ? Effect.succeed({ key, generatedKey: true, object })
              : putGenerated(ref, input, now)
        )
      })

    /** Check the condition against what was read, compare-and-set; a lost race re-reads and re-checks. */
    const putKeyed = (
      address: KvBackend.Address,
      input: KvStore.ContentInput,
      condition: KvStore.PutCondition,
      context: Uint8Array | undefined,
      props: BucketProps.BucketProps,
      now: bigint,
      existing: Option.Option<KvBackend.StoredObject>
    ): Effect.Effect<KvStore.PutResult, PutError> => {
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
      const object = build(existing, context, props, input, now)
      const values = 1 + (object.siblings?.length ?? 0)
      if (values > maxSiblings) return Effect.fail(new TooManySiblings({ siblings: values, limit: maxSiblings }))
      return Effect.flatMap(
        backend.compareAndSet(address, Option.map(existing, (o) => o.vclock), Option.some(object)),
        (done) =>
          done
            ? Effect.succeed({ key: address.key, generatedKey: false, object })
            : Effect.flatMap(
              backend.get(address),
              (again) => putKeyed(address, input, condition, context, props, now, again)
            )
      )
    }

    const put = (
      ref: KvStore.BucketRef,
      key: Uint8Array | undefined,
      input: KvStore.ContentInput,
      condition: KvStore.PutCondition = { _tag: "Always" },
      context?: Uint8Array
    ): Effect.Effect<KvStore.PutResult, PutError> => {
      if (key === undefined) return Effect.flatMap(Clock.currentTimeNanos, (now) => putGenerated(ref, input, now))
      const address = resolve(ref, copy(key))
      const seen = context ?? (condition._tag === "IfNotModified" ? condition.vclock : undefined)
      // The object and its bucket's properties in one backend read (one query on PostgreSQL).
      return Effect.flatMap(Clock.currentTimeNanos, (now) =>
        Effect.flatMap(
          backend.getWithBucketProps(address),
          (read) => putKeyed(address, input, condition, seen, effective(address.type, read.props), now, read.object)
        ))
    }

    /**
     * Without a context, or in a bucket without siblings: removes the key. With a context under `allowMult`:
     * removes the siblings the context has seen, and keeps (as the object) those it has not, so a write
     * concurrent with the delete is not lost.
     */
    const remove = (
      location: KvStore.Location,
      context?: Uint8Array
    ): Effect.Effect<boolean, MemoryLimitExceeded | StorageError> => {
      const address = resolveLocation(location)
      // An empty vclock is no vclock (some clients send one): the key goes.
      if (context === undefined || context.length === 0) return backend.delete(address)
      const seen = causal.decodeContext(context)
      const attempt: Effect.Effect<boolean, MemoryLimitExceeded | StorageError> = Effect.flatMap(
        backend.get(address),
        (existing) => {
          if (Option.isNone(existing)) return Effect.succeed(false)
          const contents = contentsOf(existing.value)
          const before = causal.decodeStored(existing.value.vclock, contents.length)
          const left = contents.flatMap((c, i) =>
            causal.covers(seen, before.dots[i]!) ? [] : [{ c, d: before.dots[i]! }]
          )
          let next: Option.Option<KvBackend.StoredObject> = Option.none()
          if (left.length > 0) {
            // The delete is an event too: the clock takes a new dot of this store, so the vclock changes.
            next = Option.some(stored(left.map((l) => l.c), left.map((l) => l.d), nextEvent().dot))
          }
          // A lost race re-reads and re-checks.
          return Effect.flatMap(
            backend.compareAndSet(address, Option.some(existing.value.vclock), next),
            (done) => (done ? Effect.succeed(true) : attempt)
          )
        }
      )
      return Effect.flatMap(
        bucketProps(address.type, address.bucket),
        (props) => (props.allowMult && !props.lastWriteWins ? Effect.suspend(() => attempt) : backend.delete(address))
      )
    }

    const setBucketProps = (
      ref: KvStore.BucketRef,
      overrides: BucketProps.Overrides
    ): Effect.Effect<void, InvalidBucketProps | StorageError> => {
      const type = ref.type ?? defaultTypeBytes
      return Effect.flatMap(backend.getBucketProps(type, ref.bucket), (current): Effect.Effect<
        void,
        InvalidBucketProps | StorageError
      > => {
        const merged = { ...Option.getOrElse(current, () => ({})), ...overrides }
        const invalid = bucketPropsRecord.validate(BucketProps.resolve(type, merged))
        return Either.isLeft(invalid)
          ? Effect.fail(invalid.left)
          : backend.setBucketProps(copy(type), copy(ref.bucket), Option.some(merged))
      })
    }

    const listBuckets = (type: Uint8Array | undefined) => backend.listBuckets(type ?? defaultTypeBytes)
    const listKeys = (ref: KvStore.BucketRef) => backend.listKeys(ref.type ?? defaultTypeBytes, ref.bucket)

    return {
      get,
      put,
      delete: remove,
      listBuckets,
      listKeys,
      getBucketProps: (ref) => bucketProps(ref.type ?? defaultTypeBytes, ref.bucket),
      setBucketProps,
      resetBucketProps: (ref) => backend.setBucketProps(ref.type ?? defaultTypeBytes, ref.bucket, Option.none()),
      usage: backend.usage,
      snapshot: backend.checkpoint
    }
  })
